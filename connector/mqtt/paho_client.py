"""paho-mqtt's internals, in this one module: the connector's paho client and what reads paho's state.

:class:`PahoClient` is paho's client with the delivery rules a runtime needs where paho's own fall
short; :func:`is_published` and :func:`wait_published` read a published message's state without
paho's exceptions. Every private name of paho the connector uses is used here and nowhere else,
and importing this module first checks that the installed paho-mqtt has them
(:mod:`connector.mqtt.paho_check`: a version other than the checked ones warns or is refused).
The rest of the connector uses only the public names below and paho's own public API.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

# First the check: another paho-mqtt, or one without the private names below, fails in one clear line.
from connector.mqtt import paho_check  # noqa: F401
import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import MessageState, _ConnectionState
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from connector.mqtt.framing import CHUNK, FramingError, PacketReader

log = logging.getLogger("connector.mqtt")

#: How long a deliberate close waits for the broker to read everything and close its side.
CLOSE_DRAIN_SECONDS = 2.0

_PUBLISH, _DISCONNECT = 0x30, 0xE0
#: Stands at the head of paho's queue of outgoing packets while a write of packets taken from it is
#: unfinished: paho then still sees something to write (its loop does not end before it is written).
_WRITING: dict[str, Any] = {"command": 0, "mid": 0, "qos": 0, "packet": b"", "info": None}


def is_published(info: paho.MQTTMessageInfo | Delivery) -> bool:
    """Whether paho marked a published message done (PUBACK or PUBCOMP came; QoS 0: written, or
    lost with the connection: see its ``rc``). paho's own ``is_published()`` takes a lock and raises
    for a message queued while disconnected, which paho sends after reconnecting."""
    if type(info) is Delivery:
        return info.published
    return info._published  # set once, never unset: no lock needed to see it (the common case)


def wait_published(info: paho.MQTTMessageInfo | Delivery, timeout: float) -> bool:
    """:func:`is_published`, waiting up to ``timeout`` seconds for it. paho's own
    ``wait_for_publish()`` raises when the message was queued while disconnected, even though paho
    re-sends it after reconnecting; this waits on the flag itself."""
    if type(info) is Delivery:
        return info.published or info._settled.wait(info, timeout)
    if info._published:
        return True
    with info._condition:
        if not info._published and timeout > 0:
            info._condition.wait(timeout)
        return info._published


class _Settled:
    """The one condition the waits for a client's :class:`Delivery` share; notified only while
    someone waits (a Send waits for the oldest message of its window, rarely)."""

    __slots__ = ("condition", "waiting")

    def __init__(self) -> None:
        self.condition = threading.Condition(threading.Lock())
        self.waiting = 0

    def wait(self, delivery: Delivery, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.condition:
            # Counted before the flag is looked at: a message settled after this look sees the
            # count and notifies; one settled before it is seen settled here.
            self.waiting += 1
            try:
                while not delivery.published:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.condition.wait(left)
            finally:
                self.waiting -= 1
        return delivery.published

    def notify(self) -> None:
        with self.condition:
            self.condition.notify_all()


class Delivery:
    """A message handed over by :meth:`PahoClient.publish_message`: its id, paho's result code
    (``rc``) and whether it is done (QoS 0: written, or lost with the connection; QoS 1/2:
    confirmed). paho's own ``MQTTMessageInfo`` makes a Condition (and its RLock) per message;
    here the waits of one client share one (:class:`_Settled`). paho's code sees the same
    attributes (``mid``, ``rc``, ``_set_as_published``)."""

    __slots__ = ("mid", "rc", "published", "_settled")

    def __init__(self, mid: int, settled: _Settled) -> None:
        self.mid = mid
        self.rc = paho.MQTT_ERR_SUCCESS
        #: Set once, never unset: read without a lock.
        self.published = False
        self._settled = settled

    def _set_as_published(self) -> None:  # paho's name: paho calls it
        self.published = True
        if self._settled.waiting:
            self._settled.notify()


class _Outgoing(paho.MQTTMessage):
    """A QoS 1/2 message in paho's session state (``_out_messages``), made without the
    ``MQTTMessageInfo`` paho's constructor makes: its ``info`` is a :class:`Delivery`."""

    __slots__ = ()

    def __init__(self, mid: int, topic: bytes, payload: bytes, qos: int, retain: bool,
                 properties: Properties | None, info: Delivery) -> None:  # noqa: PLR0913
        self.mid, self._topic, self.payload, self.qos, self.retain = mid, topic, payload, qos, retain
        self.properties, self.info, self.dup = properties, info, False
        self.timestamp, self.state = time.monotonic(), MessageState.MQTT_MS_INVALID


