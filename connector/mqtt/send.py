"""The Send action: publish a stream of documents, one Result per document, in order.

Documents are read lazily and at most ``max_inflight`` of them wait for the broker at once, so
memory stays bounded and a slow broker slows the input down. A QoS 1/2 document is SUCCESS
only when PUBACK/PUBCOMP came; QoS 0 when it was written to the connection.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho

from connector.mqtt.connection import MqttConnection, reason_text
from connector.mqtt.topics import TopicError, check_topic_name
from connector.sdk.documents import Document, Result, Status
from connector.sdk.errors import ConfigError

log = logging.getLogger("connector.mqtt.send")

#: The largest payload MQTT can carry (the remaining-length limit less the smallest header).
MAX_PAYLOAD = 268_435_455


@dataclass(slots=True)
class _Pending:
    index: int
    info: paho.MQTTMessageInfo | None
    deadline: float
    result: Result | None = None


def _published(info: paho.MQTTMessageInfo, timeout: float) -> bool:
    # paho's own wait_for_publish() raises when the message was queued while disconnected,
    # even though paho re-sends it after reconnecting; wait on the flag itself.
    with info._condition:
        if not info._published and timeout > 0:
            info._condition.wait(timeout)
        return info._published


def send(conn: MqttConnection, operation: Mapping[str, Any], documents: Iterable[Document]) -> Iterator[Result]:
    """Check the operation, then return an iterator that publishes each document lazily and
    yields exactly one Result per document, in input order."""
    try:
        check_topic_name(operation["topic"])
    except TopicError as exc:
        raise ConfigError(str(exc)) from None
    return _results(conn, operation, documents)


def _results(conn: MqttConnection, operation: Mapping[str, Any], documents: Iterable[Document]) -> Iterator[Result]:
    default_topic: str = operation["topic"]
    qos: int = operation["qos"]
    retain: bool = operation["retained"]
    window_size: int = conn.config["max_inflight"]
    ack_timeout: float = conn.config["ack_timeout"]
    window: deque[_Pending] = deque()

    for index, document in enumerate(documents):
        window.append(_publish(conn, index, document, default_topic, qos, retain, ack_timeout))
        while window and (len(window) >= window_size or _done(window[0])):
            yield _settle(conn, window.popleft())
    while window:
        yield _settle(conn, window.popleft())


def _publish(conn: MqttConnection, index: int, document: Document, default_topic: str, qos: int,
             retain: bool, ack_timeout: float) -> _Pending:
    deadline = time.monotonic() + ack_timeout
    topic = document.properties.get("topic")
    if topic is None:
        topic = default_topic
    else:  # the document names its own topic: the same rules as the operation's
        try:
            check_topic_name(topic)
        except TopicError as exc:
            return _Pending(index, None, deadline, Result(index, Status.APPLICATION_ERROR, str(exc)))
    payload = document.payload
    if len(payload) > MAX_PAYLOAD:
        error = f"the payload is {len(payload):,} bytes; MQTT carries at most {MAX_PAYLOAD:,}"
        return _Pending(index, None, deadline, Result(index, Status.APPLICATION_ERROR, error))
    try:
        info = conn.client.publish(topic, payload, qos=qos, retain=retain)
    except ValueError as exc:  # paho's own checks (topic, size)
        return _Pending(index, None, deadline, Result(index, Status.APPLICATION_ERROR, str(exc)))
    if info.rc == paho.MQTT_ERR_NO_CONN and qos == 0:
        return _Pending(index, None, deadline, Result(index, Status.FAILURE, "not connected to the broker"))
    if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
        # NO_CONN with QoS 1/2: paho keeps the message and sends it after reconnecting.
        error = f"the message could not be queued: {reason_text(info.rc)}"
        return _Pending(index, None, deadline, Result(index, Status.FAILURE, error))
    return _Pending(index, info, deadline)


def _done(pending: _Pending) -> bool:
    return pending.result is not None or (pending.info is not None and pending.info._published)


def _settle(conn: MqttConnection, pending: _Pending) -> Result:
    if pending.result is not None:
        return pending.result
    assert pending.info is not None
    if _published(pending.info, pending.deadline - time.monotonic()):
        return Result(pending.index, Status.SUCCESS)
    state = "connected" if conn.connected else "not connected"
    error = f"the broker did not confirm the message within {conn.config['ack_timeout']:g} s ({state})"
    log.debug("document %d: %s", pending.index, error)
    return Result(pending.index, Status.FAILURE, error)
