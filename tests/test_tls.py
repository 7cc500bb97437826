"""TLS against Mosquitto with TLS listeners and certificates made for the test (tests/certs.py):
a round trip with mutual TLS, and each way TLS can fail, as exit 3 (or exit 2 for bad files) with
one line saying what failed."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from brokers import ClosingDoor, MosquittoBroker
from certs import KEY_PASSPHRASE, make_certs, tls_listeners
from clirun import run_cli
from connector.mqtt.broker import free_port
from connector.harness.runtime import Runtime

pytestmark = pytest.mark.timeout(120)


class TlsBroker:
    def __init__(self, broker: MosquittoBroker, ports: dict[str, int], certs: dict[str, Path]) -> None:
        self.broker, self.ports, self.certs = broker, ports, certs
        self.folder = certs["ca"].parent

    def file(self, name: str) -> str:
        return str(self.folder / name)

    def args(self, listener: str, *more: str) -> list[str]:
        return ["--host", "127.0.0.1", "--port", str(self.ports[listener]), *more]

    def client_args(self) -> list[str]:
        return ["--ca-file", self.file("ca.pem"), "--cert-file", self.file("client.pem"),
                "--key-file", self.file("client.key")]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, mosquitto_factory: Callable[..., MosquittoBroker]) -> TlsBroker:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    ports, extra = tls_listeners(certs)
    return TlsBroker(mosquitto_factory(extra=extra), ports, certs)


def error_line(proc: Any, code: int) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_mutual_tls_round_trip_with_an_encrypted_key(tls: TlsBroker, runtime: Runtime) -> None:
    connection = {"host": "127.0.0.1", "port": tls.ports["mtls"], "ca_file": tls.file("ca.pem"),
                  "cert_file": tls.file("client.pem"), "key_file": tls.file("client.key"), "connect_timeout": 5}
    with runtime.listen_in_background(connection, {"action": "listen", "topic": "tls/#", "qos": 1}, count=1) as bg:
        bg.wait_ready(10)
        proc = run_cli("send", *tls.args("mtls"), "--ca-file", tls.file("ca.pem"), "--cert-file", tls.file("client.pem"),
                       "--key-file", tls.file("client-enc.key"), "--topic", "tls/a", "--qos", "1",
                       "--message", "over TLS", env={"MQTT_KEY_PASSWORD": KEY_PASSPHRASE})
        assert proc.returncode == 0, proc.stderr.decode()
    assert [d.payload for d in bg.documents] == [b"over TLS"]
    assert bg.documents[0].properties["qos"] == 1


def test_check_names_tls_and_the_protocol(tls: TlsBroker) -> None:
    proc = run_cli("check", *tls.args("tls", "--ca-file", tls.file("ca.pem"), "--protocol", "5"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert "(MQTT 5, TLS)" in proc.stdout.decode()


def test_a_tls_node_that_closes_after_the_handshake_is_waited_for(tls: TlsBroker) -> None:
    """Closed after a TLS handshake that succeeded: the broker behind TLS (a cluster node electing
    leaders) is not ready; the wait tries it again. Without the wait: exit 3 at once."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tls.file("server.pem"), tls.file("server.key"))
    with ClosingDoor(("127.0.0.1", tls.ports["tls"]), closes=2, tls=server) as door:
        at_once = run_cli("check", "--port", str(door.port), "--ca-file", tls.file("ca.pem"))
        waited = run_cli("check", "--port", str(door.port), "--ca-file", tls.file("ca.pem"), "--wait-for-broker", "60",
                         "--reconnect-delay", "0.05")
        assert door.refused == 2
    line = error_line(at_once, 3)
    assert "closed the TLS connection before accepting it" in line, line
    assert waited.returncode == 0, waited.stderr.decode()
    assert b"closed the TLS connection before accepting it" in waited.stderr  # the warning while waiting


