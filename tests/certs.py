"""Test certificates made with the ``openssl`` command line (EC P-256, valid for two days), and a
Mosquitto configuration with three TLS listeners that use them.

``make_certs(folder)`` writes: ``ca.pem`` / ``ca.key`` (the test CA), ``server.pem`` / ``server.key``
(for ``localhost`` and ``127.0.0.1``), ``wrongname.pem`` / ``wrongname.key`` (only for
``broker.example``), ``client.pem`` / ``client.key`` (a client certificate), ``client-enc.key`` (the
same key encrypted with :data:`KEY_PASSPHRASE`) and ``wrong-ca.pem`` (a CA that signed nothing here).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from connector.mqtt.broker import free_port

KEY_PASSPHRASE = "Key-Passphrase-7f3a9c"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _key(name: str, cwd: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=cwd)


def _ca(name: str, cwd: Path) -> None:
    _key(name, cwd)
    _openssl("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=mqtt-connector test {name}", cwd=cwd)


def _signed(name: str, subject: str, extensions: str, cwd: Path) -> None:
    _key(name, cwd)
    _openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)


def make_certs(folder: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    _ca("ca", folder)
    _ca("wrong-ca", folder)
    _signed("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1", folder)
    _signed("wrongname", "/CN=broker.example", "subjectAltName=DNS:broker.example", folder)
    _signed("client", "/CN=test-client", "extendedKeyUsage=clientAuth", folder)
    _openssl("pkey", "-in", "client.key", "-aes256", "-passout", f"pass:{KEY_PASSPHRASE}", "-out", "client-enc.key",
             cwd=folder)
    return {p.stem if p.suffix == ".pem" else p.name: p for p in folder.iterdir()}


def tls_listeners(certs: dict[str, Path]) -> tuple[dict[str, int], str]:
    """Three TLS listeners for Mosquitto's ``extra`` configuration, on free ports: ``tls`` (server
    certificate only), ``mtls`` (requires a client certificate signed by the test CA) and ``wrongname``
    (a certificate for another host name)."""
    ports = {name: free_port("127.0.0.1") for name in ("tls", "mtls", "wrongname")}
    ca, folder = certs["ca"], certs["ca"].parent
    lines = [
        f"listener {ports['tls']} 127.0.0.1", f"certfile {folder / 'server.pem'}", f"keyfile {folder / 'server.key'}",
        f"listener {ports['mtls']} 127.0.0.1", f"cafile {ca}", f"certfile {folder / 'server.pem'}",
        f"keyfile {folder / 'server.key'}", "require_certificate true",
        f"listener {ports['wrongname']} 127.0.0.1", f"certfile {folder / 'wrongname.pem'}",
        f"keyfile {folder / 'wrongname.key'}",
    ]
    return ports, "\n".join(lines)
