"""The delivery rules of the connector's MQTT client where paho 2.2's own fall short, shown packet
by packet against a scripted broker (a socket that sends exactly the packets a test gives it and
records what the client answers). See docs/delivery.md, "Where paho-mqtt needed help"."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from brokers import remaining_length

from connector.harness.runtime import Runtime
from connector.mqtt.connection import MqttConnection
from connector.mqtt.paho_client import PahoClient

CONNACK = 0x20
PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 0x30, 0x40, 0x50, 0x60, 0x70
SUBSCRIBE, PINGREQ, DISCONNECT = 0x80, 0xC0, 0xE0
QUIET = 0.3  # how long "nothing comes" is watched


def publish(mid: int, qos: int, payload: bytes = b"x", topic: str = "t", dup: bool = False) -> bytes:
    body = struct.pack("!H", len(topic)) + topic.encode() + struct.pack("!H", mid) + payload
    return bytes([PUBLISH | (0x08 if dup else 0) | qos << 1]) + remaining_length(len(body)) + body


def pubrel(mid: int) -> bytes:
    return bytes([PUBREL | 0x02, 2]) + struct.pack("!H", mid)


class ScriptedBroker:
    """Accepts connections one after the other; answers CONNECT with a CONNACK (session present as
    told), and records every packet the client sends as ``(type, message id or None)``."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.session_present = False
        self.received: list[tuple[int, int | None]] = []
        self.conn: socket.socket | None = None
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self._read(conn)

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                conn.close()
                return
            buffer += data
            while len(buffer) >= 2:
                size, shift, i = 0, 0, 1
                while buffer[i] & 0x80:
                    size |= (buffer[i] & 0x7F) << shift
                    shift, i = shift + 7, i + 1
                size |= buffer[i] << shift
                if len(buffer) < i + 1 + size:
                    break
                kind, body, buffer = buffer[0] & 0xF0, buffer[i + 1:i + 1 + size], buffer[i + 1 + size:]
                if kind == 0x10:  # CONNECT
                    self.conn = conn
                    self.connected.set()
                    conn.sendall(bytes([CONNACK, 2, 1 if self.session_present else 0, 0]))
                    continue
                if kind == SUBSCRIBE:
                    mid = struct.unpack("!H", body[:2])[0]
                    conn.sendall(bytes([0x90, 3]) + struct.pack("!H", mid) + b"\x01")
                mid = struct.unpack("!H", body[:2])[0] if kind in (PUBACK, PUBREC, PUBCOMP, SUBSCRIBE) else None
                self.received.append((kind, mid))
                if kind == DISCONNECT:  # as brokers do: close once the client said goodbye
                    conn.close()
                    return

    def send(self, *packets: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(b"".join(packets))

    def drop(self) -> None:
        """Close the client's connection (as a broker restart would)."""
        assert self.conn is not None
        self.connected.clear()
        self.conn.shutdown(socket.SHUT_RDWR)  # also wakes the reading thread

    def answers(self, kind: int) -> list[int | None]:
        return [mid for k, mid in self.received if k == kind]

    def wait_answer(self, kind: int, mid: int, seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        while (kind, mid) not in self.received:
            assert time.monotonic() < deadline, f"no {kind:#x} for {mid}; got {self.received}"
            time.sleep(0.01)

    def close(self) -> None:
        self.server.close()
        if self.conn is not None:
            self.conn.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedBroker]:
    broker = ScriptedBroker()
    yield broker
    broker.close()


@pytest.fixture
def client(scripted: ScriptedBroker) -> Iterator[MqttConnection]:
    config = Runtime(default_connector="mqtt").manifest().validate_connection(
        {"port": scripted.port, "reconnect_delay": 0.05, "reconnect_max_delay": 0.1})
    conn = MqttConnection(config).open()
    yield conn
    conn.close()


def test_qos2_pubrec_waits_for_the_process(scripted: ScriptedBroker, client: MqttConnection) -> None:
    scripted.send(publish(7, qos=2))
    message = client.inbox.get(timeout=5)
    time.sleep(QUIET)
    assert scripted.answers(PUBREC) == []  # paho itself would have sent it on arrival
    client.client.ack(message)
    scripted.wait_answer(PUBREC, 7)
    scripted.send(pubrel(7))
    scripted.wait_answer(PUBCOMP, 7)


def test_a_pubrel_for_an_unknown_id_is_completed(scripted: ScriptedBroker, client: MqttConnection) -> None:
    # After a restart the broker releases what the previous process accepted (PUBREC'd).
    scripted.send(pubrel(9))
    scripted.wait_answer(PUBCOMP, 9)


def test_a_copy_sent_again_while_the_process_has_it_is_handed_over_once(scripted: ScriptedBroker,
                                                                      client: MqttConnection) -> None:
    scripted.send(publish(5, qos=1, payload=b"a"), publish(5, qos=1, payload=b"a", dup=True))
    message = client.inbox.get(timeout=5)
    time.sleep(QUIET)
    assert client.inbox.empty()
    client.client.ack(message)
    scripted.wait_answer(PUBACK, 5)
    # The id is free again: a new message with it is a new message.
    scripted.send(publish(5, qos=1, payload=b"b"))
    assert client.inbox.get(timeout=5).payload == b"b"


def test_an_accepted_qos2_message_sent_again_gets_its_pubrec_again(scripted: ScriptedBroker,
                                                                 client: MqttConnection) -> None:
    scripted.send(publish(3, qos=2))
    message = client.inbox.get(timeout=5)
    client.client.ack(message)
    scripted.wait_answer(PUBREC, 3)
    scripted.send(publish(3, qos=2, dup=True))  # our PUBREC was lost, say: the broker asks again
    deadline = time.monotonic() + 5
    while scripted.answers(PUBREC).count(3) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert client.inbox.empty()  # not handed to the process twice


def reconnect(scripted: ScriptedBroker, client: MqttConnection, session_present: bool = False) -> None:
    """The broker drops the connection; the client comes back (to a broker with or without its session)."""
    scripted.session_present = session_present
    scripted.drop()
    assert scripted.connected.wait(5)
    deadline = time.monotonic() + 5
    while not client.connected:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def wait_pubacks(scripted: ScriptedBroker, expected: list[int]) -> None:
    """The PUBACKs become ``expected`` and stay so (nothing more comes)."""
    deadline = time.monotonic() + 5
    while scripted.answers(PUBACK) != expected:
        assert time.monotonic() < deadline, scripted.answers(PUBACK)
        time.sleep(0.01)
    time.sleep(QUIET)
    assert scripted.answers(PUBACK) == expected


@pytest.mark.parametrize("dup", [False, True], ids=["first-delivery", "dup"])
def test_another_message_under_an_id_the_process_still_has_is_handed_over(scripted: ScriptedBroker,
                                                                          client: MqttConnection, dup: bool) -> None:
    """A broker may give an id out again (a NATS cluster after a failover did): the second message is
    not a copy of the first, whatever its DUP flag; dropping it and then acknowledging the first lost it."""
    scripted.send(publish(5, qos=1, payload=b"517"))
    first = client.inbox.get(timeout=5)
    scripted.send(publish(5, qos=1, payload=b"520", dup=dup))
    second = client.inbox.get(timeout=5)
    assert second.payload == b"520"
    client.client.ack(first)
    time.sleep(QUIET)
    assert scripted.answers(PUBACK) == []  # id 5 now names '520', which the process has not finished
    client.client.ack(second)
    wait_pubacks(scripted, [5])


def test_a_copy_differs_in_topic_or_qos_is_another_message(scripted: ScriptedBroker, client: MqttConnection) -> None:
    scripted.send(publish(6, qos=1, payload=b"p", topic="a"))
    assert client.inbox.get(timeout=5).topic == "a"
    scripted.send(publish(6, qos=1, payload=b"p", topic="b", dup=True))
    assert client.inbox.get(timeout=5).topic == "b"
    scripted.send(publish(6, qos=2, payload=b"p", topic="b", dup=True))
    assert client.inbox.get(timeout=5).qos == 2


def test_after_a_failover_an_id_given_out_again_is_acknowledged_for_its_new_message(
        scripted: ScriptedBroker, client: MqttConnection) -> None:
    """The broker kept the session but not the ids: it sends the unacknowledged '517' under a new id
    and gives the old id to '520'. Acknowledging '517' by its old id would acknowledge '520' unwritten."""
    scripted.send(publish(4, qos=1, payload=b"517"))
    old = client.inbox.get(timeout=5)
    reconnect(scripted, client, session_present=True)
    scripted.send(publish(4, qos=1, payload=b"520", dup=True), publish(9, qos=1, payload=b"517", dup=True))
    new, again = client.inbox.get(timeout=5), client.inbox.get(timeout=5)
    assert (new.payload, again.payload) == (b"520", b"517")
    client.client.ack(old)
    client.client.ack(again)
    wait_pubacks(scripted, [9])
    client.client.ack(new)
    wait_pubacks(scripted, [9, 4])


def test_after_a_reconnect_an_ack_waits_until_the_broker_sends_the_message_again(
        scripted: ScriptedBroker, client: MqttConnection) -> None:
    """On a new connection an id names a message only once the broker sent it there: until then a
    PUBACK could meet another message the broker just gave that id."""
    scripted.send(publish(4, qos=1, payload=b"old"))
    old = client.inbox.get(timeout=5)
    reconnect(scripted, client, session_present=True)
    client.client.ack(old)
    time.sleep(QUIET)
    assert scripted.answers(PUBACK) == []
    scripted.send(publish(4, qos=1, payload=b"old", dup=True))  # MQTT: sent again with its id
    wait_pubacks(scripted, [4])
    assert client.inbox.empty()  # written once already: not handed over again


def test_an_ack_from_an_earlier_session_is_not_sent(scripted: ScriptedBroker, client: MqttConnection) -> None:
    scripted.send(publish(4, qos=1, payload=b"old"))
    old = client.inbox.get(timeout=5)
    reconnect(scripted, client)  # the broker restarts without the session (session present: 0)
    scripted.send(publish(4, qos=1, payload=b"new"))  # the id is given to a new message
    new = client.inbox.get(timeout=5)
    client.client.ack(old)
    time.sleep(QUIET)
    assert scripted.answers(PUBACK) == []  # acknowledging 'old' would have acknowledged 'new'
    client.client.ack(new)
    scripted.wait_answer(PUBACK, 4)


def test_a_suback_quicker_than_the_subscribing_thread_finds_its_subscription(
        scripted: ScriptedBroker, client: MqttConnection, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """paho handles the SUBACK in its own thread: when it came before the subscribing thread had
    recorded the SUBSCRIBE's id (NATS under load, 2 runs in 13), the granted QoS was lost and the
    'granted QoS 1 where 2 was asked' warning never shown."""
    real = PahoClient.subscribe

    def preempted(self: PahoClient, *args: object, **kwargs: object) -> object:
        sent = real(self, *args, **kwargs)
        time.sleep(QUIET)  # the subscribing thread loses the processor; the SUBACK comes meanwhile
        return sent

    monkeypatch.setattr(PahoClient, "subscribe", preempted)
    granted: list[list[tuple[str, int | None]]] = []
    client.on_subscribed = granted.append
    client.subscribe([("t", 2)])
    deadline = time.monotonic() + 5
    while not granted:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert granted == [[("t", 1)]]  # the scripted broker grants QoS 1
    assert "the broker granted QoS 1 for 't' where 2 was asked" in caplog.text
    assert len(scripted.answers(SUBSCRIBE)) == 1


def test_a_close_lets_the_broker_read_everything_first(scripted: ScriptedBroker, client: MqttConnection) -> None:
    """Unread data at close() makes the kernel send a reset, on which a broker drops what it had not
    read; the connector reads until the broker closes, so its last packets and DISCONNECT arrive."""
    scripted.send(publish(1, qos=1))
    message = client.inbox.get(timeout=5)
    scripted.send(*(publish(100 + i, qos=1, payload=b"z" * 1000) for i in range(200)))  # left unread
    client.client.ack(message)
    client.close()
    deadline = time.monotonic() + 5
    while (DISCONNECT, None) not in scripted.received:
        assert time.monotonic() < deadline, scripted.received
        time.sleep(0.01)
    assert (PUBACK, 1) in scripted.received
