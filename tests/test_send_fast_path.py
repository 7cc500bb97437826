"""The Send's publish path: PUBLISH packets built by the client itself (the very bytes paho
builds), no per-message objects of paho's (MQTTMessageInfo with its Condition, a ReasonCode and
Properties per acknowledgement), QoS 0 documents handed to the writer beyond the in-flight
window, and the waits for a message sharing one condition."""

from __future__ import annotations

import threading
import types
import time
from collections.abc import Iterator
from typing import Any

import pytest

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connector.harness.runtime import Runtime
from connector.mqtt import send as send_module
from connector.mqtt.connection import MqttConnection
from connector.mqtt.paho_client import Delivery, PahoClient, _Settled, wait_published


def captured_client(protocol: int) -> tuple[PahoClient, list[bytes]]:
    """A client that is 'connected' and keeps every packet it queues."""
    client = PahoClient(paho.CallbackAPIVersion.VERSION2, reconnect_delay=lambda attempt: 0.0, protocol=protocol)
    packets: list[bytes] = []
    client._packet_queue = lambda command, packet, mid, qos, info=None: packets.append(bytes(packet))  # type: ignore[method-assign]
    client._sock = types.SimpleNamespace(close=lambda: None)  # type: ignore[assignment]
    return client, packets


@pytest.mark.parametrize("protocol", [paho.MQTTv311, paho.MQTTv5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_message_queues_the_bytes_paho_builds(protocol: int, qos: int) -> None:
    ours, mine = captured_client(protocol)
    theirs, paho_packets = captured_client(protocol)
    user = Properties(PacketTypes.PUBLISH)
    user.UserProperty = [("k", "v")]
    # Remaining Lengths of one, two and three bytes; a topic that is not ASCII; retained or not
    for topic, size, retain, properties in [("a/b", 0, False, None), ("é/t", 100, True, None), ("x", 200, False, user),
                                            ("long/" * 20, 20_000, True, None)]:
        payload = bytes(range(256)) * (size // 256) + b"p" * (size % 256)
        name = topic.encode("utf-8")
        packed = properties.pack() if properties is not None else b"\x00"
        delivery = ours.publish_message(name, payload, qos, retain, properties, packed)
        assert delivery.rc == paho.MQTT_ERR_SUCCESS and not delivery.published
        theirs._send_publish(delivery.mid, name, payload, qos, retain, False, None, properties)
        assert mine[-1] == paho_packets[-1], (topic, size)
    if qos:  # in paho's session state, in flight, as paho's own publish() leaves it
        assert len(ours._out_messages) == 4 and ours._inflight_messages == 4
        message = ours._out_messages[delivery.mid]
        assert message.info is delivery and message.topic == "long/" * 20 and message.qos == qos


def test_publish_message_without_a_connection_keeps_qos_1_and_refuses_qos_0() -> None:
    client = PahoClient(paho.CallbackAPIVersion.VERSION2, reconnect_delay=lambda attempt: 0.0)
    assert client.publish_message(b"t", b"x", 0, False).rc == paho.MQTT_ERR_NO_CONN
    kept = client.publish_message(b"t", b"x", 1, False)
    assert kept.rc == paho.MQTT_ERR_NO_CONN  # sent after reconnecting, as paho's publish() does
    assert client._out_messages[kept.mid].state == paho.mqtt_ms_publish and client._inflight_messages == 0


def test_a_wait_for_a_delivery_ends_when_it_is_settled_or_times_out() -> None:
    settled = _Settled()
    waiting, other = Delivery(1, settled), Delivery(2, settled)
    assert not wait_published(waiting, 0.05)  # nobody settles it: the timeout
    threading.Timer(0.05, other._set_as_published).start()  # another message settled: the wait goes on
    threading.Timer(0.15, waiting._set_as_published).start()
    started = time.monotonic()
    assert wait_published(waiting, 5)
    assert 0.1 < time.monotonic() - started < 4 and settled.waiting == 0


class _Counting(_Settled):
    """Settles every message handed over when the Send first waits, and says how many it held."""

    def __init__(self, handed: list[Delivery]) -> None:
        super().__init__()
        self.handed, self.held_at_wait = handed, None

    def wait(self, delivery: Delivery, timeout: float) -> bool:
        if self.held_at_wait is None:
            self.held_at_wait = sum(1 for d in self.handed if not d.published)
        for held in self.handed:
            held._set_as_published()
        return True


class _WriterClient:
    """A client that writes (settles) nothing until the Send waits."""

    def __init__(self) -> None:
        self.handed: list[Delivery] = []
        self.settled = _Counting(self.handed)

    def publish_message(self, topic: bytes, payload: bytes, qos: int, retain: bool, properties: Any = None,
                        packed: bytes = b"\x00") -> Delivery:
        delivery = Delivery(len(self.handed) + 1, self.settled)
        self.handed.append(delivery)
        return delivery


def _fake_connection(client: Any) -> MqttConnection:
    config = Runtime(default_connector="mqtt").manifest().validate_connection({"port": 1})
    conn = MqttConnection(config)
    conn.client = client
    conn.up.set()
    return conn


@pytest.mark.parametrize(("qos", "size", "held"), [
    (0, 200, send_module.QOS0_WINDOW),  # QoS 0: many wait to be written, not a window's worth
    (0, 1 << 20, 5),  # ... but no more than QOS0_WINDOW_BYTES of payloads
    (1, 200, 20),  # QoS 1: the in-flight window (the default max_inflight)
])
def test_documents_handed_to_the_client_before_the_send_waits(qos: int, size: int, held: int) -> None:
    client = _WriterClient()
    conn = _fake_connection(client)
    documents = (send_module.Document(b"%06d" % i + b"x" * (size - 6), {}) for i in range(2_000 if size < 1000 else 50))
    results = list(send_module.send(conn, {"action": "send", "topic": "t", "qos": qos, "retained": False}, documents))
    assert [r.status for r in results] == [send_module.Status.SUCCESS] * len(results)
    assert [r.index for r in results] == list(range(len(results)))
    assert client.settled.held_at_wait == held


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many of paho's per-message objects are made."""
    counts = {"MQTTMessageInfo": 0, "Properties": 0, "ReasonCode": 0}
    for cls in (paho.MQTTMessageInfo, Properties, paho.ReasonCode):
        original = cls.__init__

        def init(self: Any, *args: Any, _original: Any = original, _name: str = cls.__name__, **kwargs: Any) -> None:
            counts[_name] += 1
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)
    return counts


def _documents(count: int) -> Iterator[bytes]:
    return (b"document %d" % i for i in range(count))


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_send_makes_no_per_message_objects_of_paho(mosquitto: Any, runtime: Runtime, unique: str,
                                                     counted: dict[str, int], protocol: str) -> None:
    connection = {"host": mosquitto.host, "port": mosquitto.port, "protocol": protocol}
    for qos in (0, 1):
        results = list(runtime.send(connection, {"action": "send", "topic": f"{unique}/{qos}", "qos": qos},
                                    _documents(300)))
        assert all(r.ok for r in results) and len(results) == 300
    # the connection's own packets (CONNACK, DISCONNECT) make a few; 600 messages and 300 PUBACKs none
    assert counted["MQTTMessageInfo"] == 0
    assert counted["Properties"] < 20 and counted["ReasonCode"] < 20, counted


def test_messages_queued_beyond_the_in_flight_window_are_all_sent(mosquitto: Any) -> None:
    client = PahoClient(paho.CallbackAPIVersion.VERSION2, reconnect_delay=lambda attempt: 0.0)
    client.max_inflight_messages_set(2)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        assert connected.wait(10)
        deliveries = [client.publish_message(b"queued/t", b"%d" % i, 1, False) for i in range(10)]
        assert [d.rc for d in deliveries] == [paho.MQTT_ERR_SUCCESS] * 10
        assert all(wait_published(d, 10) for d in deliveries)
        assert client._out_messages == {} and client._inflight_messages == 0
    finally:
        client.disconnect()
        client.loop_stop()
