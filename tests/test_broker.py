"""The embedded broker (connector/mqtt/broker/__init__.py): each amqtt 0.12.1 bug it fixes is shown here
with plain MQTT clients (paho, no connector in between, so nothing filters what the broker sends),
and a canary per bug runs the same steps on amqtt's own ``Broker``: when a canary fails, amqtt fixed
the bug and our workaround can go.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from amqtt.broker import Broker
from paho.mqtt.enums import CallbackAPIVersion

from connector.mqtt.broker import BrokerThread, broker_config, free_port
from raw_mqtt import RawClient, connect, packet, publish, subscribe

#: How long a test waits to show that nothing more arrives (bounded; never used to synchronise).
QUIET = 0.5
TIMEOUT = 5.0


class Client:
    """A bare paho client that records every PUBLISH it receives, from the moment it connects."""

    def __init__(self, port: int, client_id: str | None = None, clean_session: bool = True) -> None:
        self.messages: list[tuple[str, bytes, int, bool]] = []  # (topic, payload, qos, retain)
        self._cond = threading.Condition()
        self._connack = threading.Event()
        self._subacks: dict[int, threading.Event] = {}
        self.granted: list[int] = []
        self.session_present: bool | None = None
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"raw-{uuid.uuid4().hex[:10]}",
                                  clean_session=clean_session, protocol=paho.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.port = port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.session_present = flags.session_present
        self._connack.set()

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, message.payload, message.qos, bool(message.retain)))
            self._cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        self.granted = [r.value for r in reasons]
        self._subacks.setdefault(mid, threading.Event()).set()

    def connect(self) -> Client:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self._connack.wait(TIMEOUT), "no CONNACK"
        return self

    def subscribe(self, *filters: str, qos: int = 1) -> None:
        rc, mid = self.client.subscribe([(f, qos) for f in filters])
        assert rc == paho.MQTT_ERR_SUCCESS
        event = self._subacks.setdefault(mid, threading.Event())
        assert event.wait(TIMEOUT), f"no SUBACK for {filters}"

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"the broker did not confirm {topic!r}"

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= count, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PlainBrokerThread:
    """amqtt's own ``Broker`` (none of our fixes) on a free port, in a thread: for the canaries."""

    def __init__(self, clients: Clients, config: Callable[[str, int], dict[str, Any]] = broker_config) -> None:
        self.clients = clients
        self.port = free_port()
        self._config = config("127.0.0.1", self.port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> PlainBrokerThread:
        self._thread.start()

        async def start() -> Broker:  # amqtt binds its futures to the loop it is created on
            broker = Broker(self._config)
            await broker.start()
            return broker

        self._broker = asyncio.run_coroutine_threadsafe(start(), self._loop).result(TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.clients.close_all()  # amqtt's shutdown waits for connected clients
        asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT)


class Clients:
    """Makes connected clients and disconnects them all at the end."""

    def __init__(self) -> None:
        self.made: list[Client] = []

    def __call__(self, port: int, client_id: str | None = None, clean_session: bool = True) -> Client:
        client = Client(port, client_id, clean_session).connect()
        self.made.append(client)
        return client

    def close_all(self) -> None:
        while self.made:
            self.made.pop().close()


@pytest.fixture
def clients() -> Iterator[Clients]:
    made = Clients()
    yield made
    made.close_all()


def _amqtt_default_config(host: str, port: int) -> dict[str, Any]:
    """amqtt's usual set-up: anonymous access through its own authentication plugin."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


# -- retained messages go only to the subscription that matches, once -------------------------

def _new_subscriber_after_other_subscriptions(port: int, unique: str, clients: Clients) -> Client:
    """Retained values on two topics; one client already subscribed elsewhere; then a new
    client subscribes to one sensor filter and collects what it gets."""
    publisher = clients(port)
    publisher.publish(f"{unique}/other/x", b"not yours", qos=1, retain=True)
    publisher.publish(f"{unique}/sensors/a/temperature", b"21", qos=1, retain=True)
    earlier = clients(port)
    earlier.subscribe(f"{unique}/other/#", f"{unique}/sensors/#")
    newcomer = clients(port)
    newcomer.subscribe(f"{unique}/sensors/+/temperature")
    assert newcomer.wait_for(1)
    time.sleep(QUIET)  # bounded: shows that nothing more arrives
    return newcomer


def test_new_subscription_gets_only_its_own_retained_message_once(broker: BrokerThread, unique: str,
                                                                  clients: Clients) -> None:
    newcomer = _new_subscriber_after_other_subscriptions(broker.port, unique, clients)
    assert newcomer.messages == [(f"{unique}/sensors/a/temperature", b"21", 1, True)]


def test_canary_plain_amqtt_misdelivers_retained_messages(unique: str, clients: Clients) -> None:
    with PlainBrokerThread(clients) as plain:
        newcomer = _new_subscriber_after_other_subscriptions(plain.port, unique, clients)
    topics = [topic for topic, *_ in newcomer.messages]
    # If this fails, amqtt no longer replays retained messages on connect: drop our workaround.
    assert f"{unique}/other/x" in topics, newcomer.messages
    assert topics.count(f"{unique}/sensors/a/temperature") == 2, newcomer.messages


# -- delivered QoS is the lower of published and subscribed -----------------------------------

def _qos0_publish_to_qos2_subscriber(port: int, unique: str, clients: Clients) -> Client:
    subscriber = clients(port)
    subscriber.subscribe(f"{unique}/q", qos=2)
    assert subscriber.granted == [2]
    clients(port).publish(f"{unique}/q", b"fire and forget", qos=0)
    assert subscriber.wait_for(1)
    return subscriber


def test_delivery_qos_is_the_lower_of_published_and_subscribed(broker: BrokerThread, unique: str,
                                                               clients: Clients) -> None:
    subscriber = _qos0_publish_to_qos2_subscriber(broker.port, unique, clients)
    assert subscriber.messages == [(f"{unique}/q", b"fire and forget", 0, False)]


def test_canary_plain_amqtt_upgrades_qos(unique: str, clients: Clients) -> None:
    with PlainBrokerThread(clients) as plain:
        subscriber = _qos0_publish_to_qos2_subscriber(plain.port, unique, clients)
    # If this fails, amqtt delivers at the lower QoS itself: drop our workaround.
    assert subscriber.messages[0][2] == 2, subscriber.messages


# -- persistent sessions get what was published while they were away -------------------------

def _away_and_back(port: int, unique: str, clients: Clients, expect: int = 2) -> Client:
    client_id = f"{unique}-persistent"
    first = clients(port, client_id, clean_session=False)
    first.subscribe(f"{unique}/p/#", qos=1)
    first.close()
    publisher = clients(port)
    publisher.publish(f"{unique}/p/1", b"away 1", qos=1)
    publisher.publish(f"{unique}/p/2", b"away 2", qos=1)
    back = clients(port, client_id, clean_session=False)
    back.wait_for(expect)
    time.sleep(QUIET)  # bounded: shows that nothing more arrives
    return back


def test_persistent_session_receives_what_was_published_while_away(broker: BrokerThread, unique: str,
                                                                   clients: Clients) -> None:
    back = _away_and_back(broker.port, unique, clients)
    assert back.session_present is True
    assert sorted((topic, payload, qos) for topic, payload, qos, _ in back.messages) == [
        (f"{unique}/p/1", b"away 1", 1), (f"{unique}/p/2", b"away 2", 1)]
    clients(broker.port, f"{unique}-persistent", clean_session=True)  # end the session at the broker


def test_messages_queued_for_a_persistent_session_are_not_flagged_retained(broker: BrokerThread, unique: str,
                                                                           clients: Clients) -> None:
    # MQTT 3.1.1 [MQTT-3.3.1-9]: a message that matches an established subscription is sent with
    # RETAIN 0; a Listen would otherwise report "retained": true for ordinary messages.
    back = _away_and_back(broker.port, unique, clients)
    assert len(back.messages) == 2
    assert [retain for *_, retain in back.messages] == [False, False]
    clients(broker.port, f"{unique}-persistent", clean_session=True)


def test_canary_plain_amqtt_drops_anonymous_persistent_sessions(unique: str, clients: Clients) -> None:
    with PlainBrokerThread(clients, _amqtt_default_config) as plain:
        back = _away_and_back(plain.port, unique, clients, expect=0)
    # If this fails, amqtt queues for anonymous persistent sessions: OpenAuthPlugin can go.
    assert back.messages == []


def test_canary_plain_amqtt_flags_queued_messages_retained(unique: str, clients: Clients) -> None:
    with PlainBrokerThread(clients) as plain:
        back = _away_and_back(plain.port, unique, clients)
    # If this fails, amqtt sends queued messages with RETAIN 0 itself: drop our workaround.
    assert [retain for *_, retain in back.messages] == [True, True]


# -- an unacknowledged message is sent again when the persistent session comes back ----------

def _unacked_then_back(port: int, unique: str, clients: Clients, qos: int = 1) -> list[tuple[bytes, int, bool]]:
    """A persistent client receives a message and never acknowledges it (manual ack), disconnects;
    back with the same client ID it collects (payload, qos, dup) of what the broker sends."""
    client_id, topic = f"{unique}-unacked", f"{unique}/u"
    got: list[tuple[bytes, int, bool]] = []
    mids: list[int] = []
    arrived = threading.Event()

    def on_message(client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        got.append((message.payload, message.qos, bool(message.dup)))
        mids.append(message.mid)
        arrived.set()

    def connect() -> paho.Client:
        raw = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                          protocol=paho.MQTTv311, manual_ack=True)
        raw.on_message = on_message
        raw.connect("127.0.0.1", port, keepalive=30)
        raw.loop_start()
        return raw

    first = connect()
    try:
        rc, _ = first.subscribe(topic, qos=qos)
        assert rc == paho.MQTT_ERR_SUCCESS
        subscriber = clients(port)  # a SUBACK round trip on another client: our SUBSCRIBE was handled first
        subscriber.subscribe(topic, qos=qos)
        clients(port).publish(topic, b"must not be lost", qos=qos)
        assert arrived.wait(TIMEOUT), "the message did not arrive"
    finally:
        first.disconnect()  # never acknowledged
        first.loop_stop()
    del got[:], mids[:]
    arrived.clear()
    back = connect()
    try:
        arrived.wait(TIMEOUT)
        time.sleep(QUIET)  # bounded: shows that nothing more arrives
        for message_id in mids:  # acknowledge what came back
            back.ack(message_id, qos)
    finally:
        back.disconnect()
        back.loop_stop()
    clients(port, client_id, clean_session=True)  # end the session at the broker
    return got


def test_unacknowledged_message_is_sent_again_with_dup_after_reconnect(broker: BrokerThread, unique: str,
                                                                       clients: Clients) -> None:
    # QoS 1 (a QoS 2 message is owned by the client once it sent PUBREC, which paho does at once:
    # the broker then resends only the PUBREL, and paho answers an unknown PUBREL on its own).
    assert _unacked_then_back(broker.port, unique, clients) == [(b"must not be lost", 1, True)]


def test_canary_plain_amqtt_drops_unacknowledged_messages_on_disconnect(unique: str, clients: Clients) -> None:
    with PlainBrokerThread(clients) as plain:
        got = _unacked_then_back(plain.port, unique, clients)
    # If this fails, amqtt keeps in-flight messages itself (issue 401): KeepInflightHandler can go.
    assert got == []


def _resending(port: int, unique: str) -> tuple[RawClient, RawClient, bytes]:
    """A persistent client leaves without acknowledging a QoS 1 message and comes back: returns
    (its connection, which just got the message again with DUP, the publisher, its CONNECT) while
    amqtt waits for the PUBACK. amqtt listened for the end of a connection only after that wait:
    a DISCONNECT or a takeover in that time went unnoticed, the session stayed connected, and the
    next CONNECT of the client ID waited 5 s to take over."""
    client_id, topic = f"{unique}-resent".encode(), f"{unique}/r".encode()
    persistent = connect(client_id, flags=0x00)
    first = RawClient(port, client_id, first=persistent)
    first.sock.sendall(subscribe(topic, options=1))
    assert first.read_packet(TIMEOUT)[0] == 0x90  # SUBACK
    publisher = RawClient(port, f"{unique}-pub".encode())
    publisher.sock.sendall(publish(topic, b"unacknowledged", first=0x32, packet_id=1))
    assert publisher.read_packet(TIMEOUT)[0] == 0x40  # PUBACK
    assert first.read_packet(TIMEOUT)[0] & 0xF0 == 0x30  # the PUBLISH, never acknowledged
    first.close()
    back = RawClient(port, client_id, first=persistent)
    assert back.read_packet(TIMEOUT)[0] == 0x3A  # sent again, DUP
    return back, publisher, persistent


def _connack_seconds(port: int, connect_packet: bytes) -> tuple[RawClient, float]:
    start = time.monotonic()
    client = RawClient(port, b"", first=connect_packet)  # asserts its CONNACK
    return client, time.monotonic() - start


def test_a_client_that_leaves_while_its_messages_are_resent_can_come_back_at_once(broker: BrokerThread,
                                                                                 unique: str) -> None:
    back, publisher, persistent = _resending(broker.port, unique)
    back.sock.sendall(packet(0xE0, b""))  # DISCONNECT instead of the PUBACK
    back.close()
    again, waited = _connack_seconds(broker.port, persistent)
    again.close()
    publisher.close()
    assert waited < 2, f"CONNACK after {waited:.1f} s"


def test_a_takeover_while_messages_are_resent_is_at_once_and_keeps_the_session(broker: BrokerThread,
                                                                              unique: str) -> None:
    back, publisher, persistent = _resending(broker.port, unique)
    again, waited = _connack_seconds(broker.port, persistent)  # the same client ID, while back is open
    try:
        assert waited < 2, f"CONNACK after {waited:.1f} s"
        assert back.closed_within(TIMEOUT) is not None, "the older connection was left open"
        first, body = again.read_packet(TIMEOUT)
        assert (first, body.endswith(b"unacknowledged")) == (0x3A, True)  # still unacknowledged: sent again
    finally:
        again.close()
        back.close()
        publisher.close()
