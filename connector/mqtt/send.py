"""The Send action: publish a stream of documents, one Result per document, in order.

Documents are read lazily and at most ``conn.window`` of them wait for the broker at once, so
memory stays bounded and a slow broker slows the input down. QoS 0 documents wait only to be
written: up to :data:`QOS0_WINDOW` of them (and :data:`QOS0_WINDOW_BYTES` of payload), so that the
client's writer takes many at once rather than a window's worth per write. A QoS 1/2 document is SUCCESS
only when PUBACK/PUBCOMP came; QoS 0 when it was written to the connection.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho

from connector.mqtt.connection import MqttConnection, reason_text
from connector.mqtt.paho_client import Delivery, wait_published
from connector.mqtt.properties import MQTT5_FIELDS, PropertyError, operation_defaults, publish_properties
from connector.mqtt.topics import TopicError, check_topic_name, operation_problems, reserved_topic_warning
from connector.sdk.documents import Document, Result, Status
from connector.sdk.errors import ConfigError, ConnectError

log = logging.getLogger("connector.mqtt.send")

#: Whether the warning about MQTT 5 properties over MQTT 3.1.1 was given (once per process).
_warned: list[bool] = []
#: The '$' topics warned about (each once per process).
_reserved_warned: set[str] = set()

#: MQTT's largest Remaining Length (variable header and payload of a packet), so also an upper
#: bound of a payload.
MAX_PAYLOAD = 268_435_455
#: How many QoS 0 documents, and how many bytes of their payloads, may wait to be written.
QOS0_WINDOW = 1024
QOS0_WINDOW_BYTES = 4 << 20
_RC_OK, _SUCCESS = paho.MQTT_ERR_SUCCESS, Status.SUCCESS


@dataclass(slots=True)
class _Pending:
    index: int
    info: Delivery | None
    deadline: float
    result: Result | None = None
    size: int = 0  # of the payload handed to the client (0 once it has its result)


def send(conn: MqttConnection, operation: Mapping[str, Any], documents: Iterable[Document]) -> Iterator[Result]:
    """Check the operation, then return an iterator that publishes each document lazily and
    yields exactly one Result per document, in input order."""
    problems = operation_problems(operation)
    if problems:
        raise ConfigError("; ".join(problems), problems)
    _warn_reserved(operation["topic"])
    return _results(conn, operation, documents)


def _warn_reserved(topic: str) -> None:
    """One warning per '$' topic sent to: the broker may confirm such a message and drop it."""
    warning = reserved_topic_warning(topic)
    if warning is not None and topic not in _reserved_warned:
        _reserved_warned.add(topic)
        log.warning(warning)


def _results(conn: MqttConnection, operation: Mapping[str, Any], documents: Iterable[Document]) -> Iterator[Result]:
    default_topic: str = operation["topic"]
    qos: int = operation["qos"]
    retain: bool = operation["retained"]
    window_size, window_bytes = (conn.window, MAX_PAYLOAD + 1) if qos else (max(conn.window, QOS0_WINDOW), QOS0_WINDOW_BYTES)
    held = 0  # bytes of the window's payloads
    ack_timeout: float = conn.config["ack_timeout"]
    window: deque[_Pending] = deque()
    append, popleft = window.append, window.popleft
    fits: dict[tuple[str, int | None], int] = {}
    v5 = operation_defaults(operation) if conn.mqtt5 else None
    run = uuid.uuid4().hex[:12] if v5 is not None and operation.get("stamp_id") else None
    publish_message, name = conn.client.publish_message, default_topic.encode("utf-8")
    up_is_set, monotonic = conn.up.is_set, time.monotonic

    for index, document in enumerate(documents):
        if conn.failure is not None:  # the connection ended for good: this is the last document read
            append(_Pending(index, None, 0.0, Result(index, Status.FAILURE, conn.failure)))
            break
        payload = document.payload
        if (v5 is None and not document.properties and type(payload) is bytes and conn.silent_since is None
                and len(payload) <= fits.get((default_topic, conn.max_packet_size), -1) and up_is_set()):
            # The common case (the checks of _publish passed for the topic and a payload this size)
            info = publish_message(name, payload, qos, retain)
            deadline = monotonic() + ack_timeout
            pending = (_Pending(index, info, deadline) if info.rc == _RC_OK else
                       _queued(conn, index, deadline, info, qos, partial(publish_message, name, payload, qos, retain)))
        else:
            pending = _publish(conn, index, document, default_topic, qos, retain, ack_timeout, fits, v5,
                               None if run is None else f"{run}-{index}")
        append(pending)
        pending.size = size = len(payload) if pending.result is None else 0
        held += size
        while window:
            pending = window[0]  # settled once full, or done (a result, or the client's flag: no lock)
            info = pending.info
            if info is None:
                pass
            elif info.published:
                if info.rc == _RC_OK and not conn.refused:  # the common case, as _settle would
                    popleft()
                    held -= pending.size
                    yield Result(pending.index, _SUCCESS)
                    continue
            elif len(window) < window_size and held <= window_bytes:
                break
            popleft()
            held -= pending.size
            yield _settle(conn, pending)
    while window:
        yield _settle(conn, window.popleft())
    if conn.failure is not None:  # after a result for every document read
        raise ConnectError(conn.failure)


def _publish(conn: MqttConnection, index: int, document: Document, default_topic: str, qos: int,
             retain: bool, ack_timeout: float, fits: dict[tuple[str, int | None], int],
             v5: dict[str, Any] | None, stamp: str | None = None) -> _Pending:
    deadline = time.monotonic() + ack_timeout
    properties = None
    if v5 is not None:  # MQTT 5: the operation's and the document's message properties
        try:
            properties = publish_properties(v5, document.properties, stamp)
        except PropertyError as exc:
            return _Pending(index, None, deadline, Result(index, Status.APPLICATION_ERROR, str(exc)))
    elif document.properties and not _warned and any(name in document.properties for name in MQTT5_FIELDS):
        _warned.append(True)
        log.warning("documents carry MQTT 5 properties (e.g. user_properties), which MQTT 3.1.1 cannot send: "
                    "they are left out; connect with protocol 5 to send them")
    topic = document.properties.get("topic")
    if topic is None:
        topic = default_topic
    else:  # the document names its own topic: the same rules as the operation's
        try:
            check_topic_name(topic)
        except TopicError as exc:
            return _Pending(index, None, deadline, Result(index, Status.APPLICATION_ERROR, str(exc)))
        _warn_reserved(topic)
    payload = document.payload
    if type(payload) is not bytes:  # a Document made by hand
        payload = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    # The size check grows with the payload only: once a size fits a topic (and the broker's
    # limit, which a reconnect may change), every smaller one does, without computing it again.
    size, fits_key = len(payload), (topic, conn.max_packet_size)
    packed = b"\x00"  # MQTT 5: no properties
    if properties is not None:  # their size varies per document: checked each time
        packed = properties.pack()
        too_big = oversize(conn, topic, size, qos, len(packed) - _varint_size(len(packed)))
        if too_big is not None:
            return _Pending(index, None, deadline, Result(index, Status.APPLICATION_ERROR, too_big))
    elif size > fits.get(fits_key, -1):
        too_big = oversize(conn, topic, size, qos)
        if too_big is not None:
            return _Pending(index, None, deadline, Result(index, Status.APPLICATION_ERROR, too_big))
        fits[fits_key] = size
    if conn.silent_since is not None and conn.gave_up(ack_timeout):  # an outage: past ack_timeout nothing waits
        return _Pending(index, None, deadline, Result(index, Status.FAILURE, _unreachable(conn, "not sent")))
    if qos == 0 and not conn.up.is_set():  # paho does not keep QoS 0 messages for a reconnect
        _wait_up(conn, deadline, ack_timeout)
    name = topic.encode("utf-8")
    info = conn.client.publish_message(name, payload, qos, retain, properties, packed)
    return _queued(conn, index, deadline, info, qos, lambda: conn.client.publish_message(name, payload, qos, retain,
                                                                                   properties, packed))


def _queued(conn: MqttConnection, index: int, deadline: float, info: Delivery, qos: int,
            again: Callable[[], Delivery]) -> _Pending:
    """The pending document once the client took it (or not: ``info.rc``); ``again`` publishes it
    once more."""
    ack_timeout = conn.config["ack_timeout"]
    if info.rc == paho.MQTT_ERR_NO_CONN and qos == 0 and not conn.up.is_set():
        # the connection was lost while this document was being published: it waits for the reconnect too
        _wait_up(conn, deadline, ack_timeout)
        info = again()
    if info.rc == paho.MQTT_ERR_NO_CONN and qos == 0:
        error = (_unreachable(conn, "not sent") if conn.gave_up(ack_timeout)
                 else "the connection was lost before the message was sent")
        return _Pending(index, None, deadline, Result(index, Status.FAILURE, error))
    if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
        # NO_CONN with QoS 1/2: paho keeps the message and sends it after reconnecting.
        error = f"the message could not be queued: {reason_text(info.rc)}"
        return _Pending(index, None, deadline, Result(index, Status.FAILURE, error))
    return _Pending(index, info, deadline)


def _wait_up(conn: MqttConnection, deadline: float, ack_timeout: float) -> None:
    """Wait for the connection until the document's deadline or the outage's end of patience."""
    gives_up = conn.gives_up_at(ack_timeout)
    conn.up.wait(min(deadline, gives_up if gives_up is not None else deadline) - time.monotonic())


def _varint_size(value: int) -> int:
    return 1 if value < 128 else 2 if value < 16_384 else 3 if value < 2_097_152 else 4


def publish_packet_size(topic: str, payload_size: int, qos: int, mqtt5: bool, properties_size: int = 0) -> tuple[int, int]:
    """``(packet, remaining length)`` in bytes of the PUBLISH that carries the document."""
    remaining = 2 + len(topic.encode("utf-8")) + (2 if qos else 0) + payload_size
    if mqtt5:
        remaining += _varint_size(properties_size) + properties_size
    return 1 + _varint_size(remaining) + remaining, remaining


def _payload_room(topic: str, qos: int, mqtt5: bool, max_packet_size: int | None, header: int) -> int:
    _, fixed = publish_packet_size(topic, 0, qos, mqtt5)
    room = MAX_PAYLOAD - fixed
    if max_packet_size is not None:  # the packet: 1 byte of type, 1 to 4 of Remaining Length
        room = min(room, max_packet_size - header - fixed)
    return max(0, room)


def largest_payload(conn: MqttConnection, topic: str, qos: int) -> int:
    """The largest payload that a PUBLISH to ``topic`` without MQTT 5 properties surely carries
    on this connection (the broker's Maximum Packet Size included)."""
    return _payload_room(topic, qos, conn.mqtt5, conn.max_packet_size, 5)


def payload_limit(connection: Mapping[str, Any], operation: Mapping[str, Any]) -> int:
    """At least the largest payload a document of this Send can carry to the operation's topic:
    MQTT's limit and the configured max_packet_size less the packet's own bytes (a broker's
    MQTT 5 limit is only known once connected: :func:`oversize` checks each document then)."""
    return _payload_room(operation["topic"], operation["qos"], connection.get("protocol") == "5",
                         connection.get("max_packet_size"), 2)


def oversize(conn: MqttConnection, topic: str, payload_size: int, qos: int, properties_size: int = 0) -> str | None:
    """Why the document cannot be sent whole, or None. Checked before publishing: Mosquitto drops the
    whole connection on a packet over its maximum, and MQTT cannot frame one over its own limit."""
    packet, remaining = publish_packet_size(topic, payload_size, qos, conn.mqtt5,
                                            properties_size)
    if remaining > MAX_PAYLOAD:
        return (f"the message is {remaining:,} bytes after its fixed header (payload {payload_size:,}); "
                f"MQTT carries at most {MAX_PAYLOAD:,}")
    limit = conn.max_packet_size
    if limit is not None and packet > limit:
        return (f"the message is a {packet:,}-byte packet (payload {payload_size:,}); the broker accepts "
                f"packets of at most {limit:,} bytes (its maximum packet size)")
    return None


def _unreachable(conn: MqttConnection, what: str) -> str:
    """The error of a document failed by an outage, which is announced once."""
    error = conn.unreachable()
    if not conn.announced:
        conn.announced = True
        log.warning("%s: the documents waiting for it and the rest of the input are reported FAILURE without "
                    "waiting (ack_timeout %g s)", error, conn.config["ack_timeout"])
    return f"{error}; {what}"


def _settle(conn: MqttConnection, pending: _Pending) -> Result:
    if pending.result is not None:
        return pending.result
    assert pending.info is not None
    info = pending.info
    if info.published:  # the common case: no wait (the flag is read without a lock)
        if info.rc == paho.MQTT_ERR_SUCCESS and not conn.refused:
            return Result(pending.index, Status.SUCCESS)
        published = True
    else:
        until = pending.deadline
        if conn.silent_since is not None or conn.failure is not None:  # an outage may end the wait sooner
            gives_up = conn.gives_up_at(conn.config["ack_timeout"])
            if gives_up is not None:
                until = min(until, gives_up)
        published = wait_published(info, until - time.monotonic())
    if published:
        if info.rc == paho.MQTT_ERR_CONN_LOST:  # QoS 0, not written before the connection was lost
            return Result(pending.index, Status.FAILURE, "the connection was lost before the message was sent")
        refused = conn.refused.pop(info.mid, None) if conn.refused else None
        if refused is not None:  # MQTT 5: the broker answered with a failing reason code
            return Result(pending.index, Status.APPLICATION_ERROR, f"the broker refused the message: {refused}")
        return Result(pending.index, Status.SUCCESS)
    ack_timeout = conn.config["ack_timeout"]
    if conn.connected:  # and silent all the time the message waited: as good as unreachable
        conn.silent(pending.deadline - ack_timeout)
    if conn.gave_up(ack_timeout):
        error = _unreachable(conn, "not confirmed")
    else:
        state = "connected" if conn.connected else "not connected"
        error = f"the broker did not confirm the message within {ack_timeout:g} s ({state})"
    if not conn.client.abandon(info.mid):
        error += "; the broker received it, and may still deliver it"
    elif wait_published(info, 0):  # confirmed while it was being abandoned
        return _settle(conn, pending)
    log.debug("document %d: %s", pending.index, error)
    return Result(pending.index, Status.FAILURE, error)
