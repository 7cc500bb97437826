"""Configurations that run away: a Listen that dead-letters into its own filters, dead letters that
outgrow the broker, and two clients that take one client ID from each other."""

from __future__ import annotations

import json
import select
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from brokers import MosquittoBroker, stop_process
from clirun import run_cli
from faultproxy import FaultProxy

from connector.mqtt.broker import BrokerThread, free_port
from connector.harness.runtime import Runtime
from connector.sdk.retry import dead_letter
from connector.mqtt.plugin import connector_validate
from connector.sdk.documents import Document
from connector.sdk.errors import ConfigError
from connector.sdk.manifest import defaults


def _connection(**fields: object) -> dict[str, object]:
    """A connection as the runtime hands it to connector_validate: with the schema's defaults."""
    return {**defaults(Runtime(default_connector="mqtt").manifest("mqtt").connection_schema), **fields}

# -- a dead-letter topic that the Listen itself receives -------------------------------------------

LOOPS = [("a/#", "a/dead"), ("+/dead", "a/dead"), ("$share/G/a/#", "a/dead"), ("#", "dead"), ("a/+/x", "a/b/x")]


@pytest.mark.parametrize(("topic_filter", "dead_letters"), LOOPS)
def test_a_dead_letter_topic_inside_the_filters_is_refused(topic_filter: str, dead_letters: str) -> None:
    """Each dead letter came back as a new message, failed, and was wrapped again: 22 nested dead
    letters in 10 s, the payload doubling. Refused before connecting (nothing listens on the port)."""
    started = time.monotonic()
    done = run_cli("listen", "--port", str(free_port()), "--topic", "other/x", "--topic", topic_filter,
                   "--dead-letter-topic", dead_letters)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert repr(topic_filter) in err and repr(dead_letters) in err, err
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("topic_filter", "dead_letters"), LOOPS[:2])
def test_the_python_api_and_run_refuse_the_loop_too(topic_filter: str, dead_letters: str, tmp_path: Path) -> None:
    operation = {"action": "listen", "topic": topic_filter, "dead_letter_topic": dead_letters}
    with pytest.raises(ConfigError, match="dead_letter_topic"):
        Runtime(default_connector="mqtt").listen({"port": free_port()}, operation, print, timeout=1)
    problems = connector_validate(connection=_connection(), operation={**operation, "qos": 0})
    assert problems and "dead-letter topic" in problems[-1]
    (tmp_path / "conn.json").write_text(json.dumps({"port": free_port()}))
    (tmp_path / "op.json").write_text(json.dumps(operation))
    done = run_cli("run", "--connection", str(tmp_path / "conn.json"), "--operation", str(tmp_path / "op.json"))
    assert done.returncode == 2 and b"dead-letter topic" in done.stderr, done.stderr


@pytest.mark.parametrize(("topic_filter", "dead_letters"), [("a/#", "b/dead"), ("#", "$dead"), ("a/+", "a/b/dead")])
def test_a_dead_letter_topic_outside_the_filters_is_fine(topic_filter: str, dead_letters: str) -> None:
    operation = {"action": "listen", "topic": topic_filter, "qos": 0, "dead_letter_topic": dead_letters}
    assert connector_validate(connection=_connection(), operation=operation) == []


def test_no_local_keeps_own_dead_letters_away_but_not_from_a_shared_subscription() -> None:
    """MQTT 5's no_local: the broker does not send a connection its own messages (tests/test_mqtt5.py),
    except through a shared subscription, where no_local is not allowed."""
    connection = _connection(protocol="5")
    operation = {"action": "listen", "topic": "a/#", "qos": 0, "dead_letter_topic": "a/dead", "no_local": True}
    assert connector_validate(connection=connection, operation=operation) == []
    shared = {**operation, "topic": "$share/G/a/#"}
    assert "dead-letter topic" in connector_validate(connection=connection, operation=shared)[-1]


