"""Real brokers for tests: Mosquitto 2.0 (Debian package ``mosquitto``) as a subprocess on a free port,
with its own configuration written to a temporary folder.

Without the ``mosquitto`` binary the tests that need it are skipped on a user's machine, and fail in
CI (``CI=true``), so that a missing install cannot hide them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from connector.harness.broker import free_port

START_SECONDS = 10.0
#: Debian installs the broker in /usr/sbin, which is not on every user's PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def find_program(name: str) -> str:
    """The path of a Mosquitto program; skips the test when it is missing (fails it in CI)."""
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        reason = f"{name} not installed (Debian packages mosquitto and mosquitto-clients)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must install it (.ci/run does)", pytrace=False)
        pytest.skip(reason)
    return path


def _connack(host: str, port: int, timeout: float) -> bool:
    """Sends an MQTT 3.1.1 CONNECT and tells whether a CONNACK came back (any return code)."""
    client_id = b"startup-probe"
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol name, level 4, clean session, keep alive 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(bytes([0x10, len(body)]) + body)
            answer = b""
            while len(answer) < 4:
                chunk = sock.recv(4 - len(answer))
                if not chunk:
                    return False
                answer += chunk
            sock.sendall(b"\xe0\x00")  # DISCONNECT
            return answer[0] == 0x20 and answer[1] == 0x02
    except OSError:
        return False


class MosquittoBroker:
    """``mosquitto -c CONF`` on a free port of 127.0.0.1; a context manager.

    Variants: ``persistence=True`` keeps messages in ``folder/data``; ``passwords={user: password}``
    writes a hashed password file (``mosquitto_passwd``) and refuses anonymous clients.
    """

    def __init__(self, folder: Path, *, persistence: bool = False, passwords: dict[str, str] | None = None,
                 extra: str = "") -> None:
        self.binary = find_program("mosquitto")
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        lines = [f"listener {self.port} {self.host}", "log_dest stderr", "log_type error", "log_type warning"]
        # Mosquitto started as root drops to the user ``mosquitto``, which could not read a temporary
        # folder made by pytest (mode 0700, owned by root). When we run as root, ``user root`` keeps it
        # root, so the configuration, the password file and the persistence folder all stay reachable
        # without loosening any permissions. Started as another user it cannot change user anyway.
        if os.geteuid() == 0:
            lines.append("user root")
        if passwords:
            password_file = folder / "passwords"
            passwd = find_program("mosquitto_passwd")
            password_file.touch(mode=0o600)
            for user, password in passwords.items():
                subprocess.run([passwd, "-b", str(password_file), user, password], check=True,
                               capture_output=True, timeout=10)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if persistence:
            data = folder / "data"
            data.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {data}/"]
        else:
            lines.append("persistence false")
        if extra:
            lines.append(extra)
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> MosquittoBroker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _connack(self.host, self.port, timeout=1.0):
                return self
            time.sleep(0.05)  # polling the port for readiness, bounded by the deadline
        self.stop()
        raise RuntimeError(f"mosquitto did not answer a CONNECT on {self.host}:{self.port} within "
                           f"{START_SECONDS:g} s: {self.log.read_text(errors='replace')!r}")

    def stop(self) -> None:
        """Stops our own mosquitto by its pid: SIGTERM, then kill."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a child this test suite started, by its own pid: SIGTERM, then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
