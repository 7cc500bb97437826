"""Connection features: last will, client ID templates, failover brokers, WebSocket, session expiry."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from brokers import ClosingDoor, MosquittoBroker
from clirun import run_cli, start_cli
from faultproxy import FaultProxy

from connector.mqtt.broker import BrokerThread, free_port
from connector.harness.runtime import Runtime
from connector.mqtt.connection import MqttConnection
from connector.sdk.documents import Status

WAIT = 15.0


def listen_op(topic: str, qos: int = 1) -> dict:
    return {"action": "listen", "topic": topic, "qos": qos}


def send_op(topic: str, qos: int = 1) -> dict:
    return {"action": "send", "topic": topic, "qos": qos}


def opened(**config: object) -> MqttConnection:
    return MqttConnection(Runtime(default_connector="mqtt").manifest().validate_connection(config)).open()


# -- last will ---------------------------------------------------------------------------------------

def test_the_will_is_published_when_the_connection_dies_and_not_after_a_close(mosquitto: MosquittoBroker,
                                                                            unique: str) -> None:
    runtime, will = Runtime(default_connector="mqtt"), f"{unique}/status"
    with runtime.listen_in_background({"port": mosquitto.port}, listen_op(will)) as watch:
        watch.wait_ready()
        with FaultProxy("127.0.0.1", mosquitto.port) as proxy:
            conn = opened(port=proxy.port, will_topic=will, will_payload="plant-7 offline", will_qos=1,
                          reconnect_delay=5)
            proxy.cut()  # a crash or a cut network: no DISCONNECT
            deadline = time.monotonic() + WAIT
            while not watch.documents:
                assert time.monotonic() < deadline, "no will"
                time.sleep(0.02)
            conn.close()
        polite = opened(port=mosquitto.port, will_topic=will, will_payload="should not come")
        polite.close()
        time.sleep(0.5)
    assert [d.payload for d in watch.documents] == [b"plant-7 offline"]


def test_a_will_topic_with_a_wildcard_is_bad_input(mosquitto: MosquittoBroker) -> None:
    done = run_cli("check", "--port", str(mosquitto.port), "--will-topic", "status/#")
    assert done.returncode == 2
    assert b"--will-topic: " in done.stderr and b"wildcard" in done.stderr


# -- client ID templates -----------------------------------------------------------------------------

def test_client_id_template_is_filled_in(mosquitto: MosquittoBroker) -> None:
    conn = opened(port=mosquitto.port, client_id="orders-{hostname}-{pid}-{random}")
    try:
        prefix = f"orders-{socket.gethostname()}-{os.getpid()}-"
        assert conn.client_id.startswith(prefix) and len(conn.client_id) == len(prefix) + 8
    finally:
        conn.close()
    again = opened(port=mosquitto.port, client_id="orders-{random}")
    again.close()
    assert again.client_id != conn.client_id


@pytest.mark.parametrize("template", ["orders-{host}", "orders-{", "orders-{0}"])
def test_a_bad_client_id_template_is_bad_input(template: str, mosquitto: MosquittoBroker) -> None:
    done = run_cli("check", "--port", str(mosquitto.port), "--client-id", template)
    assert done.returncode == 2, done.stderr
    assert b"--client-id: " in done.stderr and b"Traceback" not in done.stderr


# -- failover ----------------------------------------------------------------------------------------

def test_failover_at_start_tries_the_next_broker(mosquitto: MosquittoBroker) -> None:
    dead = free_port()
    done = run_cli("send", "--port", str(dead), "--failover", f"127.0.0.1:{mosquitto.port}", "--topic", "f/t",
                   "--qos", "1", "--message", "x")
    assert done.returncode == 0, done.stderr
    nowhere = run_cli("check", "--port", str(dead), "--failover", f"127.0.0.1:{free_port()}")
    assert nowhere.returncode == 3
    assert nowhere.stderr.decode().startswith("error: no broker can be reached: connection refused by")


def test_failover_on_reconnect_moves_to_the_next_broker(mosquitto: MosquittoBroker, unique: str) -> None:
    """Two addresses of one broker stand for two brokers of a cluster: the first goes away in the
    middle of a Send, which goes on through the second."""
    runtime, topic = Runtime(default_connector="mqtt"), f"{unique}/failover"
    with FaultProxy("127.0.0.1", mosquitto.port) as first:
        conn = {"port": first.port, "failover": [f"127.0.0.1:{mosquitto.port}"], "reconnect_delay": 0.05,
                "reconnect_max_delay": 0.2}

        def documents() -> Iterator[str]:
            for i in range(100):
                if i == 50:
                    first.down()
                yield str(i)

        with runtime.listen_in_background({"port": mosquitto.port}, listen_op(topic)) as watch:
            watch.wait_ready()
            results = list(runtime.send(conn, send_op(topic), documents()))
            deadline = time.monotonic() + WAIT
            while len({d.payload for d in watch.documents}) < 100 and time.monotonic() < deadline:
                time.sleep(0.02)
    assert [r.status for r in results] == [Status.SUCCESS] * 100
    assert {d.payload for d in watch.documents} == {str(i).encode() for i in range(100)}


# -- waiting for a cluster node ----------------------------------------------------------------------

#: Fast retries, so that three closed connections take well under a second of backoff.
RETRY_FAST = ("--reconnect-delay", "0.05", "--reconnect-max-delay", "0.2")


def test_send_waits_through_a_node_that_closes_before_accepting(mosquitto: MosquittoBroker, unique: str) -> None:
    """A cluster node electing leaders closes connections before its CONNACK for a while: with a
    wait, every address is tried again each round (the first here refuses) until the node accepts."""
    topic = f"{unique}/door"
    with ClosingDoor(("127.0.0.1", mosquitto.port), closes=3) as door:
        done = run_cli("send", "--port", str(free_port()), "--failover", f"127.0.0.1:{door.port}", "--topic", topic,
                       "--qos", "1", "--retained", "--message", "through", "--wait-for-broker", "60", *RETRY_FAST)
        assert done.returncode == 0, done.stderr
        assert door.refused == 3 and door.opened.is_set()
    got = run_cli("listen", "--port", str(mosquitto.port), "--topic", topic, "--count", "1", "--timeout", str(WAIT))
    assert b'"payload": "through"' in got.stdout, got.stderr
    assert b"closed the connection before accepting it" in done.stderr  # said while waiting, as a warning
    assert b"error:" not in done.stderr


def test_listen_waits_through_a_node_that_closes_before_accepting(mosquitto: MosquittoBroker, unique: str) -> None:
    topic = f"{unique}/door"
    assert run_cli("send", "--port", str(mosquitto.port), "--topic", topic, "--qos", "1", "--retained",
                   "--message", "waiting").returncode == 0
    with ClosingDoor(("127.0.0.1", mosquitto.port), closes=3) as door:
        listen = start_cli("listen", "--port", str(door.port), "--topic", topic, "--qos", "1", "--count", "1",
                           "--wait-for-broker", "60", *RETRY_FAST)
        try:
            out, err = listen.communicate(timeout=60)
        finally:
            if listen.poll() is None:
                listen.kill()
                listen.wait(10)
        assert listen.returncode == 0, err
        assert door.refused == 3
    assert b'"payload": "waiting"' in out


def test_without_a_wait_a_node_that_closes_before_accepting_is_an_error_at_once() -> None:
    with ClosingDoor(None, closes=0) as door:
        done = run_cli("send", "--port", str(door.port), "--topic", "t/door", "--qos", "1", "--message", "x")
    assert done.returncode == 3
    assert done.stderr.decode().startswith(f"error: 127.0.0.1:{door.port} closed the connection before accepting it")
    assert "is it an MQTT broker on a plain (not TLS or WebSocket) port?" in done.stderr.decode()
    assert door.refused == 1 and b"Traceback" not in done.stderr


def test_past_the_wait_the_error_names_every_address_tried() -> None:
    dead = free_port()
    with ClosingDoor(None, closes=0) as door:
        began = time.monotonic()
        done = run_cli("check", "--port", str(dead), "--failover", f"127.0.0.1:{door.port}", "--wait-for-broker",
                       "2", *RETRY_FAST)
        waited = time.monotonic() - began
    assert done.returncode == 3
    lines = done.stderr.decode().splitlines()
    error = lines[-1]
    assert error.startswith(f"error: no broker can be reached: connection refused by 127.0.0.1:{dead}"), lines
    assert f"127.0.0.1:{door.port} closed the connection before accepting it" in error
    rounds = int(error.split("(tried ")[1].split(" times")[0])
    assert rounds >= 2 and door.refused == rounds, (rounds, door.refused)  # each round tried the node again
    assert waited >= 2, f"gave up after {waited:.1f} s of a 2 s wait"
    assert all(line.startswith("warning: no broker can be reached") for line in lines[:-1])


# -- WebSocket ---------------------------------------------------------------------------------------

def test_send_and_listen_over_websocket(unique: str) -> None:
    runtime, topic = Runtime(default_connector="mqtt"), f"{unique}/ws"
    with BrokerThread(websocket=True) as broker:
        assert broker.ws_port is not None
        conn = {"port": broker.ws_port, "transport": "websockets", "ws_path": "/mqtt"}
        with runtime.listen_in_background(conn, listen_op(topic), count=2) as watch:
            watch.wait_ready()
            assert all(r.ok for r in runtime.send(conn, send_op(topic), ["over", "websocket"]))
        done = run_cli("check", "--port", str(broker.ws_port), "--transport", "websockets")
    assert [d.payload for d in watch.documents] == [b"over", b"websocket"]
    assert done.returncode == 0, done.stderr


# -- MQTT 5 session expiry ---------------------------------------------------------------------------

def test_mqtt5_session_expiry_ends_the_session(mosquitto: MosquittoBroker, unique: str) -> None:
    runtime, topic = Runtime(default_connector="mqtt"), f"{unique}/expiry"
    v5 = {"port": mosquitto.port, "protocol": "5", "clean_session": False}
    short = {**v5, "client_id": f"{unique}-short", "session_expiry": 1}
    kept = {**v5, "client_id": f"{unique}-kept"}
    for session in (short, kept):
        with runtime.listen_in_background(session, listen_op(topic), timeout=0.3) as bg:
            bg.wait_ready()
    assert all(r.ok for r in runtime.send({"port": mosquitto.port}, send_op(topic), ["while away"]))
    time.sleep(2.5)  # longer than the short session lives
    gone = runtime.listen(short, listen_op(topic), lambda d: None, count=1, timeout=1.5)
    there = runtime.listen(kept, listen_op(topic), lambda d: None, count=1, timeout=WAIT)
    assert (gone.accepted, there.accepted) == (0, 1)
    runtime.check({**kept, "clean_session": True, "session_expiry": 0})  # end the kept session