def test_a_dead_letter_too_big_for_the_broker_carries_the_start_of_the_payload(broker: BrokerThread) -> None:
    """A payload whose dead letter would not fit the broker's packet limit: the dead letter carries as
    much of it as fits, ``truncated`` and the original ``size``, and the original is acknowledged."""
    runtime = Runtime(default_connector="mqtt")
    where = {"host": broker.host, "port": broker.port}
    topic = f"big{time.monotonic_ns()}"
    payload = ("é\"\n" * 4_000).encode()  # 16,000 bytes, longer still once escaped in JSON

    def refuse(document: Document) -> None:
        raise RuntimeError("cannot take it")

    letters = runtime.listen_in_background(where, {"action": "listen", "topic": f"{topic}/dead", "qos": 1}, count=1)
    letters.wait_ready()
    operation = {"action": "listen", "topic": f"{topic}/in", "qos": 1, "max_attempts": 1,
                 "dead_letter_topic": f"{topic}/dead"}
    with runtime.listen_in_background({**where, "max_packet_size": 2_048}, operation, refuse, count=1) as bg:
        bg.wait_ready()
        assert all(r.ok for r in runtime.send(where, {"action": "send", "topic": f"{topic}/in", "qos": 1}, [payload]))
        deadline = time.monotonic() + 20
        while bg.listener.dead_letters < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        bg.stop()
    assert bg.outcome is not None and bg.outcome.dead_lettered == 1, bg.outcome
    letters.join()
    letter = letters.documents[0].payload
    assert len(letter) <= 2_048 - len(f"{topic}/dead") - 9
    body = json.loads(letter)
    assert body["truncated"] is True and body["size"] == len(payload)
    assert payload.decode().startswith(body["payload"]) and len(body["payload"]) > 500
    assert body["error"] == "RuntimeError: cannot take it" and body["properties"]["topic"] == f"{topic}/in"


def test_dead_letters_of_dead_letters_never_outgrow_the_limit() -> None:
    """Nested dead letters (one Listen's dead letters failing in another's) escaped the payload again at
    each level, doubling it; wrapped 30 times it stays within the room, and stays valid JSON."""
    document = Document(b'{"quoted": "\\"x\\""}' * 200, {"topic": "a/b"})
    sizes = []
    for _ in range(30):
        document = Document(dead_letter(document, "RuntimeError: no", 3, 4_000), {"topic": "a/b"})
        sizes.append(len(document.payload))
        json.loads(document.payload)
    assert max(sizes) <= 4_000
    binary = dead_letter(Document(bytes(range(256)) * 100, {"topic": "a/b"}), "E", 1, 3_000)
    assert len(binary) <= 3_000 and json.loads(binary)["encoding"] == "base64"


# -- two clients with one client ID ---------------------------------------------------------------

TAKEOVER_WITHIN = 8.0


def _start_listen(port: int, client_id: str, topic: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "connector", "listen", "--port", str(port), "--client-id", client_id,
                             "--topic", topic, "--qos", "1", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_subscribed(port: int, topic: str, listen: subprocess.Popen) -> None:
    """Until a message published on ``topic`` reaches ``listen`` (its first output line)."""
    assert listen.stdout is not None
    deadline = time.monotonic() + 20
    runtime = Runtime(default_connector="mqtt")
    while time.monotonic() < deadline:
        list(runtime.send({"port": port}, {"action": "send", "topic": topic, "qos": 0}, ["ping"]))
        if select.select([listen.stdout], [], [], 0.2)[0]:
            listen.stdout.readline()
            return
    raise AssertionError("the Listen got nothing")


def _assert_taken_over(code: int, stderr: str, client_id: str, role: str) -> None:
    """Exit 3, and the last line says who to blame."""
    assert code == 3, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"error: another client uses the client ID {client_id!r}: give each {role} its own --client-id"), stderr


@pytest.fixture(params=["mosquitto-3.1.1", "mosquitto-5", "embedded"])
def any_port(request: pytest.FixtureRequest, mosquitto: MosquittoBroker) -> Iterator[tuple[int, list[str]]]:
    if request.param == "embedded":
        with BrokerThread() as embedded:  # its own: a takeover must not disturb the session's broker
            yield embedded.port, []
    else:
        yield mosquitto.port, ["--protocol", request.param.split("-")[1]]


@pytest.mark.parametrize("persistent", [False, True], ids=["clean", "persistent"])
def test_a_client_id_taken_over_stops_the_first_listen_with_exit_3(any_port: tuple[int, list[str]],
                                                                   persistent: bool) -> None:
    """Two Listens with one client ID took the session from each other 41 times in 13 s. The second
    to connect takes over; the first stops with exit 3 and one line saying so, within seconds."""
    port, extra = any_port
    topic = f"takeover/{time.monotonic_ns()}"
    extra = [*extra, *(["--persistent"] if persistent else [])]
    first = _start_listen(port, "twin", topic, *extra)
    second = None
    try:
        _wait_subscribed(port, topic, first)
        second = _start_listen(port, "twin", topic, *extra)
        started = time.monotonic()
        code = first.wait(TAKEOVER_WITHIN + 10)
        took = time.monotonic() - started
        err = first.stderr.read().decode()
        _assert_taken_over(code, err, "twin", "Listen")
        assert took < TAKEOVER_WITHIN, f"{took:.1f} s"
        _wait_subscribed(port, topic, second)  # the second keeps the ID and goes on
        assert second.poll() is None
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)