def test_wrong_ca_exits_3_naming_the_ca(tls: TlsBroker) -> None:
    started = time.monotonic()
    proc = run_cli("check", *tls.args("tls", "--ca-file", tls.file("wrong-ca.pem")))
    line = error_line(proc, 3)
    assert "the broker's certificate is not signed by the CA in wrong-ca.pem" in line
    assert time.monotonic() - started < 10


def test_no_ca_file_means_the_systems_cas_which_do_not_know_the_test_ca(tls: TlsBroker) -> None:
    line = error_line(run_cli("check", *tls.args("tls", "--tls")), 3)
    assert "not signed by a CA this system trusts" in line


def test_wrong_host_name_exits_3(tls: TlsBroker) -> None:
    line = error_line(run_cli("check", *tls.args("wrongname", "--ca-file", tls.file("ca.pem"))), 3)
    assert "not issued for the host name '127.0.0.1'" in line


def test_host_name_in_the_certificate_is_accepted(tls: TlsBroker) -> None:
    proc = run_cli("check", "--host", "localhost", "--port", str(tls.ports["tls"]), "--ca-file", tls.file("ca.pem"))
    if proc.returncode == 3 and b"cannot" in proc.stderr:  # localhost resolving to ::1 only
        pytest.skip(proc.stderr.decode())
    assert proc.returncode == 0, proc.stderr.decode()


def test_insecure_option_connects_and_warns(tls: TlsBroker) -> None:
    proc = run_cli("check", *tls.args("wrongname", "--tls-insecure"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert "without checking the broker's certificate" in proc.stderr.decode()
    assert "without certificate checks" in proc.stdout.decode()


def test_missing_client_certificate_exits_3(tls: TlsBroker) -> None:
    started = time.monotonic()
    line = error_line(run_cli("check", *tls.args("mtls", "--ca-file", tls.file("ca.pem"))), 3)
    assert "client certificate" in line and "TLS" in line
    assert time.monotonic() - started < 15


def test_client_certificate_from_an_unknown_ca_exits_3(tls: TlsBroker) -> None:
    proc = run_cli("check", *tls.args("mtls", "--ca-file", tls.file("ca.pem"), "--cert-file", tls.file("wrong-ca.pem"),
                                      "--key-file", tls.file("wrong-ca.key")))
    line = error_line(proc, 3)
    assert "TLS" in line


def test_tls_to_a_plain_port_and_plain_to_a_tls_port_exit_3(tls: TlsBroker) -> None:
    plain = run_cli("check", "--port", str(tls.broker.port), "--ca-file", tls.file("ca.pem"))
    assert "TLS" in error_line(plain, 3)
    started = time.monotonic()
    to_tls = run_cli("send", *tls.args("tls"), "--topic", "t", "--message", "m")  # QoS 0: never a success
    line = error_line(to_tls, 3)
    assert "MQTT" in line and "sent" not in to_tls.stderr.decode().replace(line, "")
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("flag,name", [("--ca-file", "CA"), ("--cert-file", "client certificate")])
def test_missing_files_are_bad_input_before_connecting(flag: str, name: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    line = error_line(run_cli("check", "--port", str(free_port()), flag, missing), 2)
    assert f"the {name} file {missing!r} does not exist" in line


def test_wrong_or_missing_key_passphrase_is_bad_input(tls: TlsBroker) -> None:
    base = tls.args("mtls", "--ca-file", tls.file("ca.pem"), "--cert-file", tls.file("client.pem"),
                    "--key-file", tls.file("client-enc.key"))
    line = error_line(run_cli("check", *base, "--key-password", "not-the-passphrase"), 2)
    assert "cannot be decrypted with the passphrase given" in line
    line = error_line(run_cli("check", *base), 2)
    assert "encrypted (give --key-password)" in line


def test_describe_lists_the_tls_fields_and_marks_the_passphrase_secret() -> None:
    proc = run_cli("describe")
    out = proc.stdout.decode()
    for field in ("tls", "ca_file", "cert_file", "key_file", "tls_insecure", "protocol"):
        assert f"[{field}:" in out
    passphrase = next(line for line in out.splitlines() if "[key_password:" in line)
    assert "secret, never shown" in passphrase
