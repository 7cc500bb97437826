"""The embedded broker beyond loopback: a password file and an ACL file in Mosquitto's formats, and
a TLS listener; each case also run on Mosquitto 2.0 with the very same files, as the reference.
Plus the ``broker`` command's flags: bad files are exit 2 with one line, and a warning when it
listens beyond loopback with anonymous access.
"""

from __future__ import annotations

import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from brokers import MosquittoBroker, stop_process
from certs import make_certs, tls_listeners
from clirun import run_cli, start_cli
from connector.mqtt.broker import BrokerThread, free_port
from raw_mqtt import RawClient, connect, string, subscribe

pytestmark = pytest.mark.timeout(120)

USERS = {"alice": "Secret-1", "bob": "Hunter-2"}
ACL = """\
# anonymous clients (with --allow-anonymous): read the news only
topic read news/#

user alice
topic readwrite a/#
topic deny a/secret

user bob
topic read a/#
topic write a/secret

pattern readwrite users/%u/#
"""


@pytest.fixture(scope="module")
def reference(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    return mosquitto_factory(passwords=USERS, acl=ACL)


@pytest.fixture(scope="module")
def embedded_secured(reference: MosquittoBroker) -> Iterator[BrokerThread]:
    """Our broker with Mosquitto's own password file (written by mosquitto_passwd) and ACL file."""
    with BrokerThread(password_file=reference.folder / "passwords", acl_file=reference.folder / "acl") as running:
        yield running


@pytest.fixture(scope="module", params=["embedded", "mosquitto"])
def secured(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("embedded_secured" if request.param == "embedded" else "reference")


def login(user: str | None, password: str | None = None) -> bytes:
    """A CONNECT with a user name (and password) when given."""
    client_id = f"{user or 'anon'}-{uuid.uuid4().hex[:8]}".encode()
    if user is None:
        return connect(client_id)
    flags = 0x82 | (0x40 if password is not None else 0)
    return connect(client_id, flags=flags, extra=string(user.encode()) + (string(password.encode()) if password else b""))


def connack_code(port: int, first: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(first)
        answer = sock.recv(4)
        assert answer[:2] == b"\x20\x02", f"not a CONNACK: {answer!r}"
        return answer[3]


@pytest.mark.parametrize("user,password", [(None, None), ("alice", "wrong"), ("mallory", "Secret-1"),
                                           ("alice", None)])
def test_a_client_without_the_right_password_is_refused_with_connack_5(secured: Any, user: str | None,
                                                                        password: str | None) -> None:
    assert connack_code(secured.port, login(user, password)) == 5


def test_the_right_password_is_admitted(secured: Any) -> None:
    assert connack_code(secured.port, login("alice", USERS["alice"])) == 0


def test_a_refused_client_does_not_take_over_the_session_of_its_client_id(secured: Any) -> None:
    alice = RawClient(secured.port, b"", first=connect(b"alice-main", flags=0x82 | 0x40,
                                                       extra=string(b"alice") + string(USERS["alice"].encode())))
    assert connack_code(secured.port, connect(b"alice-main")) == 5  # same client ID, anonymous
    alice.sock.sendall(b"\xc0\x00")  # PINGREQ: alice is still connected
    assert alice.read_packet(3) == (0xD0, b"")
    alice.close()


def _user(secured: Any, name: str) -> RawClient:
    return RawClient(secured.port, b"", first=login(name, USERS[name]))


def _granted(client: RawClient, topic_filter: str, qos: int = 1) -> int:
    client.sock.sendall(subscribe(topic_filter.encode(), qos))
    first, body = client.read_packet(5)
    assert first == 0x90
    return body[-1]


@pytest.mark.parametrize("user,topic_filter,granted", [
    ("alice", "a/#", 1), ("alice", "a/b", 1), ("alice", "b/#", 0x80), ("alice", "#", 0x80),
    ("alice", "users/alice/#", 1), ("alice", "users/bob/x", 0x80), ("bob", "a/+", 1), ("bob", "news/x", 0x80),
    ("alice", "$share/g/a/#", 1), ("alice", "$share/g/b/#", 0x80),
])
def test_a_subscription_the_acl_refuses_gets_0x80(secured: Any, user: str, topic_filter: str, granted: int) -> None:
    client = _user(secured, user)
    if isinstance(secured, MosquittoBroker):
        granted = 1  # Mosquitto 2.0 grants every subscription and checks read access per message only
    assert _granted(client, topic_filter) == granted
    client.close()


class Watcher:
    """A paho client logged in as ``user`` that records the topics it receives."""

    def __init__(self, port: int, user: str, topic_filter: str) -> None:
        self.topics: list[str] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:8]}")
        self.client.username_pw_set(user, USERS[user])
        self.client.on_message = lambda c, u, m: self.topics.append(m.topic)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic_filter, 1)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.subscribed.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish(port: int, user: str, topics: list[str]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(user, USERS[user])
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        for topic in topics:  # both brokers confirm a refused QoS 1 PUBLISH, and drop it
            info = client.publish(topic, b"payload", qos=1)
            info.wait_for_publish(5)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def _received(watcher: Watcher, last: str) -> list[str]:
    deadline = time.monotonic() + 5
    while last not in watcher.topics and time.monotonic() < deadline:
        time.sleep(0.05)  # polling what paho's thread recorded, bounded by the deadline
    time.sleep(0.5)  # bounded: shows that nothing more arrives
    watcher.close()
    return watcher.topics


def test_a_publish_the_acl_refuses_is_dropped(secured: Any) -> None:
    watcher = Watcher(secured.port, "bob", "a/#")
    _publish(secured.port, "bob", ["a/from-bob"])  # bob may only read there
    _publish(secured.port, "alice", ["a/secret", "a/ok"])  # alice may not write a/secret
    assert _received(watcher, "a/ok") == ["a/ok"]


def test_a_message_is_delivered_only_where_the_acl_lets_the_subscriber_read(secured: Any) -> None:
    watcher = Watcher(secured.port, "alice", "a/#")  # alice subscribes to a/# but may not read a/secret
    _publish(secured.port, "bob", ["a/secret"])
    _publish(secured.port, "alice", ["a/ok"])
    assert _received(watcher, "a/ok") == ["a/ok"]


# -- TLS -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module", params=["embedded", "mosquitto"])
def tls_ports(request: pytest.FixtureRequest, certs: dict[str, Path]) -> Iterator[dict[str, int]]:
    """Port of a TLS listener (``tls``) and of one that requires a client certificate (``mtls``)."""
    if request.param == "mosquitto":
        ports, extra = tls_listeners(certs)
        request.getfixturevalue("mosquitto_factory")(extra=extra)
        yield ports
        return
    folder = certs["ca"].parent
    with BrokerThread(cert_file=folder / "server.pem", key_file=folder / "server.key") as plain, \
            BrokerThread(cert_file=folder / "server.pem", key_file=folder / "server.key", ca_file=certs["ca"]) as mtls:
        yield {"tls": plain.port, "mtls": mtls.port}


def _tls_connack(port: int, certs: dict[str, Path], client_cert: bool) -> int | None:
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    folder = certs["ca"].parent
    if client_cert:
        context.load_cert_chain(str(folder / "client.pem"), str(folder / "client.key"))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(connect(b"tls-probe"))
            answer = sock.recv(4)
            return answer[3] if len(answer) == 4 else None
    except (ssl.SSLError, ConnectionError, OSError):
        return None


def test_tls_listener_speaks_mqtt_over_tls_only(tls_ports: dict[str, int], certs: dict[str, Path]) -> None:
    assert _tls_connack(tls_ports["tls"], certs, client_cert=False) == 0
    with socket.create_connection(("127.0.0.1", tls_ports["tls"]), timeout=5) as sock:
        sock.sendall(connect(b"plain-probe"))
        try:
            assert sock.recv(4)[:1] != b"\x20", "a CONNACK in plain text from a TLS port"
        except (ConnectionResetError, socket.timeout):
            pass


def test_with_a_ca_file_a_client_certificate_is_required(tls_ports: dict[str, int], certs: dict[str, Path]) -> None:
    assert _tls_connack(tls_ports["mtls"], certs, client_cert=False) is None
    assert _tls_connack(tls_ports["mtls"], certs, client_cert=True) == 0


# -- the broker command --------------------------------------------------------------------

@pytest.mark.parametrize("flags,expected", [
    (["--password-file", "{missing}"], "does not exist"),
    (["--password-file", "{junk}"], "line 1, is not USER:HASH"),
    (["--acl-file", "{junk}"], "line 1, is not 'user NAME'"),
    (["--cert-file", "{junk}"], "cannot use the TLS files"),
    (["--cert-file", "{missing}"], "cannot use the TLS files"),
    (["--allow-anonymous"], "goes with --password-file"),
    (["--ca-file", "{junk}"], "need --cert-file"),
    (["--connect-timeout", "nan"], "--connect-timeout"),
    (["--max-queued-messages", "0"], "--max-queued-messages"),
    (["--port", "99999"], "not a TCP port"),
    (["--host", "bad\udcffhost"], "--host is not valid UTF-8 text"),
])
def test_bad_broker_options_are_exit_2_with_one_line(tmp_path: Path, flags: list[str], expected: str) -> None:
    junk = tmp_path / "junk"
    junk.write_text("frobnicate\n")
    args = [f.format(missing=tmp_path / "missing", junk=junk) for f in flags]
    result = run_cli("broker", *([] if "--port" in flags else ["--port", str(free_port())]), *args, timeout=20)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], \
        result.stderr


def _first_lines(args: list[str]) -> tuple[str, str]:
    proc = start_cli("broker", *args)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready = proc.stdout.readline().decode()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        return ready, proc.stderr.read().decode()
    finally:
        stop_process(proc)


def test_listening_beyond_loopback_with_anonymous_access_warns(reference: MosquittoBroker) -> None:
    ready, stderr = _first_lines(["--host", "0.0.0.0", "--port", str(free_port("0.0.0.0"))])
    assert "listening on mqtt://0.0.0.0" in ready
    assert "warning: listening on 0.0.0.0" in stderr and "anonymous" in stderr
    ready, stderr = _first_lines(["--host", "0.0.0.0", "--port", str(free_port("0.0.0.0")),
                                  "--password-file", str(reference.folder / "passwords")])
    assert "listening on" in ready and "warning" not in stderr
    ready, stderr = _first_lines(["--port", str(free_port())])
    assert "listening on" in ready and "warning" not in stderr