_SUCCESSES: dict[tuple[str, int], tuple[ReasonCode, Properties]] = {}


def _success(cmd: str, code: int) -> tuple[ReasonCode, Properties]:
    """The reason and (no) properties of a successful PUBACK or PUBCOMP, made once each."""
    made = _SUCCESSES.get((cmd, code))
    if made is None:
        kind = PacketTypes.PUBACK if cmd == "PUBACK" else PacketTypes.PUBCOMP
        made = _SUCCESSES[cmd, code] = (ReasonCode(kind, identifier=code), Properties(kind))
    return made


def _remaining_length(length: int) -> bytes:
    """MQTT's variable-length encoding of a Remaining Length."""
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


class Received:
    """A received message: what a runtime reads of it (paho's ``MQTTMessage`` names: ``topic``,
    ``payload``, ``qos``, ``retain``, ``dup``, ``mid``, ``properties``) and, for QoS 1/2, what
    its acknowledgement needs. paho builds an ``MQTTMessage`` per message, with an
    ``MQTTMessageInfo``, a ``Condition`` and an ``RLock`` that only its published messages use."""

    __slots__ = ("raw_topic", "payload", "qos", "retain", "dup", "mid", "properties", "timestamp", "connection",
                 "accepted")

    def __init__(self, topic: bytes, payload: bytes, qos: int, retain: bool, dup: bool, mid: int,
                 properties: Properties | None, connection: int) -> None:
        self.raw_topic, self.payload, self.qos, self.retain, self.dup, self.mid = topic, payload, qos, retain, dup, mid
        self.properties = properties
        #: When it was read (``time.monotonic()``), as paho's ``MQTTMessage.timestamp``.
        self.timestamp = 0.0
        #: The connection on which the broker last sent it: only there does its id name it.
        self.connection = connection
        #: The process accepted it (for QoS 2: PUBREC sent, or due when the broker sends it again).
        self.accepted = False

    @property
    def topic(self) -> str:
        """The topic (raises UnicodeDecodeError when the broker sent one that is not UTF-8)."""
        return self.raw_topic.decode("utf-8")

    def sent_again(self, other: Received) -> bool:
        """Whether ``other`` is this message sent again, not another message under the same id:
        a re-delivery carries DUP and the same topic, QoS and payload."""
        return other.dup and other.qos == self.qos and other.raw_topic == self.raw_topic and other.payload == self.payload

    def __repr__(self) -> str:
        return f"Received(mid={self.mid}, qos={self.qos}, topic={self.raw_topic!r}, {len(self.payload)} bytes)"


_PUBACK, _PUBREC = 0x40, 0x50
_ACK_HEADER = {1: bytes((_PUBACK, 2)), 2: bytes((_PUBREC, 2))}


def _parse_publish(command: int, body: bytes | bytearray, mqtt5: bool, connection: int) -> Received:
    """A PUBLISH packet's body (after its fixed header) as a :class:`Received`, read in place
    (paho's decoder unpacks it with formats built per message, and copies it at each field)."""
    qos = (command & 0x06) >> 1
    if qos == 3:
        raise MalformedPacket("QoS 3")
    if len(body) < 2:
        raise MalformedPacket("a PUBLISH without its topic")
    end = 2 + ((body[0] << 8) | body[1])
    topic = bytes(body[2:end])
    if qos:
        if len(body) < end + 2:
            raise MalformedPacket("a PUBLISH without its message id")
        mid = (body[end] << 8) | body[end + 1]
        end += 2
    else:
        mid = 0
        if len(body) < end:
            raise MalformedPacket("a PUBLISH shorter than its topic")
    properties = None
    if mqtt5:
        properties = Properties(PacketTypes.PUBLISH)
        end += properties.unpack(body[end:])[1]
    elif not topic:
        raise MalformedPacket("topic can't be empty in MQTTv3")
    return Received(topic, bytes(body[end:]), qos, bool(command & 0x01), bool(command & 0x08), mid, properties,
                    connection)


