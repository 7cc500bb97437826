"""The Listen action: subscribe, hand each message to the process, acknowledge what it accepted."""

from __future__ import annotations

import base64
import json
import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as paho

from connector.mqtt.connection import MqttConnection, doubling
from connector.mqtt.phrases import describe_granted
from connector.mqtt.properties import document_properties, message_uid
from connector.mqtt.topics import matches, operation_problems
from connector.sdk.documents import Document, document_to_json
from connector.sdk.errors import ConfigError, ConnectError
from connector.sdk.listener import Listener

log = logging.getLogger("connector.mqtt.listen")

#: How often the loop looks at ``listener.stopping`` while no message arrives.
POLL_SECONDS = 0.2
#: At most this many messages that already wait go to the process as one batch (one flush).
BATCH_MAX = 500
#: How long the Listen waits after a message for more to join its batch.
LINGER_SECONDS = 0.001
#: The longest wait before handing a refused document to the process again.
MAX_RETRY_DELAY = 60.0


def topic_filters(operation: Mapping[str, Any]) -> list[str]:
    """The operation's filters (``topic`` is one filter or a list), each checked."""
    problems = operation_problems(operation)
    if problems:
        raise ConfigError("; ".join(problems), problems)
    topics = operation["topic"]
    return [topics] if isinstance(topics, str) else list(topics)


def to_document(message: paho.MQTTMessage) -> Document:
    """A received message as a document with the properties the manifest declares for Listen
    (with MQTT 5 also its message properties, those it has)."""
    properties = {
        "topic": message.topic,
        "qos": message.qos,
        "retained": bool(message.retain),
        "duplicate": bool(message.dup),
        "message_id": message.mid,
    }
    if message.properties is not None:
        properties.update(document_properties(message.properties))
    return Document(payload=message.payload, properties=properties)


def listen(conn: MqttConnection, operation: Mapping[str, Any], listener: Listener) -> int:
    """Run until ``listener.stopping`` is set; return how many documents the process accepted.

    Messages that arrived together (up to :data:`BATCH_MAX`) go to the process as one batch
    (``listener.submit_batch``): it writes them and flushes once, and only the documents it
    reports as flushed are acknowledged, after that. A document the process refuses is handed
    over again (:class:`_Retries`); a message is never acknowledged unless the process accepted
    it or the dead-letter topic confirmed it.
    """
    filters = topic_filters(operation)
    qos: int = operation["qos"]
    own_qos = operation.get("filter_qos") or {}
    conn.role = "Listen"
    conn.on_subscribed = lambda granted: listener.listening(describe_granted(granted))
    conn.subscribe([(f, own_qos.get(f, qos)) for f in filters], operation)
    window = operation.get("dedupe_window", 0)
    repeats = _Repeats(window) if conn.mqtt5 and window else None
    inbox, stopping = conn.inbox, listener.stopping
    ack = _acknowledger(conn)
    retries = _Retries(conn, operation, listener, ack)
    exact = set(filters) if not any(_is_wildcard(f) for f in filters) else None
    accepted = 0
    while not stopping.is_set():
        try:
            batch = [inbox.get(timeout=POLL_SECONDS)]
        except queue.Empty:
            if conn.failure is not None:  # e.g. taken over: the connection ended for good
                raise ConnectError(conn.failure) from None
            continue
        try:  # what else already waits: one lock each, no waiting
            batch.append(inbox.get_nowait())
            # More are coming (a backlog, a burst): linger a moment so that paho's thread reads
            # on without fighting this one for the GIL at every message; they then come in large
            # batches. A lone message (a quiet stream) goes on at once, without this latency.
            time.sleep(LINGER_SECONDS)
            while len(batch) < BATCH_MAX:
                batch.append(inbox.get_nowait())
        except queue.Empty:
            pass
        messages, documents = [], []
        for message in batch:
            try:
                topic = message.topic
            except UnicodeDecodeError:
                log.warning("dropped a message whose topic is not valid UTF-8")
                ack(message)
                continue
            if not (topic in exact if exact is not None else any(matches(f, topic) for f in filters)):
                # A broker bug must not hand the process a document it did not subscribe to.
                log.warning("dropped a message on %r, which matches none of the filters %s", topic, filters)
                ack(message)
                continue
            if repeats is not None and repeats.seen(message):
                log.debug("dropped a repeat of message %s on %r", message_uid(message.properties), topic)
                ack(message)  # the first copy was taken already
                listener.repeat_dropped(to_document(message))
                continue
            messages.append(message)
            documents.append(to_document(message))
        if stopping.is_set():
            break  # never submitted, never acknowledged: the broker keeps them for a persistent session
        if documents:
            accepted += retries.deliver(messages, documents)
    return accepted


