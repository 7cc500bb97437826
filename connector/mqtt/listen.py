"""The Listen action: subscribe, hand each message to the process, acknowledge what it accepted."""

from __future__ import annotations

import datetime
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from connector.mqtt.connection import MqttConnection
from connector.mqtt.paho_client import Received
from connector.mqtt.phrases import describe_granted
from connector.mqtt.properties import document_properties, message_uid
from connector.mqtt.selection import Selection
from connector.mqtt.topics import FilterSet, operation_problems
from connector.sdk.documents import Document
from connector.sdk.errors import ConfigError, ConnectError
from connector.sdk.listener import Listener
from connector.sdk.retry import Endpoint, Retries

log = logging.getLogger("connector.mqtt.listen")

#: How often the loop looks at ``listener.stopping`` while no message arrives.
POLL_SECONDS = 0.2
#: At most this many messages that already wait go to the process as one batch (one flush).
BATCH_MAX = 500
#: Dead letters are confirmed by the broker before the original is acknowledged.
DEAD_LETTER_QOS = 1


def topic_filters(operation: Mapping[str, Any]) -> list[str]:
    """The operation's filters (``topic`` is one filter or a list), each checked."""
    problems = operation_problems(operation)
    if problems:
        raise ConfigError("; ".join(problems), problems)
    topics = operation["topic"]
    return [topics] if isinstance(topics, str) else list(topics)


def to_document(message: Received, topic: str | None = None, received_at: str | None = None) -> Document:
    """A received message as a document with the properties the manifest declares for Listen
    (with MQTT 5 also its message properties, those it has). ``topic``: the message's topic,
    when already decoded; ``received_at`` (ISO 8601, UTC): when the Listen took it from the
    connection."""
    properties = {
        "topic": message.topic if topic is None else topic,
        "qos": message.qos,
        "retained": bool(message.retain),
        "duplicate": bool(message.dup),
        "message_id": message.mid,
    }
    if received_at is not None:
        properties["received_at"] = received_at
    if message.properties is not None:
        properties.update(document_properties(message.properties))
    return Document(payload=message.payload, properties=properties)


def listen(conn: MqttConnection, operation: Mapping[str, Any], listener: Listener) -> int:
    """Run until ``listener.stopping`` is set; return how many documents the process accepted.

    Messages that arrived together (up to :data:`BATCH_MAX`) go to the process as one batch
    (``listener.submit_batch``): it writes them and flushes once, and only the documents it
    reports as flushed are acknowledged, after that. A document the process refuses is handed
    over again (the SDK's :class:`~connector.sdk.retry.Retries`); a message is never acknowledged
    unless the process accepted it or the dead-letter topic confirmed it.
    """
    filters = topic_filters(operation)
    qos: int = operation["qos"]
    own_qos = operation.get("filter_qos") or {}
    conn.role = "Listen"
    selection = Selection(operation)
    conn.on_subscribed = lambda granted: (selection.subscribed(), listener.listening(describe_granted(granted)))
    conn.on_up, conn.on_down = listener.connected, listener.disconnected  # for a runtime's health checks
    if not conn.up.is_set():  # lost between the runtime's open and now
        listener.disconnected("the connection was lost")
    conn.subscribe([(f, own_qos.get(f, qos)) for f in filters], operation)
    window = operation.get("dedupe_window", 0)
    repeats = _Repeats(window) if conn.mqtt5 and window else None
    inbox, stopping = conn.inbox, listener.stopping
    ack = _acknowledger(conn)
    retries = Retries(operation, listener, _endpoint(conn, ack))
    wanted = FilterSet(filters).match
    accepted = 0
    while not stopping.is_set():
        if not inbox.wait(POLL_SECONDS):
            if conn.failure is not None:  # e.g. taken over: the connection ended for good
                raise ConnectError(conn.failure) from None
            if selection.quiet():
                listener.done("every retained message was read")
            continue
        # No linger for more: paho's thread hands over every read whole, so a batch is what came
        # together; meanwhile paho's thread reads on.
        messages, documents, ended = [], [], False
        received_at = datetime.datetime.now(datetime.timezone.utc).isoformat()  # one clock read per batch
        for message in inbox.take(BATCH_MAX):
            try:
                topic = message.topic
            except UnicodeDecodeError:
                log.warning("dropped a message whose topic is not valid UTF-8")
                ack(message)
                continue
            if not wanted(topic):
                # A broker bug must not hand the process a document it did not subscribe to.
                log.warning("dropped a message on %r, which matches none of the Listen's %s", topic, _filters_named(filters))
                ack(message)
                continue
            skipped = selection.skipped(message.retain, topic)
            if skipped is not None:  # left out as the operation asks: acknowledged, counted
                ack(message)
                listener.skipped(to_document(message, topic, received_at), skipped)
                continue
            if selection.ends_at(message.retain):  # not acknowledged: a persistent session keeps it
                ended = True
                break
            if repeats is not None and repeats.seen(message):
                log.debug("dropped a repeat of message %s on %r", message_uid(message.properties), topic)
                ack(message)  # the first copy was taken already
                listener.repeat_dropped(to_document(message, topic, received_at))
                continue
            messages.append(message)
            documents.append(to_document(message, topic, received_at))
        if stopping.is_set():
            break  # never submitted, never acknowledged: the broker keeps them for a persistent session
        if documents:
            accepted += retries.deliver(messages, documents)
        if ended:
            listener.done("every retained message was read")
    return accepted


class _Repeats:
    """The ``msg-id`` user properties of the last ``window`` messages (``dedupe_window``)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def seen(self, message: Received) -> bool:
        """True when the message is a repeat; else remember it."""
        uid = message_uid(message.properties)
        if uid is None:
            return False
        if uid in self._ids:
            return True
        self._ids.add(uid)
        self._order.append(uid)
        if len(self._order) > self.window:
            self._ids.discard(self._order.popleft())
        return False


def _acknowledger(conn: MqttConnection) -> Callable[[Received], None]:
    """``ack(message)``: PUBACK / PUBREC for a received message, when its id still names it."""
    client_ack = conn.client.ack

    def ack(message: Received) -> None:
        if message.qos:
            client_ack(message)

    return ack


def _endpoint(conn: MqttConnection, ack: Callable[[Received], None]) -> Endpoint[Received]:
    """What the SDK's retry policy needs of MQTT: acknowledging, and dead letters published with
    QoS 1 and confirmed by the broker, at most the largest payload it surely takes."""
    from connector.mqtt.plugin import connector_manifest
    from connector.mqtt.send import largest_payload, send  # the Send path: confirmation, refusals

    def publish(topic: str, letter: bytes, message: Received) -> str | None:
        operation = {"action": "send", "topic": topic, "qos": DEAD_LETTER_QOS, "retained": False}
        result = next(iter(send(conn, operation, [Document(letter)])))
        return None if result.ok else f"{result.status.value}: {result.error}"

    return Endpoint(acknowledge=ack, acknowledge_all=conn.client.ack_all, publish_dead_letter=publish,
                    dead_letter_room=lambda topic: largest_payload(conn, topic, DEAD_LETTER_QOS),
                    describe=lambda document: f"the message on {document.properties['topic']!r}",
                    byte_properties=connector_manifest().byte_properties)


def _filters_named(filters: list[str]) -> str:
    """The filters for a log line: all of a few, the first of many and how many."""
    if len(filters) <= 5:
        return f"filters {filters}"
    return f"{len(filters):,} filters ({', '.join(map(repr, filters[:3]))}, ...)"

