"""Interop with a real broker and real clients: Mosquitto 2.0 with ``mosquitto_pub`` and ``mosquitto_sub``
talking to our CLI Listen and Send, and the foundation's Send/Listen round trip through the Python API."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from brokers import MosquittoBroker, stop_process
from connector.harness.runtime import Runtime
from connector.sdk.documents import Status
from test_cli import LineReader, payload_of
from test_cli_promises import cli_listen, cli_send, documents

WAIT = 10.0
BINARY = bytes(range(256))


def mosquitto_pub(clients: dict[str, str], broker: MosquittoBroker, topic: str, *args: str) -> None:
    done = subprocess.run([clients["mosquitto_pub"], "-h", broker.host, "-p", str(broker.port), "-t", topic, *args],
                          capture_output=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr


@contextmanager
def mosquitto_sub(clients: dict[str, str], broker: MosquittoBroker, topic: str) -> Iterator[LineReader]:
    """``mosquitto_sub`` printing ``RETAIN QOS TOPIC HEX`` per message; returns once it is subscribed.

    It also subscribes to a marker topic, which is published until it shows up: from then on the
    subscription to ``topic`` (made in the same SUBSCRIBE) is in place.
    """
    marker = f"{topic}-marker"
    proc = subprocess.Popen([clients["mosquitto_sub"], "-h", broker.host, "-p", str(broker.port), "-q", "2",
                             "-t", topic, "-t", marker, "-F", "%r %q %t %x"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = LineReader(proc.stdout)  # type: ignore[arg-type]
        deadline = time.monotonic() + WAIT
        while True:
            assert time.monotonic() < deadline and proc.poll() is None, "mosquitto_sub did not subscribe"
            mosquitto_pub(clients, broker, marker, "-m", "m")
            line = out.get(0.2)
            if line is not None and line.split()[2] == marker.encode():
                break
        yield out
    finally:
        stop_process(proc)


def received(out: LineReader, topic: str, count: int) -> list[tuple[bool, int, bytes]]:
    """The next ``count`` messages of ``topic`` that mosquitto_sub printed: (retained, qos, payload)."""
    messages = []
    while len(messages) < count:
        line = out.get(WAIT)
        assert line is not None, f"mosquitto_sub printed only {messages}"
        retained, qos, got_topic, hex_payload = (line.rstrip(b"\n").split(b" ") + [b""])[:4]
        if got_topic == topic.encode():
            messages.append((retained == b"1", int(qos), bytes.fromhex(hex_payload.decode())))
    return messages


# -- mosquitto_pub -> our Listen (CLI) ---------------------------------------------------------

def test_mosquitto_pub_text_reaches_our_listen(mosquitto: MosquittoBroker, mosquitto_clients: dict, unique: str) -> None:
    topic = f"{unique}/text"
    with cli_listen(mosquitto, "--topic", topic, "--count", "1") as (proc, out):
        mosquitto_pub(mosquitto_clients, mosquitto, topic, "-m", "héllo wörld")
        docs = documents(proc, out)
    assert [(d["payload"], d["encoding"], d["properties"]["topic"], d["properties"]["retained"]) for d in docs] == [
        ("héllo wörld", "utf-8", topic, False)]


def test_mosquitto_pub_binary_file_reaches_our_listen_byte_for_byte(mosquitto: MosquittoBroker,
                                                                    mosquitto_clients: dict, unique: str,
                                                                    tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(BINARY)
    topic = f"{unique}/binary"
    with cli_listen(mosquitto, "--topic", topic, "--qos", "1", "--count", "1") as (proc, out):
        mosquitto_pub(mosquitto_clients, mosquitto, topic, "-q", "1", "-f", str(blob))
        (doc,) = documents(proc, out)
    assert doc["encoding"] == "base64" and payload_of(doc) == BINARY


def test_mosquitto_pub_retained_reaches_a_later_listen_as_retained(mosquitto: MosquittoBroker,
                                                                   mosquitto_clients: dict, unique: str) -> None:
    topic = f"{unique}/retained"
    mosquitto_pub(mosquitto_clients, mosquitto, topic, "-q", "1", "-r", "-m", "21")
    with cli_listen(mosquitto, "--topic", topic, "--qos", "1", "--count", "1") as (proc, out):
        docs = documents(proc, out)
    assert [(d["payload"], d["properties"]["retained"], d["properties"]["qos"]) for d in docs] == [("21", True, 1)]


@pytest.mark.parametrize("qos", [1, 2])
def test_mosquitto_pub_qos_is_reported_by_our_qos2_listen(qos: int, mosquitto: MosquittoBroker,
                                                          mosquitto_clients: dict, unique: str) -> None:
    topic = f"{unique}/qos{qos}"
    with cli_listen(mosquitto, "--topic", topic, "--qos", "2", "--count", "1") as (proc, out):
        mosquitto_pub(mosquitto_clients, mosquitto, topic, "-q", str(qos), "-m", f"at qos {qos}")
        docs = documents(proc, out)
    assert [(d["payload"], d["properties"]["qos"]) for d in docs] == [(f"at qos {qos}", qos)]


# -- our Send (CLI) -> mosquitto_sub -----------------------------------------------------------

def test_our_send_text_and_binary_reach_mosquitto_sub(mosquitto: MosquittoBroker, mosquitto_clients: dict,
                                                      unique: str, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(BINARY)
    topic = f"{unique}/to-sub"
    with mosquitto_sub(mosquitto_clients, mosquitto, topic) as out:
        cli_send(mosquitto, topic, "--qos", "1", "--message", "héllo wörld")
        cli_send(mosquitto, topic, "--qos", "1", "--file", str(blob))
        messages = received(out, topic, 2)
    assert messages == [(False, 1, "héllo wörld".encode()), (False, 1, BINARY)]


@pytest.mark.parametrize("qos", [1, 2])
def test_our_send_qos_reaches_mosquitto_sub(qos: int, mosquitto: MosquittoBroker, mosquitto_clients: dict,
                                            unique: str) -> None:
    topic = f"{unique}/qos{qos}"
    with mosquitto_sub(mosquitto_clients, mosquitto, topic) as out:
        cli_send(mosquitto, topic, "--qos", str(qos), "--message", "x")
        assert received(out, topic, 1) == [(False, qos, b"x")]


def test_our_retained_send_reaches_a_later_mosquitto_sub_as_retained(mosquitto: MosquittoBroker,
                                                                     mosquitto_clients: dict, unique: str) -> None:
    topic = f"{unique}/retained"
    cli_send(mosquitto, topic, "--qos", "1", "--retained", "--message", "21")
    later = subprocess.run([mosquitto_clients["mosquitto_sub"], "-h", mosquitto.host, "-p", str(mosquitto.port),
                            "-q", "1", "-t", topic, "-C", "1", "-W", "10", "-F", "%r %t %p"],
                           capture_output=True, timeout=WAIT + 5)
    assert later.returncode == 0, later.stderr
    assert later.stdout == f"1 {topic} 21\n".encode()


# -- the foundation's round trip through the Python API, on Mosquitto --------------------------

def _send(runtime: Runtime, connection: dict, topic: str, payloads: list, qos: int) -> None:
    results = list(runtime.send(connection, {"action": "send", "topic": topic, "qos": qos, "retained": False},
                                payloads))
    assert [r.status for r in results] == [Status.SUCCESS] * len(payloads), results[:3]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_api_round_trip_on_mosquitto(qos: int, runtime: Runtime, mosquitto: MosquittoBroker, unique: str) -> None:
    connection = {"host": mosquitto.host, "port": mosquitto.port, "connect_timeout": 5, "ack_timeout": 10}
    topic = f"{unique}/round-trip"
    payloads = [f"document {i}".encode() for i in range(5)]
    with runtime.listen_in_background(connection, {"action": "listen", "topic": topic, "qos": qos},
                                      count=len(payloads), timeout=WAIT) as bg:
        bg.wait_ready()
        _send(runtime, connection, topic, payloads, qos)
    assert bg.outcome is not None and bg.outcome.reason == "count"
    assert [(d.payload, d.properties["topic"], d.properties["qos"], d.properties["retained"])
            for d in bg.documents] == [(p, topic, qos, False) for p in payloads]


def test_api_1000_qos1_documents_on_mosquitto(runtime: Runtime, mosquitto: MosquittoBroker, unique: str) -> None:
    connection = {"host": mosquitto.host, "port": mosquitto.port, "connect_timeout": 5, "ack_timeout": 10}
    topic = f"{unique}/stream"
    payloads = [f"document {i}".encode() for i in range(1000)]
    with runtime.listen_in_background(connection, {"action": "listen", "topic": topic, "qos": 1},
                                      count=len(payloads), timeout=30) as bg:
        bg.wait_ready()
        _send(runtime, connection, topic, payloads, 1)
    assert bg.outcome is not None and bg.outcome.reason == "count"
    got = [d.payload for d in bg.documents]
    assert len(got) == 1000 and sorted(got) == sorted(payloads)
    assert {d.properties["qos"] for d in bg.documents} == {1}
