"""Mosquitto 2.0 restarted from its persistence file with more QoS 2 messages in flight to a client
than ``max_inflight_messages``: it sends the ones beyond that number again as new PUBLISHes (DUP, same
id), also those the client had received and released (PUBREC, PUBREL), which MQTT forbids. A client
that completed one (PUBCOMP) has a free id and takes the PUBLISH as a new message: docs/delivery.md.

How it gets there: a PUBCOMP for the oldest message in flight lets up to ``max_inflight_messages``
queued messages into flight, however many are in flight already; on restart only the first
``max_inflight_messages`` restored ones keep their state, the rest are queued and published afresh.
The subscriber here is a raw socket, so that what it receives is exactly what the broker sent.
"""

from __future__ import annotations

import socket
import struct
import paho.mqtt.client as paho
import pytest
from brokers import MosquittoBroker
from raw_mqtt import RawClient, connect, packet, subscribe

from connector.mqtt.paho_client import wait_published

pytestmark = pytest.mark.timeout(60)

MESSAGES = 60
#: PUBCOMPs the subscriber sends, each for the oldest message in flight: enough to let all in.
COMPLETED = 5
_PUBLISH, _PUBREL = 3, 6


def _publish_all(port: int) -> None:
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, "restart-publisher")
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    try:
        infos = [publisher.publish("restart/t", f"{i:03d}", qos=2) for i in range(MESSAGES)]
        assert all(wait_published(info, 10) for info in infos)
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def _answer(client: RawClient, completing: int, quiet: float = 0.5) -> tuple[list[int], list[int]]:
    """Answers every PUBLISH with PUBREC and the first ``completing`` PUBRELs with PUBCOMP, until
    ``quiet`` seconds pass without a packet: the ids of the PUBLISHes and of the PUBRELs, in order."""
    published: list[int] = []
    released: list[int] = []
    while True:
        try:
            first, body = client.read_packet(quiet)
        except socket.timeout:
            return published, released
        if first >> 4 == _PUBLISH:
            topic_length = struct.unpack("!H", body[:2])[0]
            mid = struct.unpack("!H", body[2 + topic_length:4 + topic_length])[0]
            published.append(mid)
            client.sock.sendall(packet(0x50, mid.to_bytes(2, "big")))  # PUBREC
        elif first >> 4 == _PUBREL:
            mid = struct.unpack("!H", body[:2])[0]
            released.append(mid)
            if len(released) <= completing:
                client.sock.sendall(packet(0x70, mid.to_bytes(2, "big")))  # PUBCOMP


def _published_again_after_a_restart(broker: MosquittoBroker) -> tuple[int, int]:
    """(ids the subscriber released before the restart, how many of them came as a PUBLISH after)."""
    persistent = connect(b"restart-subscriber", flags=0x00)
    subscriber = RawClient(broker.port, b"restart-subscriber", first=persistent)
    try:
        subscriber.sock.sendall(subscribe(b"restart/t", options=2))
        assert subscriber.read_packet(5)[0] >> 4 == 9  # SUBACK
        _publish_all(broker.port)
        released = set(_answer(subscriber, COMPLETED)[1])
        broker.stop()
    finally:
        subscriber.close()
    broker.start()
    subscriber = RawClient(broker.port, b"restart-subscriber", first=persistent)
    try:
        published, _ = _answer(subscriber, MESSAGES)
    finally:
        subscriber.close()
    return len(released), len(set(published) & released)


@pytest.mark.parametrize(("setting", "published_again"), [
    pytest.param("", True, id="default-window"),
    pytest.param("max_inflight_messages 1000", False, id="window-1000"),
])
def test_mosquitto_restart_with_more_in_flight_than_its_window(setting: str, published_again: bool,
                                                               tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Must show: with the default window (20) Mosquitto 2.0 publishes again, after a restart, QoS 2
    messages the subscriber had released; with ``max_inflight_messages 1000`` it does not (every
    message it had in flight fits the window it restores)."""
    with MosquittoBroker(tmp_path, persistence=True, extra=setting) as broker:
        released, again = _published_again_after_a_restart(broker)
    assert released > 20 + COMPLETED, "the broker never had more than its window in flight"
    assert (again > 0) is published_again, f"{again} of {released} released messages published again"
