"""Connection features: last will, client ID templates, failover brokers, WebSocket, session expiry."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from brokers import MosquittoBroker
from clirun import run_cli
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
