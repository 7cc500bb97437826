"""The client's network fast paths: buffered reads split into packets (connector/mqtt/framing.py),
queued packets joined into large writes that survive partial writes, and wake-ups of paho's loop
only when it sleeps, never lost."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from brokers import remaining_length
from test_client_rules import PUBACK, ScriptedBroker, client, publish, scripted  # noqa: F401 (fixtures)

from connector.mqtt.connection import MqttConnection
from connector.mqtt.framing import CHUNK, FramingError, PacketReader
from connector.mqtt.paho_client import PahoClient, is_published

import paho.mqtt.client as paho


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


#: One of each size class of Remaining Length (1, 2 and 3 bytes), and an empty body.
STREAM = [(0x30, b"a" * 5), (0xD0, b""), (0x32, b"b" * 200), (0x40, b"\x00\x07"), (0x30, b"c" * 20_000),
          (0x34, b"d" * 127), (0x30, b"e" * 128)]


def read_all(reader: PacketReader, pieces: list[bytes]) -> list[tuple[int, bytes]]:
    got = []
    for piece in pieces:
        got += [(first, bytes(body)) for first, length, body in reader.packets(piece) if length == len(body)]
    return got


def test_packets_split_at_every_byte_boundary_come_whole() -> None:
    stream = b"".join(packet(first, body) for first, body in STREAM)
    for cut in range(1, len(stream)):
        reader = PacketReader()
        assert read_all(reader, [stream[:cut], stream[cut:]]) == STREAM, cut
        assert reader.need == 0


def test_packets_fed_one_byte_at_a_time_come_whole() -> None:
    stream = b"".join(packet(first, body) for first, body in STREAM[:4] + STREAM[5:])
    reader = PacketReader()
    assert read_all(reader, [stream[i:i + 1] for i in range(len(stream))]) == STREAM[:4] + STREAM[5:]


def test_many_packets_in_one_chunk_are_all_handled_at_once() -> None:
    bodies = [struct.pack("!H", 1) + b"t" + b"%05d" % i for i in range(2_000)]
    reader = PacketReader()
    got = read_all(reader, [b"".join(packet(0x30, body) for body in bodies)])
    assert [body for _, body in got] == bodies
    assert reader.need == 0  # nothing left for a later read: select() would sleep on it


def test_a_packet_larger_than_a_chunk_is_read_in_few_large_reads() -> None:
    body = bytes(range(256)) * (3 * CHUNK // 256)
    large = packet(0x30, body)
    reader = PacketReader()
    assert reader.want() == CHUNK
    assert read_all(reader, [large[:CHUNK]]) == []
    assert reader.want() == len(large) - CHUNK  # the rest of the large packet is asked for in one read
    assert read_all(reader, [large[CHUNK:] + packet(0xD0, b"")]) == [(0x30, body), (0xD0, b"")]
    assert reader.want() == CHUNK


def test_a_remaining_length_of_five_bytes_is_refused() -> None:
    with pytest.raises(FramingError):
        list(PacketReader().packets(b"\x30\xff\xff\xff\xff\x01"))


# -- the writer -------------------------------------------------------------------------------------

@pytest.fixture
def silent_peer() -> Iterator[socket.socket]:
    """A server that accepts one connection and reads only when the test does."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def test_joined_writes_go_on_after_partial_writes_and_mark_qos0_published_only_once_written(
        silent_peer: socket.socket) -> None:
    client = PahoClient(paho.CallbackAPIVersion.VERSION2, reconnect_delay=lambda attempt: 0.0)
    client.on_socket_register_write = lambda *args: None  # an outside loop: nothing is written until loop_write()

    def small_buffer(client: PahoClient, userdata: object, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = small_buffer
    client.connect("127.0.0.1", silent_peer.getsockname()[1])
    peer, _ = silent_peer.accept()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    payloads = [b"%06d" % i + b"x" * 994 for i in range(1_000)]  # 1 MB: far more than the buffers hold
    infos = [client.publish("w/t", payload) for payload in payloads]
    client.loop_write()
    published = [is_published(info) for info in infos]
    assert 0 < published.index(False)  # some went out before the socket was full, the rest wait
    assert not any(published[published.index(False):])  # in order: none marked before its bytes went
    received = bytearray()
    peer.settimeout(5)
    deadline = time.monotonic() + 30
    while not is_published(infos[-1]):
        assert time.monotonic() < deadline
        received += peer.recv(1 << 16)
        client.loop_write()
    expected = b"".join(packet(0x30, struct.pack("!H", 3) + b"w/t" + p) for p in payloads)
    connect = 2 + received[1]  # the CONNECT before them (a Remaining Length of one byte)
    while len(received) < connect + len(expected):
        received += peer.recv(1 << 16)
    assert all(info.rc == paho.MQTT_ERR_SUCCESS for info in infos)
    assert bytes(received[connect:]) == expected
    peer.close()
    client.loop_stop()


# -- waking paho's loop -----------------------------------------------------------------------------

def test_a_publish_while_the_loop_sleeps_goes_out_at_once(scripted: ScriptedBroker, client: MqttConnection) -> None:
    # paho's loop sleeps up to 1 s in select() (keep alive 60 s): a lost wake-up would hold the
    # message that long. Publishers in two threads, each message waited for on its own.
    late: list[float] = []

    def publisher(name: str) -> None:
        for i in range(15):
            time.sleep(0.01 * (i % 3))  # sometimes the loop has gone back to sleep, sometimes not
            started = time.monotonic()
            info = client.client.publish(f"wake/{name}", b"%d" % i)
            deadline = started + 5
            while not is_published(info) and time.monotonic() < deadline:
                time.sleep(0.0005)
            late.append(time.monotonic() - started)

    threads = [threading.Thread(target=publisher, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(late) == 30
    assert max(late) < 0.5, sorted(late)[-3:]


def test_packets_that_arrived_together_are_handled_without_waiting_for_more(scripted: ScriptedBroker,
                                                                            client: MqttConnection) -> None:
    # All in one write, then silence: what a read took in must not wait in a buffer for select().
    scripted.send(*(publish(mid, qos=1, payload=b"%d" % mid) for mid in range(1, 301)))
    started = time.monotonic()
    got = [client.inbox.get(timeout=5).payload for _ in range(300)]
    assert got == [b"%d" % mid for mid in range(1, 301)]
    assert time.monotonic() - started < 0.5


# -- receiving: PUBLISH read in place, a read's messages handed over together, acks in one write ---

PUBLISHES = [  # (first byte, topic, message id, MQTT 5 properties, payload)
    (0x30, b"t", None, b"\x00", b""), (0x31, b"a/b", None, b"\x00", b"x" * 300), (0x32, b"\xc3\xa9", 7, b"\x00", b"p"),
    (0x3D, b"t/" * 100, 65535, b"\x02\x01\x01", b"\x00\xff" * 100),  # DUP, QoS 2, retained; format indicator
    (0x34, b"s", 1, b"\x0b\x26\x00\x01k\x00\x01v\x03\x00\x01c", b"{}"),  # a user property, a content type
]


@pytest.mark.parametrize("mqtt5", [False, True])
def test_a_publish_reads_as_paho_decodes_it(mqtt5: bool) -> None:
    from paho.mqtt import _packet

    from connector.mqtt.paho_client import _parse_publish

    protocol = paho.MQTTv5 if mqtt5 else paho.MQTTv311
    for first, topic, mid, properties, payload in PUBLISHES:
        body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if mid else b"")
        body += (properties if mqtt5 else b"") + payload
        mine, paho_s = _parse_publish(first, bytearray(body), mqtt5, 3), _packet.decode_publish(first, body, protocol)
        assert (mine.raw_topic, mine.payload, mine.qos, mine.retain, mine.dup, mine.mid) == (
            paho_s.topic, paho_s.payload, paho_s.qos, paho_s.retain, paho_s.dup, paho_s.mid)
        assert type(mine.payload) is bytes and mine.connection == 3 and not mine.accepted
        assert str(mine.properties) == str(paho_s.properties)


def test_a_short_or_topicless_publish_is_malformed() -> None:
    from paho.mqtt.exception import MalformedPacket

    from connector.mqtt.paho_client import _parse_publish

    for first, body, mqtt5 in [(0x30, b"\x00", False), (0x32, b"\x00\x01t\x00", False), (0x30, b"\x00\x05t", False),
                               (0x30, b"\x00\x00x", False), (0x36, b"\x00\x01t\x00\x01", False)]:
        with pytest.raises(MalformedPacket):
            _parse_publish(first, body, mqtt5, 1)
    assert _parse_publish(0x30, b"\x00\x00\x00x", True, 1).payload == b"x"  # MQTT 5: a topic alias may stand for it


def test_messages_read_together_are_handed_over_together_and_acknowledged_in_one_write(
        scripted: ScriptedBroker, client: MqttConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[int] = []
    writes: list[bytes] = []
    on_messages, send = client.client.on_messages, PahoClient._sock_send
    client.client.on_messages = lambda c, userdata, messages: (handed.append(len(messages)), on_messages(c, userdata, messages))
    monkeypatch.setattr(PahoClient, "_sock_send", lambda c, data: (writes.append(bytes(data)), send(c, data))[1])
    scripted.send(*(publish(mid, qos=1, payload=b"%d" % mid) for mid in range(1, 301)))  # one write
    messages = [client.inbox.get(timeout=5) for _ in range(300)]
    assert [m.payload for m in messages] == [b"%d" % mid for mid in range(1, 301)]
    assert sum(handed) == 300 and len(handed) <= 3, handed  # a read's messages at once (not one by one)
    client.client.ack_all(messages)
    scripted.wait_answer(PUBACK, 300)
    assert scripted.answers(PUBACK) == list(range(1, 301))
    acks = [data for data in writes if data[:1] == b"\x40"]
    assert acks == [b"".join(b"\x40\x02" + struct.pack("!H", mid) for mid in range(1, 301))]