class _Repeats:
    """The ``msg-id`` user properties of the last ``window`` messages (``dedupe_window``)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def seen(self, message: paho.MQTTMessage) -> bool:
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


def _acknowledger(conn: MqttConnection) -> Callable[[paho.MQTTMessage], None]:
    """``ack(message)``: PUBACK / PUBREC for a received message, when its id still names it."""
    client_ack = conn.client.ack

    def ack(message: paho.MQTTMessage) -> None:
        if message.qos:
            client_ack(message)

    return ack


class _Retries:
    """Hands a batch to the process; a refused document is handed over again after a delay,
    up to ``max_attempts`` times, then dead-lettered or given up on (the Listen then ends)."""

    def __init__(self, conn: MqttConnection, operation: Mapping[str, Any], listener: Listener,
                 ack: Callable[[paho.MQTTMessage], None]) -> None:
        self.conn, self.listener, self.ack = conn, listener, ack
        self.max_attempts: int = operation["max_attempts"]
        self.delay: float = operation["retry_delay"]
        self.dead_letter_topic: str | None = operation["dead_letter_topic"]

    def deliver(self, messages: list[paho.MQTTMessage], documents: list[Document]) -> int:
        """Hand the batch over; return how many documents the process accepted."""
        listener, ack, stopping = self.listener, self.ack, self.listener.stopping
        accepted = position = 0
        attempt = 1  # of documents[position]
        while position < len(documents) and not stopping.is_set():
            taken = listener.submit_batch(documents[position:] if position else documents)
            for message in messages[position:position + taken]:  # written and flushed: acknowledge
                ack(message)
            accepted += taken
            position += taken
            if position == len(documents) or stopping.is_set():
                break
            if taken:
                attempt = 1
            document = documents[position]
            error = listener.error or "the process refused the document"
            if attempt < self.max_attempts:
                wait = doubling(self.delay, MAX_RETRY_DELAY, attempt - 1)
                log.warning("the process failed for the message on %r (attempt %d of %d: %s); trying again in %g s",
                            document.properties["topic"], attempt, self.max_attempts, error, wait)
                if stopping.wait(wait):
                    break  # not acknowledged: the broker keeps it for a persistent session
                attempt += 1
                continue
            if self.dead_letter_topic is None:
                log.error("the process failed %d time%s for the message on %r (%s); it was not acknowledged: stopping",
                          attempt, "s" if attempt > 1 else "", document.properties["topic"], error)
                listener.gave_up(document, error, attempt)
                listener.stop()
                break
            problem = self._dead_letter(document, error, attempt)
            if problem is not None:
                log.error("the message on %r could not be moved to the dead-letter topic %r (%s); it was not "
                          "acknowledged: stopping", document.properties["topic"], self.dead_letter_topic, problem)
                listener.gave_up(document, f"{error}; dead-letter topic: {problem}", attempt)
                listener.stop()
                break
            ack(messages[position])
            listener.dead_lettered(document, error, attempt, self.dead_letter_topic)
            position += 1
            attempt = 1
        return accepted

    def _dead_letter(self, document: Document, error: str, attempts: int) -> str | None:
        """Publish the document with its error to the dead-letter topic and wait for the broker's
        confirmation; None when confirmed, else why not."""
        from connector.mqtt.send import largest_payload, send  # the Send path: confirmation, refusals

        assert self.dead_letter_topic is not None
        room = largest_payload(self.conn, self.dead_letter_topic, DEAD_LETTER_QOS)
        letter = Document(dead_letter(document, error, attempts, room))
        operation = {"action": "send", "topic": self.dead_letter_topic, "qos": DEAD_LETTER_QOS, "retained": False}
        result = next(iter(send(self.conn, operation, [letter])))
        return None if result.ok else f"{result.status.value}: {result.error}"


def _is_wildcard(topic_filter: str) -> bool:
    return topic_filter.startswith("$") or "+" in topic_filter or "#" in topic_filter


#: Dead letters are confirmed by the broker before the original is acknowledged.
DEAD_LETTER_QOS = 1
#: The most of the process's error a dead letter carries, in characters.
DEAD_LETTER_ERROR_MAX = 4_096


def dead_letter(document: Document, error: str, attempts: int, room: int) -> bytes:
    """The dead letter of ``document``: its JSON form plus the error and the attempts, at most
    ``room`` bytes. When the whole payload does not fit, the dead letter carries as much of its
    start as fits, ``"truncated": true`` and ``"size"``, the payload's size in bytes: so a dead
    letter never exceeds what the broker takes, however often it is wrapped again."""
    if len(error) > DEAD_LETTER_ERROR_MAX:
        error = error[:DEAD_LETTER_ERROR_MAX] + "..."
    envelope = document_to_json(document)
    envelope.update(error=error, attempts=attempts)
    whole = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    if len(whole) <= room:
        return whole
    payload = document.payload
    envelope.update(payload="", truncated=True, size=len(payload))
    left = room - len(json.dumps(envelope, ensure_ascii=False).encode("utf-8"))
    text = envelope["encoding"] == "utf-8"
    keep = max(0, left if text else left // 4 * 3)  # base64: 4 characters for 3 bytes
    while keep > 0:  # escapes (\", \n, \u0001) make text longer in JSON: shrink until it fits
        part = payload[:keep]
        envelope["payload"] = part.decode("utf-8", "ignore") if text else base64.b64encode(part).decode("ascii")
        size = len(json.dumps(envelope["payload"], ensure_ascii=False).encode("utf-8")) - 2
        if size <= left:
            break
        keep = min(keep - 1, keep * left // size)
    else:
        envelope["payload"] = ""
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")
