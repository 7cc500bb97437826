"""The Listen action: subscribe, hand each message to the process, acknowledge what it accepted."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as paho

from connector.mqtt.connection import MqttConnection
from connector.mqtt.topics import matches, operation_problems
from connector.sdk.documents import Document
from connector.sdk.errors import ConfigError
from connector.sdk.listener import Listener

log = logging.getLogger("connector.mqtt.listen")

#: How often the loop looks at ``listener.stopping`` while no message arrives.
POLL_SECONDS = 0.2
#: At most this many messages that already wait go to the process as one batch (one flush).
BATCH_MAX = 500
#: How long the Listen waits after a message for more to join its batch.
LINGER_SECONDS = 0.001


def topic_filters(operation: Mapping[str, Any]) -> list[str]:
    """The operation's filters (``topic`` is one filter or a list), each checked."""
    problems = operation_problems(operation)
    if problems:
        raise ConfigError("; ".join(problems), problems)
    topics = operation["topic"]
    return [topics] if isinstance(topics, str) else list(topics)


def to_document(message: paho.MQTTMessage) -> Document:
    """A received message as a document with the properties the manifest declares for Listen."""
    return Document(
        payload=message.payload,
        properties={
            "topic": message.topic,
            "qos": message.qos,
            "retained": bool(message.retain),
            "duplicate": bool(message.dup),
            "message_id": message.mid,
        },
    )


def listen(conn: MqttConnection, operation: Mapping[str, Any], listener: Listener) -> int:
    """Run until ``listener.stopping`` is set; return how many documents the process accepted.

    Messages that arrived together (up to :data:`BATCH_MAX`) go to the process as one batch
    (``listener.submit_batch``): it writes them and flushes once, and only the documents it
    reports as flushed are acknowledged, after that.
    """
    filters = topic_filters(operation)
    qos: int = operation["qos"]
    conn.on_subscribed = listener.subscribed
    conn.subscribe([(f, qos) for f in filters])
    inbox, ack, stopping = conn.inbox, conn.client.ack, listener.stopping
    exact = set(filters) if not any(_is_wildcard(f) for f in filters) else None
    accepted = 0
    while not stopping.is_set():
        try:
            batch = [inbox.get(timeout=POLL_SECONDS)]
        except queue.Empty:
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
                ack(message.mid, message.qos)
                continue
            if not (topic in exact if exact is not None else any(matches(f, topic) for f in filters)):
                # A broker bug must not hand the process a document it did not subscribe to.
                log.warning("dropped a message on %r, which matches none of the filters %s", topic, filters)
                ack(message.mid, message.qos)
                continue
            messages.append(message)
            documents.append(to_document(message))
        if stopping.is_set():
            break  # never submitted, never acknowledged: the broker keeps them for a persistent session
        if not documents:
            continue
        taken = listener.submit_batch(documents)
        for message in messages[:taken]:  # only what the process reported written and flushed
            ack(message.mid, message.qos)
        accepted += taken
        if taken < len(documents) and not stopping.is_set():
            log.error("the process did not accept the message on %r (not acknowledged); stopping",
                      documents[taken].properties["topic"])
            listener.stop()
    return accepted


def _is_wildcard(topic_filter: str) -> bool:
    return topic_filter.startswith("$") or "+" in topic_filter or "#" in topic_filter
