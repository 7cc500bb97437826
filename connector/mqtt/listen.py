"""The Listen action: subscribe, hand each message to the process, acknowledge what it accepted."""

from __future__ import annotations

import logging
import queue
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as paho

from connector.mqtt.connection import MqttConnection
from connector.mqtt.topics import TopicError, check_topic_filter, matches
from connector.sdk.documents import Document
from connector.sdk.errors import ConfigError
from connector.sdk.listener import Listener

log = logging.getLogger("connector.mqtt.listen")

#: How often the loop looks at ``listener.stopping`` while no message arrives.
POLL_SECONDS = 0.2


def topic_filters(operation: Mapping[str, Any]) -> list[str]:
    """The operation's filters (``topic`` is one filter or a list), each checked."""
    topics = operation["topic"]
    filters = [topics] if isinstance(topics, str) else list(topics)
    for topic_filter in filters:
        try:
            check_topic_filter(topic_filter)
        except TopicError as exc:
            raise ConfigError(str(exc)) from None
    return filters


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
    """Run until ``listener.stopping`` is set; return how many documents the process accepted."""
    filters = topic_filters(operation)
    qos: int = operation["qos"]
    conn.on_subscribed = listener.subscribed
    conn.subscribe([(f, qos) for f in filters])
    accepted = 0
    while not listener.stopping.is_set():
        try:
            message = conn.inbox.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
        try:
            topic = message.topic
        except UnicodeDecodeError:
            log.warning("dropped a message whose topic is not valid UTF-8")
            conn.client.ack(message.mid, message.qos)
            continue
        if not any(matches(f, topic) for f in filters):
            # A broker bug must not hand the process a document it did not subscribe to.
            log.warning("dropped a message on %r, which matches none of the filters %s", topic, filters)
            conn.client.ack(message.mid, message.qos)
            continue
        if listener.stopping.is_set():
            break  # never submitted, never acknowledged: the broker keeps it for a persistent session
        if listener.submit(to_document(message)):
            conn.client.ack(message.mid, message.qos)
            accepted += 1
        else:
            log.error("the process did not accept the message on %r (not acknowledged); stopping", topic)
            listener.stop()
    return accepted
