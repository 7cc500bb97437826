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
from test_client_rules import ScriptedBroker, client, publish, scripted  # noqa: F401 (fixtures)

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
