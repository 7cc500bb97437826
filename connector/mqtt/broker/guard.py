"""Malformed packets close the connection, as MQTT 3.1.1 requires and Mosquitto does.

amqtt 0.12.1 answers many malformed packets as if they were fine: it grants QoS 3 in a SUBACK,
delivers topics holding U+0000, decodes invalid UTF-8 into the text ``"b'...'"``, accepts wildcards
and an empty topic in a PUBLISH (it drops those but keeps the connection), and ignores reserved
flag bits. Every packet amqtt decodes passes through its plugin manager's ``PACKET_RECEIVED``
event before it is handled: :class:`PacketGuard` wraps that manager and checks each packet there.
The strings amqtt decodes are checked as it reads them (its packet modules get our decoders).
A malformed CONNECT is refused (connection closed, no CONNACK); any other malformed packet ends
the connection like a network error, so the client's will is published [MQTT-3.1.2-8].

The same guard keeps the time of each client's last complete packet, for keep alive.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any

from amqtt import codecs_amqtt
from amqtt.adapters import ReaderAdapter
from amqtt.events import MQTTEvents
from amqtt.mqtt import connect, publish, subscribe, unsubscribe
from amqtt.mqtt.packet import (CONNECT, DISCONNECT, PINGREQ, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBSCRIBE,
                               UNSUBSCRIBE)
from amqtt.session import Session

from connector.mqtt.topics import refused_character, wildcard_problem

log = logging.getLogger("connector.mqtt.broker")

#: The fixed header flags each packet type must carry [MQTT-2.2.2-1, MQTT-2.2.2-2].
_FLAGS = {CONNECT: 0, PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2, UNSUBSCRIBE: 2, PINGREQ: 0,
          DISCONNECT: 0}


class Malformed(Exception):
    """A packet MQTT calls malformed or a protocol violation: the connection is closed. Not an
    MQTTError, which amqtt's reader loop ignores; any other exception ends that loop, which
    closes the connection as after a network error. The broker catches it around the CONNECT."""


async def _lossless_string(reader: Any) -> str:
    """For CONNECT, whose password is binary: invalid UTF-8 becomes lone surrogates (which valid
    UTF-8 never yields; :func:`text_problem` refuses them in the other fields) instead of amqtt's
    text ``"b'...'"``."""
    raw = await codecs_amqtt.decode_data_with_length(reader)
    return raw.decode("utf-8", "surrogateescape")


async def _strict_string(reader: Any) -> str:
    """For topic names and filters: invalid UTF-8 closes the connection [MQTT-1.5.3-1]."""
    raw = await codecs_amqtt.decode_data_with_length(reader)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(f"a topic {raw[:64]!r} is not valid UTF-8") from None


async def _topic_name(reader: Any) -> str:
    """A PUBLISH topic: amqtt raises MQTTError for a wildcard, which its reader loop ignores
    ("Message discarded") while the connection stays open."""
    topic = await _strict_string(reader)
    if (why := topic_problem(topic)) is not None:
        raise _refused(f"PUBLISH whose topic {topic!r} {why}")
    return topic


# amqtt's packet modules import decode_string by name, and use it only for the strings above.
connect.decode_string = _lossless_string  # type: ignore[attr-defined]
publish.decode_string = _topic_name  # type: ignore[attr-defined]
subscribe.decode_string = unsubscribe.decode_string = _strict_string  # type: ignore[attr-defined]


def _refused(why: str, who: str = "a client") -> Malformed:
    log.warning("closing the connection of %s: malformed packet: %s", who, why)
    return Malformed(why)


def text_problem(text: str) -> str | None:
    """Why an MQTT UTF-8 string is refused, or None. Mosquitto's rule: no invalid UTF-8, no
    U+0000 [MQTT-1.5.3-1, -2], no other control character, no non-character."""
    bad = refused_character(text)
    if bad is None:
        return None
    code = ord(bad.group())
    if 0xD800 <= code <= 0xDFFF:
        return "is not valid UTF-8"
    if code == 0:
        return "holds U+0000"
    if code <= 0x9F:
        return f"holds the control character U+{code:04X}"
    return f"holds the non-character U+{code:04X}"


def topic_problem(topic: str) -> str | None:
    """Why a PUBLISH topic name is refused [MQTT-4.7.3-1, MQTT-3.3.2-2], or None."""
    if not topic:
        return "is empty"
    if "+" in topic or "#" in topic:
        return "holds a wildcard"
    return text_problem(topic)


def filter_problem(topic_filter: str) -> str | None:
    """Why a topic filter is refused [MQTT-4.7.1-2, -3, MQTT-4.7.3-1], or None."""
    if not topic_filter:
        return "is empty"
    if (why := wildcard_problem(topic_filter)) is not None:
        return f"breaks a wildcard rule: {why}"
    return text_problem(topic_filter)


def _packet_id(packet: Any) -> int | None:
    header = packet.variable_header
    return getattr(header, "packet_id", None) if header is not None else None


def _connect_problem(packet: Any) -> str | None:
    header, payload = packet.variable_header, packet.payload
    flags = packet.fixed_header.flags
    if flags != 0:
        return "CONNECT with reserved flag bits set"
    if header.will_flag:
        if header.will_qos == 3:
            return "CONNECT with will QoS 3"
        if (why := topic_problem(payload.will_topic or "")) is not None:
            return f"CONNECT whose will topic {why}"
    elif header.will_qos or header.will_retain_flag:
        return "CONNECT with will QoS or will retain but no will"
    for what, text in (("client ID", payload.client_id), ("user name", payload.username)):
        if text and (why := text_problem(text)) is not None:
            return f"CONNECT whose {what} {why}"
    return None


def _subscribe_problem(packet: Any, kind: str) -> str | None:
    entries = packet.payload.topics if packet.payload is not None else []
    if not entries:
        return f"{kind} without any topic filter"
    for entry in entries:
        topic_filter, options = entry if kind == "SUBSCRIBE" else (entry, 0)
        if options == 3:
            return f"SUBSCRIBE asking QoS 3 for {topic_filter!r}"
        if options not in (0, 1, 2):  # the reserved bits of the options byte [MQTT-3.8.3-4]
            return f"SUBSCRIBE with reserved option bits set for {topic_filter!r}"
        if (why := filter_problem(topic_filter)) is not None:
            return f"{kind} whose topic filter {topic_filter!r} {why}"
    return None


def packet_problem(packet: Any) -> str | None:
    """Why a decoded packet from a client is malformed, or None when it is fine."""
    kind = packet.fixed_header.packet_type
    if kind == CONNECT:
        return _connect_problem(packet)
    if kind in _FLAGS and packet.fixed_header.flags != _FLAGS[kind]:
        return f"packet type {kind} with reserved flag bits {packet.fixed_header.flags:04b}"
    if kind in (SUBSCRIBE, UNSUBSCRIBE, PUBACK, PUBREC, PUBREL, PUBCOMP) and _packet_id(packet) == 0:
        return f"packet type {kind} with packet identifier 0"
    if kind in (SUBSCRIBE, UNSUBSCRIBE):
        return _subscribe_problem(packet, "SUBSCRIBE" if kind == SUBSCRIBE else "UNSUBSCRIBE")
    if kind == PUBLISH:
        if packet.qos == 3:
            return "PUBLISH with QoS 3"
        if packet.qos and _packet_id(packet) == 0:
            return "PUBLISH with packet identifier 0"
        if (why := topic_problem(packet.topic_name or "")) is not None:
            return f"PUBLISH whose topic {packet.topic_name!r} {why}"
    return None


# The framing reader of the packet the current task is decoding (each connection decodes in its own tasks).
_framing: contextvars.ContextVar[FramingReader | None] = contextvars.ContextVar("framing", default=None)


class FramingReader(ReaderAdapter):
    """Wraps a connection's reader so that amqtt's decoders stay inside each packet's Remaining
    Length: amqtt reads strings by their own length prefix, so a packet whose fields claim more or
    fewer bytes than it has would read into the next packet (or leave bytes behind) and leave the
    stream out of step. Reading past the end, bytes left over when the packet is decoded, or a
    Remaining Length of more than four bytes is malformed."""

    def __init__(self, inner: ReaderAdapter) -> None:
        self._inner = inner
        self._connect_start = bytearray()  # the first bytes of the first packet's body (the CONNECT)
        self._packets = 0
        #: set by the connection's handler: while it says so, the next packet is not read (the
        #: client's PUBLISHes wait in its socket, not in the broker's memory)
        self.hold_back: Callable[[], bool] | None = None
        self._state = "type"  # then "length" (its bytes), "body", "done" (until the guard saw it)
        self._left = 0
        self._length = 0
        self._length_bytes = 0
        self._shift = 0

    async def read(self, n: int = -1) -> bytes:
        _framing.set(self)
        if n == 0:
            return b""
        while self._state == "type" and self.hold_back is not None and self.hold_back():
            await asyncio.sleep(0.005)  # the broker is handing on this client's earlier PUBLISHes
        if self._state == "body" and (n < 0 or n > self._left) or self._state == "done":
            raise _refused(f"a field runs past the end of its packet (Remaining Length {self._length})")
        data = await self._inner.read(n)
        if self._state == "type":
            self._state, self._left, self._shift, self._length_bytes = "length", 0, 0, 0
            self._length = 0
        elif self._state == "length":
            for byte in data:
                self._left += (byte & 0x7F) << self._shift
                self._shift += 7
                self._length_bytes += 1
                if byte & 0x80 and self._length_bytes == 4:
                    raise _refused("a Remaining Length of more than four bytes")
                if not byte & 0x80:
                    self._state, self._length = ("body" if self._left else "done"), self._left
        else:
            self._left -= len(data)
            if not self._left:
                self._state = "done"
            if self._packets == 0 and len(self._connect_start) < 7:
                self._connect_start += data[:7 - len(self._connect_start)]
        return data

    @property
    def connect_level(self) -> int | None:
        """The protocol level the CONNECT asked for (4 is MQTT 3.1.1, 5 is MQTT 5), once read."""
        return self._connect_start[6] if len(self._connect_start) == 7 else None

    def packet_decoded(self) -> None:
        """amqtt decoded a packet: all of its body must have been read."""
        if self._state == "body" and self._left:
            raise _refused(f"{self._left} bytes left over at the end of a packet")
        self._state = "type"
        self._packets += 1

    def feed_eof(self) -> None:
        self._inner.feed_eof()


class PacketGuard:
    """Wraps amqtt's plugin manager: checks each packet a client sends before amqtt handles it,
    and notes when each session last sent a complete packet (for keep alive)."""

    def __init__(self, plugins_manager: Any, on_connect: Callable[[Any], None] | None = None) -> None:
        self._plugins = plugins_manager
        #: called with each well-formed CONNECT before amqtt touches any session (may raise to refuse it)
        self.on_connect = on_connect
        self.last_packet: dict[str, float] = {}  # client ID -> loop time of its last complete packet

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plugins, name)

    async def fire_event(self, event_name: Any, *, wait: bool = False, **kwargs: Any) -> None:
        if event_name == MQTTEvents.PACKET_RECEIVED:
            self._check(kwargs.get("packet"), kwargs.get("session"))
        await self._plugins.fire_event(event_name, wait=wait, **kwargs)

    def _check(self, packet: Any, session: Session | None) -> None:
        framing = _framing.get()
        if framing is not None:
            framing.packet_decoded()
        if packet is None or packet.fixed_header is None:
            return
        if session is not None and session.client_id:
            self.last_packet[session.client_id] = asyncio.get_running_loop().time()
        why = packet_problem(packet)
        if why is None:
            if packet.fixed_header.packet_type == CONNECT and self.on_connect is not None:
                self.on_connect(packet)
            return
        raise _refused(why, session.client_id if session is not None else "a client")