class PahoClient(paho.Client):
    """paho's client with the delivery rules a runtime needs, where paho's own fall short.

    - Received QoS 1/2 messages are acknowledged only by :meth:`ack`, after the process accepted
      them. For QoS 2 that acknowledgement is the PUBREC: paho sends PUBREC on arrival, so a
      process killed before it accepted the message lost it (the broker then only releases the
      id), and a PUBREL for an id it no longer knows (after a restart) was never completed,
      holding one of the broker's slots for good. Here a PUBREC means "accepted", so an unknown
      PUBREL is completed at once.
    - A message the broker sends again (DUP, same topic, QoS and payload) while the process still
      has the first copy is not handed over twice: one acknowledgement answers both. Another
      message under an id the process still holds (a broker that handed the id out again, as a
      NATS cluster does after a failover) is a new message: handed over, and the id is its own.
    - An acknowledgement goes out only while its message id names that very message: in the
      same broker session, on a connection where the broker sent it (after a reconnect, once the
      broker sent it again), and not given to another message since. Else it would acknowledge
      whatever the broker now calls by that id, which the process may never have written.
    - Reconnect attempts wait what ``reconnect_delay`` says (the connector's backoff, with jitter),
      and go to the next broker of :attr:`addresses` (failover).
    - The reason code of an MQTT 5 PUBREC, which paho ignores, is reported (a QoS 2 message
      refused there, e.g. 'Not authorized', would otherwise end as a success after PUBCOMP).
    - When the broker was last heard from, and whether a lost connection was closed by the broker
      in good order or cut: paho reports both as 'Unspecified error' (see MqttConnection).
    """

    on_pubrec_refused: Any = None  # called with (mid, reason words) in paho's thread
    #: ``on_messages(client, userdata, messages)``: the messages read together, in paho's thread
    #: (instead of ``on_message`` for each).
    on_messages: Any = None
    #: Called in paho's thread when a connection is lost, before its socket is closed: paho reports
    #: the loss (``on_disconnect``) only later, and in between a QoS 0 publish fails at once
    #: (NO_CONN) while the connection still looks up.
    on_socket_lost: Any = None

    def __init__(self, *args: Any, reconnect_delay: Callable[[int], float], **kwargs: Any) -> None:
        """paho's arguments, and ``reconnect_delay``: the wait before reconnect attempt N (0 for the
        first after a lost connection)."""
        super().__init__(*args, **kwargs)
        #: Increases with every network connection (counted when it starts, before its CONNECT).
        self.connection = 0
        self._delay = reconnect_delay
        self._attempt = 0
        #: The brokers to try, in turn, whenever the one in use cannot be reached (failover).
        self.addresses: list[tuple[str, int]] = []
        #: mid -> the received QoS 1/2 message that id names, until acknowledged (QoS 2: released).
        self._received: dict[int, Received] = {}
        self._received_lock = threading.Lock()
        #: Whether the network loop sleeps in select() with nothing to write: only then does a
        #: queued packet wake it (see :meth:`_loop`).
        self._idle = False
        #: Whether the process acknowledged messages since paho's thread last wrote: it then
        #: writes between the packets it reads, rather than after all of a chunk (a process killed
        #: meanwhile would get more of them again).
        self._acked = False
        self._reader = PacketReader()
        #: The messages of the packets being handled, handed over together (:meth:`_hand_over`).
        self._arrived: list[Received] = []
        #: The write under way: packets joined, how much of it the socket took, and the packets
        #: that are done once written (QoS 0 PUBLISH, DISCONNECT) with where their bytes end.
        self._chunk: memoryview | None = None
        self._chunk_pos = 0
        self._chunk_done: deque[tuple[int, dict[str, Any]]] = deque()
        #: What the waits for a :class:`Delivery` of this client share.
        self._settled = _Settled()
        #: topic -> its field in a PUBLISH (length and name), for the topics published to lately.
        self._topic_fields: dict[bytes, bytes] = {}

    # -- received messages ---------------------------------------------------------------------

    def _handle_publish(self) -> Any:
        incoming = self._in_packet
        return self._receive(incoming["command"], incoming["packet"])

    def _receive(self, command: int, body: bytes | bytearray) -> Any:
        """A PUBLISH came: a new message joins :attr:`_arrived` (handed over once the packets read
        together are handled); QoS 1/2 is held under its id until acknowledged."""
        message = _parse_publish(command, body, self._protocol == paho.MQTTv5, self.connection)
        if self._logger is not None:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received PUBLISH (d%d, q%d, r%d, m%d), %r, ...  (%d bytes)",
                           message.dup, message.qos, message.retain, message.mid, message.raw_topic, len(message.payload))
        message.timestamp = self.heard_at
        qos, mid = message.qos, message.mid
        if not qos:
            self._arrived.append(message)
            return paho.MQTT_ERR_SUCCESS
        with self._received_lock:
            held = self._received.get(mid)
            if held is None or not held.sent_again(message):
                if held is not None:
                    log.debug("message id %d given to another message while the process has the first: "
                              "handed over; the first is no longer acknowledged by that id", mid)
                self._received[mid] = message
                self._arrived.append(message)
                return paho.MQTT_ERR_SUCCESS
            held.connection = self.connection  # its id names it on this connection too
            due = held.accepted
            if due and qos == 1:
                del self._received[mid]
        if due:  # accepted while its acknowledgement could not go out, or that one was lost
            return self._send_puback(mid) if qos == 1 else self._send_pubrec(mid)
        log.debug("message %d sent again while the process has it: handed over once", mid)
        return paho.MQTT_ERR_SUCCESS

    def _hand_over(self) -> None:
        """Hand the messages read together to the runtime: ``on_messages(client, userdata, list)``
        at once, or else ``on_message`` for each (paho's callback, in order)."""
        arrived, self._arrived = self._arrived, []
        callback = self.on_messages
        with self._in_callback_mutex:
            try:
                if callback is not None:
                    callback(self, self._userdata, arrived)
                elif self.on_message is not None:
                    for message in arrived:
                        self.on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def ack(self, message: Received) -> Any:
        """:meth:`ack_all` for one message."""
        return self.ack_all((message,))

    def ack_all(self, messages: Iterable[Received]) -> Any:
        """Acknowledge received messages the process accepted, in one write: PUBACK (QoS 1) or
        PUBREC (QoS 2), now or, after a reconnect, when the broker sent them again; never when an
        id names another message by now (an earlier session's message, an id the broker gave out
        again)."""
        acks: list[bytes] = []
        # Under the lock up to the queueing: a reconnect counts its connection under it too, then
        # empties paho's queue, so an acknowledgement never goes out on a later connection.
        with self._received_lock:
            received, connection = self._received, self.connection
            for message in messages:
                qos = message.qos
                if not qos:
                    continue
                mid = message.mid
                if received.get(mid) is not message:
                    continue
                message.accepted = True
                if message.connection != connection:
                    continue  # sent when the broker sends the message again
                if qos == 1:
                    del received[mid]
                acks.append(_ACK_HEADER[qos] + mid.to_bytes(2, "big"))
            if not acks:
                return paho.MQTT_ERR_SUCCESS
            if self._logger is not None:
                self._easy_log(paho.MQTT_LOG_DEBUG, "Sending PUBACK/PUBREC (Mids: %s)",
                               ", ".join(str(int.from_bytes(ack[2:], "big")) for ack in acks))
            self._acked = True  # written by paho's thread after the packet it is handling now
            return self._packet_queue(_PUBACK, b"".join(acks), 0, 1)

    def _handle_pubrel(self) -> Any:
        mid = _packet.decode_pubrel(self._in_packet["command"], self._in_packet["packet"], self._protocol).mid
        with self._received_lock:  # the broker releases only what was PUBREC'd: accepted
            message = self._received.get(mid)
            if message is not None and message.accepted:
                del self._received[mid]
        return self._send_pubcomp(mid)

    def new_session(self, continued: bool) -> None:
        """A CONNACK came: ``continued`` when the broker kept the session (session present)."""
        if continued:
            return
        with self._received_lock:  # the ids of the earlier session name nothing any more
            self._received.clear()

    def reconnect(self) -> Any:
        """paho's, counting the new connection first (see :meth:`ack`); what the lost connection
        left half read or unwritten is dropped (a QoS 0 message unwritten is lost, as in paho)."""
        with self._received_lock:
            self.connection += 1
        self._reader.clear()
        self._drop_unwritten()
        return super().reconnect()

    # -- the connection ------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The broker connected to, or last tried: ``(host, port)`` (with failover, it changes)."""
        return self._host, self._port

    def stop_reconnecting(self) -> None:
        """Do not reconnect once this connection is lost (say so in ``on_disconnect``)."""
        self._reconnect_on_failure = False

    # -- published messages --------------------------------------------------------------------

    def publish_message(self, topic: bytes, payload: bytes, qos: int, retain: bool,
                        properties: Properties | None = None, packed: bytes = b"\x00") -> Delivery:
        """paho's ``publish()`` for a topic and payload already checked (a topic name, sizes within
        MQTT's and the broker's limits): the PUBLISH is built here in one piece, and the message is
        followed by a :class:`Delivery`. QoS 1/2 messages enter paho's session state as paho's own
        do (kept for a resend after a reconnect, counted in flight). ``packed``: ``properties``
        packed (MQTT 5 only)."""
        if qos == 0:  # no message id (paho gives one, which a QoS 0 PUBLISH does not carry)
            delivery = Delivery(0, self._settled)
            if self._sock is None:
                delivery.rc = paho.MQTT_ERR_NO_CONN
            else:
                self._packet_queue(_PUBLISH, self._publish_packet(topic, payload, 0, retain, 0, packed), 0, 0, delivery)
            return delivery
        with self._mid_generate_mutex:
            self._last_mid = mid = self._last_mid % 65535 + 1
        delivery = Delivery(mid, self._settled)
        message = _Outgoing(mid, topic, payload, qos, retain, properties, delivery)
        with self._out_message_mutex:
            out = self._out_messages
            if mid in out or 0 < self._max_queued_messages <= len(out):
                delivery.rc = paho.MQTT_ERR_QUEUE_SIZE
                return delivery
            out[mid] = message
            if self._max_inflight_messages and self._inflight_messages >= self._max_inflight_messages:
                message.state = MessageState.MQTT_MS_QUEUED  # sent when a slot frees (paho's _update_inflight)
            elif self._sock is None:  # sent after reconnecting
                message.state = MessageState.MQTT_MS_PUBLISH
                delivery.rc = paho.MQTT_ERR_NO_CONN
            else:
                self._inflight_messages += 1
                message.state = MessageState.MQTT_MS_WAIT_FOR_PUBACK if qos == 1 else MessageState.MQTT_MS_WAIT_FOR_PUBREC
                self._packet_queue(_PUBLISH, self._publish_packet(topic, payload, qos, retain, mid, packed), mid, qos,
                                   delivery)
        return delivery

    def _publish_packet(self, topic: bytes, payload: bytes, qos: int, retain: bool, mid: int, packed: bytes) -> bytes:
        if self._logger is not None or self.on_log is not None:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Sending PUBLISH (d0, q%d, r%d, m%d), '%s', ... (%d bytes)",
                           qos, retain, mid, topic, len(payload))
        head = self._topic_fields.get(topic)
        if head is None:  # the topic's field (its length, then the name), made once per topic
            if len(self._topic_fields) >= 256:
                self._topic_fields.clear()
            head = self._topic_fields[topic] = len(topic).to_bytes(2, "big") + topic
        if qos:
            head += mid.to_bytes(2, "big")
        if self._protocol == paho.MQTTv5:
            head += packed
        length = len(head) + len(payload)
        if length < 0x4000:  # a Remaining Length of one or two bytes
            fixed = bytes((_PUBLISH | qos << 1 | retain, length)) if length < 0x80 else \
                bytes((_PUBLISH | qos << 1 | retain, length & 0x7F | 0x80, length >> 7))
        else:
            fixed = bytes((_PUBLISH | qos << 1 | retain,)) + _remaining_length(length)
        return b"".join((fixed, head, payload))

    def _handle_pubrec(self) -> Any:
        packet = self._in_packet["packet"]
        if self._protocol == paho.MQTTv5 and len(packet) > 2 and packet[2] >= 0x80 and self.on_pubrec_refused:
            mid = int.from_bytes(packet[0:2], "big")
            self.on_pubrec_refused(mid, ReasonCode(PacketTypes.PUBREC, identifier=packet[2]).getName())
        return super()._handle_pubrec()

    def _handle_pubackcomp(self, cmd: Any) -> Any:
        # paho decodes every PUBACK and PUBCOMP into a ReasonCode and a Properties object (MQTT
        # 3.1.1 too). The common one, a success without properties, needs neither decoded: the
        # callback (MQTT 5 only) gets one made once per reason.
        packet = self._in_packet["packet"]
        if len(packet) != 2 and not (self._protocol == paho.MQTTv5 and len(packet) >= 3 and packet[2] < 0x80
                                     and (len(packet) == 3 or (len(packet) == 4 and packet[3] == 0))):
            return super()._handle_pubackcomp(cmd)
        mid = packet[0] << 8 | packet[1]
        if self._logger is not None or self.on_log is not None:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received %s (Mid: %d)", cmd, mid)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, *_success(cmd, packet[2] if len(packet) > 2 else 0))
        return paho.MQTT_ERR_SUCCESS

    def _update_inflight(self) -> Any:
        # paho walks every message kept at every acknowledgement, for one queued beyond the
        # in-flight window; when every message kept is in flight there is none.
        if len(self._out_messages) <= self._inflight_messages:
            return paho.MQTT_ERR_SUCCESS
        return super()._update_inflight()

    def abandon(self, mid: int) -> bool:
        """Stop sending a message the broker has not received yet (its document was reported as
        FAILURE): paho would otherwise send it again after every reconnect. False when the broker
        already has it (PUBREC came): paho then completes it."""
        with self._out_message_mutex:
            message = self._out_messages.get(mid)
            if message is None:
                return True
            if message.state in (MessageState.MQTT_MS_WAIT_FOR_PUBCOMP, MessageState.MQTT_MS_RESEND_PUBREL):
                return False
            del self._out_messages[mid]
            if message.state in (MessageState.MQTT_MS_WAIT_FOR_PUBACK, MessageState.MQTT_MS_WAIT_FOR_PUBREC):
                self._inflight_messages = max(0, self._inflight_messages - 1)
                if self.is_connected():
                    self._update_inflight()
            return True

    # -- closing -------------------------------------------------------------------------------

    def _sock_close(self) -> None:
        # paho closes the socket right after writing DISCONNECT. Messages the broker sent meanwhile
        # are then still unread here, and closing a socket with unread data sends a TCP reset, on
        # which the broker's side drops what it had not read yet: the last acknowledgements (the
        # broker sends those messages again), even the DISCONNECT (the broker then publishes the
        # will). So a deliberate close first says "no more from us" and reads until the broker,
        # having read everything, closes its side.
        sock = self._sock
        if (sock is not None and self.on_socket_lost is not None
                and self._state not in (_ConnectionState.MQTT_CS_DISCONNECTING, _ConnectionState.MQTT_CS_DISCONNECTED)):
            self.on_socket_lost()
        if sock is not None and self._state == _ConnectionState.MQTT_CS_DISCONNECTING:
            deadline = time.monotonic() + CLOSE_DRAIN_SECONDS
            sock = getattr(sock, "_socket", sock)  # under paho's WebSocket wrapper: the TCP socket
            try:
                sock.shutdown(socket.SHUT_WR)
                while (remaining := deadline - time.monotonic()) > 0:
                    sock.settimeout(remaining)
                    if not sock.recv(1 << 16):
                        break
            except (OSError, ValueError):  # reset, timed out, or TLS state: close as it is
                pass
        super()._sock_close()

    # -- reconnecting --------------------------------------------------------------------------

    def _reconnect_wait(self) -> None:
        # paho doubles its delay without jitter; many clients cut at once would come back at once.
        with self._reconnect_delay_mutex:
            if self._reconnect_delay is None:  # paho resets it on every accepted CONNACK
                self._attempt = 0
            delay = self._delay(self._attempt)
            self._attempt += 1
            self._reconnect_delay = delay
        target = time.monotonic() + delay
        while (self._state not in (_ConnectionState.MQTT_CS_DISCONNECTING, _ConnectionState.MQTT_CS_DISCONNECTED)
               and not self._thread_terminate):
            remaining = target - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, 0.1))
        if len(self.addresses) > 1:  # the next broker of the cluster
            where = self.addresses.index((self._host, self._port)) if (self._host, self._port) in self.addresses else -1
            self._host, self._port = self.addresses[(where + 1) % len(self.addresses)]

    # -- the network loop: fewer system calls per message --------------------------------------
    # paho wakes its loop with a byte on a socket pair at every queued packet (a system call per
    # message), writes each packet with its own send(), and reads each fixed header one byte per
    # recv(). Here the loop is woken only when it sleeps with nothing to write, queued packets go
    # out joined in writes of up to CHUNK bytes, and reads take a chunk and handle every packet in
    # it. This holds for every transport: TLS and paho's WebSocket wrapper take any write, and
    # are given the very same bytes again after one that did not go through (as both require).

    def _packet_queue(self, command: int, packet: Any, mid: int, qos: int, info: Any = None) -> Any:
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "packet": packet, "info": info})
        if self._idle:  # the loop sleeps in select() without this packet: wake it (once)
            self._idle = False
            wake = self._sockpairW
            if wake is not None:
                try:
                    wake.send(b"0")
                except BlockingIOError:  # full of wake-ups already
                    pass
        if self._thread is None and self._on_socket_register_write is None and self._in_callback_mutex.acquire(False):
            self._in_callback_mutex.release()  # no network thread (paho's own rule): written now
            return self.loop_write()
        if self._on_socket_register_write is not None:
            self._call_socket_register_write()
        return paho.MQTT_ERR_SUCCESS

    def _loop(self, timeout: float = 1.0) -> Any:
        if timeout < 0.0:
            raise ValueError("Invalid timeout.")
        sock = self._sock
        if sock is None:
            return paho.MQTT_ERR_NO_CONN
        # From here until select() returns, a packet queued by another thread must wake the loop:
        # _idle is set before the queue is looked at, and a publisher queues before it looks at
        # _idle, so either this look sees the packet or that publisher sees _idle and wakes it.
        self._idle = True
        wlist = [sock] if self._out_packet else []
        if wlist:  # select() returns once the socket takes more, and everything queued goes then
            self._idle = False
        pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS: decrypted, unread
        wake = self._sockpairR
        try:
            readable, _, _ = select.select([sock] if wake is None else [sock, wake], wlist, [],
                                           0.0 if pending else timeout)
        except (TypeError, ValueError):  # the socket was closed meanwhile (paho's handling)
            if self._state not in (_ConnectionState.MQTT_CS_DISCONNECTING, _ConnectionState.MQTT_CS_DISCONNECTED):
                self._state = _ConnectionState.MQTT_CS_CONNECTION_LOST
            return paho.MQTT_ERR_CONN_LOST
        except Exception:  # noqa: BLE001 (as paho: the loop goes on)
            return paho.MQTT_ERR_UNKNOWN
        finally:
            self._idle = False
        if wake is not None and wake in readable:
            try:
                wake.recv(10000)
            except BlockingIOError:
                pass
        if pending or sock in readable:
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if self._sock is None:
                return paho.MQTT_ERR_NO_CONN
        if self._out_packet:  # queued meanwhile, or answers to what was read: written at once
            rc = self.loop_write()
            if rc or self._sock is None:
                return rc
        return self.loop_misc()

    def _packet_read(self) -> Any:
        """One recv() of up to a chunk (or the rest of a larger packet), then every packet now
        complete is handled: nothing read waits for the socket to become readable again."""
        reader = self._reader
        try:
            data = self._sock_recv(reader.want())
        except BlockingIOError:
            return paho.MQTT_ERR_AGAIN
        except OSError as err:
            self._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return paho.MQTT_ERR_CONN_LOST
        if not data:
            return paho.MQTT_ERR_CONN_LOST
        now = time.monotonic()
        with self._msgtime_mutex:
            self._last_bytes_received = now
        self.heard_at = now
        incoming = self._in_packet
        receive = self._receive
        try:
            for command, length, body in reader.packets(data):
                if command & 0xF0 == _PUBLISH:  # most packets: parsed here, without paho's dispatch
                    rc = receive(command, body)
                else:
                    incoming["command"], incoming["remaining_length"], incoming["packet"] = command, length, body
                    rc = self._packet_handle()
                if self._acked and not rc and self._sock is not None:
                    self._acked = False
                    rc = self._packet_write()
                    rc = rc if rc > 0 else paho.MQTT_ERR_SUCCESS
                if rc or self._sock is None:  # the connection ends: the rest of what it sent goes too
                    reader.clear()
                    return rc
        except (FramingError, MalformedPacket) as exc:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            reader.clear()
            return paho.MQTT_ERR_PROTOCOL
        finally:
            if self._arrived:  # what was read whole is handed over, even when the connection ends
                self._hand_over()
        return paho.MQTT_ERR_SUCCESS

    def _packet_write(self) -> Any:
        """Queued packets joined into writes of up to a chunk; a write the socket takes only part
        of goes on where it stopped, with the same bytes."""
        out = self._out_packet
        while True:
            chunk = self._chunk
            if chunk is None:
                if not out:
                    break
                chunk = self._take_chunk(out)
            try:
                written = self._sock_send(chunk[self._chunk_pos:])
            except (AttributeError, ValueError):  # no socket any more (paho's handling)
                return paho.MQTT_ERR_SUCCESS
            except BlockingIOError:
                return paho.MQTT_ERR_AGAIN
            except OSError as err:
                self._easy_log(paho.MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return paho.MQTT_ERR_CONN_LOST
            if written <= 0:  # paho's WebSocket wrapper: part of its frame went out, the rest later
                return paho.MQTT_ERR_AGAIN
            self._chunk_pos += written
            if self._chunk_done and self._chunk_done[0][0] <= self._chunk_pos and self._written():
                return paho.MQTT_ERR_SUCCESS  # the DISCONNECT went out: the connection is closed
            if self._chunk_pos >= len(chunk):
                self._chunk = None
                out.popleft()  # _WRITING
        with self._msgtime_mutex:
            self._last_msg_out = time.monotonic()
        return paho.MQTT_ERR_SUCCESS

    def _take_chunk(self, out: deque[dict[str, Any]]) -> memoryview:
        """The next write: queued packets up to about a chunk, up to a DISCONNECT (its last)."""
        parts: list[Any] = []
        size = 0
        done = self._chunk_done
        while out and size < CHUNK:
            packet = out.popleft()
            data = packet["packet"]
            parts.append(data)
            size += len(data)
            kind = packet["command"] & 0xF0
            if kind == _PUBLISH and packet["qos"] == 0 and packet["info"] is not None:
                done.append((size, packet))
            elif kind == _DISCONNECT:
                done.append((size, packet))
                break
        out.appendleft(_WRITING)
        self._chunk, self._chunk_pos = memoryview(parts[0] if len(parts) == 1 else b"".join(parts)), 0
        return self._chunk

    def _written(self) -> bool:
        """Complete the packets whose bytes are all written now (paho's own steps for each): True
        when one was the DISCONNECT, whose connection is then closed."""
        done, position = self._chunk_done, self._chunk_pos
        settled = False
        while done and done[0][0] <= position:
            packet = done.popleft()[1]
            if packet["command"] & 0xF0 == _DISCONNECT:
                if settled and self._settled.waiting:
                    self._settled.notify()
                self._chunk = None
                self._out_packet.popleft()  # _WRITING
                with self._msgtime_mutex:
                    self._last_msg_out = time.monotonic()
                self._do_on_disconnect(packet_from_broker=False, v1_rc=paho.MQTT_ERR_SUCCESS)
                self._sock_close()
                if self._state == _ConnectionState.MQTT_CS_DISCONNECTING:
                    self._state = _ConnectionState.MQTT_CS_DISCONNECTED
                return True
            if self.on_publish is not None:
                self._qos0_on_publish(packet["mid"])
            info = packet["info"]
            if type(info) is Delivery:  # its waiters are notified once, below
                info.published = settled = True
            else:
                info._set_as_published()
        if settled and self._settled.waiting:
            self._settled.notify()
        return False

    def _qos0_on_publish(self, mid: int) -> None:
        with self._in_callback_mutex:
            try:
                if self._callback_api_version == paho.CallbackAPIVersion.VERSION1:
                    self.on_publish(self, self._userdata, mid)
                else:
                    self.on_publish(self, self._userdata, mid, *_success("PUBACK", 0))
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_publish: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _drop_unwritten(self) -> None:
        """The connection is gone: its unfinished write too. A QoS 0 message in it is lost (paho's
        own rule for its queue), and says so."""
        for _, packet in self._chunk_done:
            info = packet["info"]
            if info is not None and packet["command"] & 0xF0 == _PUBLISH:
                info.rc = paho.MQTT_ERR_CONN_LOST
                info._set_as_published()
        self._chunk_done.clear()
        self._chunk, self._chunk_pos = None, 0

    # -- signs of life -------------------------------------------------------------------------

    #: When the last packet came from the broker (paho's own clock is reset by its PINGREQs).
    heard_at = 0.0
    #: Whether the connection that just ended was closed by the broker in good order (a FIN, not
    #: a reset or a timeout): read by on_disconnect.
    closed_by_broker = False

    def _packet_handle(self) -> Any:
        self.heard_at = time.monotonic()
        return super()._packet_handle()

    def unanswered(self) -> frozenset[int]:
        """The ids of the QoS 1/2 messages sent and not yet confirmed."""
        with self._out_message_mutex:
            return frozenset(self._out_messages)

    def _loop_rc_handle(self, rc: Any, *args: Any) -> Any:
        # Only here, before paho closes the socket, can a close by the broker (TCP CLOSE_WAIT: its
        # FIN came) be told from a network fault (reset, CLOSE) or a silent one (keep alive).
        self.closed_by_broker = bool(rc) and _tcp_state(self._sock) == _TCP_CLOSE_WAIT
        return super()._loop_rc_handle(rc, *args)


#: Linux's TCP state of a socket whose peer closed its side in good order.
_TCP_CLOSE_WAIT = 8


def _tcp_state(sock: Any) -> int | None:
    """The socket's TCP state (Linux TCP_INFO), or None where it cannot be read."""
    sock = getattr(sock, "_socket", sock)  # under paho's WebSocket wrapper: the TCP socket
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except (AttributeError, OSError, ValueError):
        return None

