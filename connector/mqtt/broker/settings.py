"""What a user chooses for the embedded broker beyond its address (``mqtt-connector broker``
flags, ``BrokerThread`` keyword arguments), and the checks of the files they name."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from connector.mqtt.broker.auth import Acl, AuthFileError, Passwords
from connector.mqtt.broker.queue import QueueLimits

#: Seconds a new connection has to send its CONNECT (Mosquitto closes it after 1.5 x 60 s).
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class BrokerSettings:
    """What ``mqtt-connector broker`` and :class:`BrokerThread` let a user choose beyond the address."""

    #: seconds a new connection has to send its CONNECT
    connect_timeout: float = CONNECT_TIMEOUT
    #: what the broker holds for each client at most
    queue_limits: QueueLimits = field(default_factory=QueueLimits)
    #: Mosquitto password file: clients must give a user name and password from it
    password_file: Path | None = None
    #: with a password file, still admit clients without a user name
    allow_anonymous: bool = False
    #: Mosquitto ACL file: what each client may read and write
    acl_file: Path | None = None
    #: TLS: the broker's certificate and key (PEM); with ``ca_file``, clients need a certificate it signed
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None

    @property
    def anonymous_allowed(self) -> bool:
        return self.password_file is None or self.allow_anonymous


def tls_context(settings: BrokerSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(settings.cert_file), str(settings.key_file) if settings.key_file else None)
        if settings.ca_file is not None:
            context.load_verify_locations(cafile=str(settings.ca_file))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(str(f) for f in (settings.cert_file, settings.key_file, settings.ca_file) if f)
        reason = (exc.strerror if not isinstance(exc, ssl.SSLError) and exc.strerror else
                  "not a PEM certificate with its key, or the key does not belong to it")
        raise AuthFileError(f"cannot use the TLS files {files}: {reason}") from None
    return context


def check_files(settings: BrokerSettings) -> None:
    """Read the password, ACL and TLS files now; AuthFileError names the first that cannot be used."""
    if settings.password_file is not None:
        Passwords(settings.password_file)
    if settings.acl_file is not None:
        Acl.load(settings.acl_file)
    if settings.cert_file is not None:
        tls_context(settings)
