"""TLS for the MQTT connection: the SSL context, its checks before connecting, and TLS failures
in words a person can act on.

Server name checking is on unless ``tls_insecure`` says otherwise, and that logs a warning on
every connect. Problems with the files (missing, unreadable, not PEM, a wrong key passphrase)
are found by :func:`tls_problems` before any network I/O, so they are bad input (exit 2).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("connector.mqtt")

_FILES = (("ca_file", "CA"), ("cert_file", "client certificate"), ("key_file", "client key"))

# OpenSSL verify codes (X509_V_ERR_*) that mean "not signed by a CA we trust".
_UNTRUSTED = {2, 18, 19, 20, 21, 27}
_HOSTNAME_MISMATCH = {62, 64}  # host name, IP address
_EXPIRED, _NOT_YET_VALID = 10, 9

# What the broker's TLS alert means for the client (OpenSSL reason names).
_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the broker requires a client certificate: give cert_file and key_file",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the broker refused the TLS handshake: does it require a client certificate?",
    "TLSV1_ALERT_UNKNOWN_CA": "the broker does not trust the client certificate (not signed by a CA it knows)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the broker refused the client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the broker refused the client certificate: it has expired",
    "WRONG_VERSION_NUMBER": "the broker does not speak TLS on this port: is it a plain MQTT port?",
    "UNSUPPORTED_PROTOCOL": "the broker and the client share no TLS version",
    # Mosquitto closes a TLS 1.3 connection without an alert when a required client certificate is missing.
    "EOF occurred in violation of protocol": "the broker closed the TLS connection: does it require a client "
                                             "certificate (cert_file and key_file)?",
}


def uses_tls(config: Mapping[str, Any]) -> bool:
    """TLS is on when asked for, or implied by a CA file, a client certificate or the insecure option."""
    return bool(config.get("tls") or config.get("ca_file") or config.get("cert_file") or config.get("tls_insecure"))


def tls_problems(config: Mapping[str, Any]) -> list[str]:
    """Everything wrong with the TLS settings, found without connecting; empty when all is well."""
    if not uses_tls(config):
        return []
    problems = []
    for name, what in _FILES:
        path = config.get(name)
        if not path:
            continue
        if not os.path.exists(path):
            problems.append(f"connection {name}: the {what} file {path!r} does not exist")
        elif not os.path.isfile(path):
            problems.append(f"connection {name}: {path!r} is not a file")
        elif not os.access(path, os.R_OK):
            problems.append(f"connection {name}: the {what} file {path!r} cannot be read: permission denied")
    if config.get("key_file") and not config.get("cert_file"):
        problems.append("connection key_file: a client key needs its certificate: give cert_file too")
    if config.get("key_password") and not config.get("cert_file"):
        problems.append("connection key_password: a key passphrase needs a client certificate and key: give cert_file")
    if problems:
        return problems
    try:
        tls_context(config)
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def tls_context(config: Mapping[str, Any]) -> ssl.SSLContext:
    """The client's SSL context; ValueError (one line, ``connection FIELD: ...``) when a file is unusable."""
    ca_file = config.get("ca_file") or None
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError:
        raise ValueError(f"connection ca_file: {ca_file!r} holds no PEM certificate") from None
    except OSError as exc:
        raise ValueError(f"connection ca_file: cannot read {ca_file!r}: {exc.strerror or exc}") from None
    if config.get("cert_file"):
        cert, key = config["cert_file"], config.get("key_file") or None
        password = config.get("key_password") or None
        try:
            # A callable, so an encrypted key without a passphrase fails instead of prompting on the terminal.
            context.load_cert_chain(cert, key, password=lambda: password or "")
        except ssl.SSLError as exc:
            raise ValueError(_key_problem(exc, cert, key, password)) from None
        except OSError as exc:
            raise ValueError(f"connection cert_file: cannot read {cert!r}: {exc.strerror or exc}") from None
    if config.get("tls_insecure"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _key_problem(exc: ssl.SSLError, cert: str, key: str | None, password: str | None) -> str:
    text = f"{exc.reason or ''} {exc}".upper()
    where = repr(key or cert)
    if "KEY_VALUES_MISMATCH" in text:
        return f"connection key_file: the client key {where} does not belong to the certificate {cert!r}"
    if "BAD_DECRYPT" in text or "PEM" in text or "NO_START_LINE" in text:
        if password:
            return (f"connection key_password: the client key {where} cannot be decrypted with the passphrase "
                    "given (or it is not a PEM key)")
        return (f"connection key_file: cannot load the client key {where}: it is encrypted (give key_password), "
                "or it is not a PEM key")
    return f"connection cert_file: cannot load the client certificate and key from {where}: {exc.reason or exc}"


def warn_if_insecure(config: Mapping[str, Any], where: str) -> None:
    if config.get("tls_insecure"):
        log.warning("TLS to %s without checking the broker's certificate or host name (tls_insecure): "
                    "anyone in between can read and change the traffic", where)


def tls_failure(exc: ssl.SSLError, config: Mapping[str, Any], host: str, where: str) -> str:
    """A failed TLS handshake as one line: what failed and what to do."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        ca_file = config.get("ca_file")
        if code in _HOSTNAME_MISMATCH:
            return (f"TLS to {where} failed: the broker's certificate is not issued for the host name {host!r}: "
                    "connect with a name the certificate holds (server name checking is on)")
        if code in _UNTRUSTED:
            by = f"the CA in {os.path.basename(ca_file)}" if ca_file else "a CA this system trusts (give ca_file)"
            return f"TLS to {where} failed: the broker's certificate is not signed by {by}"
        if code == _EXPIRED:
            return f"TLS to {where} failed: the broker's certificate has expired"
        if code == _NOT_YET_VALID:
            return f"TLS to {where} failed: the broker's certificate is not valid yet (check the clock)"
        return f"TLS to {where} failed: the broker's certificate was refused: {exc.verify_message}"
    return f"TLS to {where} failed: {alert_text(exc)}"


def alert_text(exc: BaseException | str) -> str:
    """Words for a TLS error: a known alert's meaning, else OpenSSL's reason."""
    text = str(exc)
    reason = getattr(exc, "reason", None) or ""
    for name, words in _ALERTS.items():
        if name == reason or name.lower() in text.lower():
            return words
    return f"{reason or text}".lower().replace("_", " ") if reason else text