def test_a_send_taken_over_reports_what_it_read_and_exits_3(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """A Send whose client ID another client takes: a result line for every document it read, then
    exit 3 and the line (the other client, a Listen here, keeps the ID)."""
    results, errors = tmp_path / "results.jsonl", tmp_path / "send.err"
    with open(errors, "wb") as err_file:
        send = subprocess.Popen([sys.executable, "-m", "connector", "send", "--port", str(mosquitto.port),
                                 "--client-id", "twin-send", "--topic", "takeover/send", "--qos", "1", "--lines",
                                 "--results", str(results)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=err_file)
    listen = None
    watch = Runtime(default_connector="mqtt").listen_in_background({"port": mosquitto.port}, {"action": "listen", "topic": "takeover/send"},
                                           count=3)
    try:
        watch.wait_ready()
        assert send.stdin is not None
        send.stdin.write(b"one\ntwo\nthree\n")
        send.stdin.flush()
        watch.join()  # the Send is connected: the Listen below is the second to connect
        listen = _start_listen(mosquitto.port, "twin-send", "takeover/send")
        deadline = time.monotonic() + TAKEOVER_WITHIN
        while "another client took the client ID" not in errors.read_text():  # it waits for its input
            assert time.monotonic() < deadline, errors.read_text()
            time.sleep(0.05)
        send.stdin.write(b"four\n")
        send.stdin.close()
        code = send.wait(10)
        err = errors.read_text()
        _assert_taken_over(code, err, "twin-send", "Send")
        lines = [json.loads(line) for line in results.read_text().splitlines()]
        assert [(line["index"], line["status"]) for line in lines] == [
            (0, "SUCCESS"), (1, "SUCCESS"), (2, "SUCCESS"), (3, "FAILURE")]
        assert listen.poll() is None
    finally:
        stop_process(send)
        if listen is not None:
            stop_process(listen)


def test_network_cuts_are_not_a_takeover(broker: BrokerThread, tmp_path: Path) -> None:
    """A connection cut again and again soon after each reconnect (TCP resets) is a network fault, not
    another client: the Listen goes on."""
    fast = tmp_path / "fast.json"
    fast.write_text(json.dumps({"reconnect_delay": 0.05, "reconnect_max_delay": 0.1}))
    with FaultProxy("127.0.0.1", broker.port) as proxy:
        listen = _start_listen(proxy.port, "cut-often", "cut/often", "--connection", str(fast))
        try:
            _wait_subscribed(proxy.port, "cut/often", listen)
            for _ in range(8):
                proxy.cut()
                _wait_subscribed(proxy.port, "cut/often", listen)  # reconnected, then cut again at once
            assert listen.poll() is None, listen.stderr.read().decode() if listen.stderr else ""
        finally:
            stop_process(listen)


class _ClosingOnPublish(socketserver.BaseRequestHandler):
    """An MQTT 3.1.1 "broker" that accepts every connection and closes it, in good order, on the first
    PUBLISH (as NATS does on a QoS 2 PUBLISH, which it does not support)."""

    def handle(self) -> None:
        conn = self.request
        conn.settimeout(5)
        try:
            if conn.recv(65536)[:1] == b"\x10":  # CONNECT (PUBLISHes come after the CONNACK)
                conn.sendall(b"\x20\x02\x00\x00")
                while (data := conn.recv(65536)) and data[0] & 0xF0 != 0x30:
                    pass
            conn.shutdown(socket.SHUT_WR)  # a close in good order (a FIN, not a reset)
            while conn.recv(65536):
                pass
        except OSError:
            pass


@contextmanager
def broker_closing_on_publish() -> Iterator[int]:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ClosingOnPublish) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join(5)


def test_a_broker_that_closes_on_what_it_refuses_is_not_a_takeover() -> None:
    """The broker closes the connection each time the same message is sent again: that message, not
    another client, is the cause. Each document is FAILURE, and no 'another client' error."""
    connection = {"port": 0, "ack_timeout": 2, "reconnect_delay": 0.05, "reconnect_max_delay": 0.1}
    with broker_closing_on_publish() as port:
        results = list(Runtime(default_connector="mqtt").send({**connection, "port": port}, {"action": "send", "topic": "t", "qos": 1},
                                      ["a", "b"]))
    assert [r.status.value for r in results] == ["FAILURE", "FAILURE"]
    assert not any("another client" in (r.error or "") for r in results)
