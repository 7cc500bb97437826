"""The protocol handler of each client connection of the embedded broker (amqtt's, changed):

* it keeps a sent QoS 1/2 message in the session's in-flight list until it is acknowledged
  (amqtt issue 401), so that amqtt's retry on reconnect sends it again;
* it enforces keep alive: no packet for 1.5 x the keep alive closes the connection;
* it writes what it delivers through a bounded Outbox (connector/mqtt/broker/queue.py), and
  only what the client's ACL lets it read.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.protocol.handler import OUTGOING
from amqtt.mqtt.publish import PublishPacket
from amqtt.session import OutgoingApplicationMessage

from connector.mqtt.broker.auth import READ
from connector.mqtt.broker.guard import FramingReader
from connector.mqtt.broker.queue import Entry, Outbox

log = logging.getLogger("connector.mqtt.broker")

#: PUBLISHes of one client read and not yet handed on, at most: then its socket is not read.
INCOMING_BACKLOG = 64

# The outbox entry whose PUBLISH the current task is writing (each delivery is its own task).
_writing: contextvars.ContextVar[Entry | None] = contextvars.ContextVar("writing", default=None)


class KeepInflightHandler(BrokerProtocolHandler):
    """amqtt's protocol handler, but an outgoing QoS 1/2 message stays in the session's in-flight
    list until it is acknowledged (PUBACK, or PUBCOMP for QoS 2) instead of being dropped when the
    wait ends without one (disconnect, 5 s timeout): the retry on reconnect then resends it."""

    async def _handle_qos1_message_flow(self, app_message: Any) -> None:
        await self._keeping(super()._handle_qos1_message_flow, app_message, QOS_1)

    async def _handle_qos2_message_flow(self, app_message: Any) -> None:
        await self._keeping(super()._handle_qos2_message_flow, app_message, QOS_2)

    async def _keeping(self, flow: Any, app_message: Any, qos: int) -> None:
        session = self.session
        try:
            await flow(app_message)
        finally:
            done = app_message.puback_packet if qos == QOS_1 else app_message.pubcomp_packet
            if (app_message.direction == OUTGOING and session is not None and done is None
                    and app_message.publish_packet is not None and app_message.packet_id is not None):
                # amqtt popped it in its own ``finally``: put it back for the retry on reconnect
                session.inflight_out.setdefault(app_message.packet_id, app_message)


def abort_connection(writer: Any, only_if_stuck: bool = False) -> None:
    """Close a TCP connection at once, dropping what the peer has not read (amqtt's writer adapter
    keeps asyncio's StreamWriter as ``_writer``; WebSocket writers are left to amqtt)."""
    transport = getattr(getattr(writer, "_writer", None), "transport", None)
    if transport is not None and (not only_if_stuck or transport.get_write_buffer_size() > 0):
        transport.abort()


class EmbeddedHandler(KeepInflightHandler):
    """One client connection: keeps the in-flight list (above), enforces keep alive, and writes
    what it delivers through a bounded :class:`Outbox`. ``setup`` gives it its state right after
    amqtt made it (amqtt builds the handler from the CONNECT; we change its class)."""

    def setup(self, broker: Any) -> None:
        self._broker = broker
        self.left_over: list[Any] = []  # PUBLISHes acknowledged and not yet handed on when the client left
        self._outbox: Outbox | None = None
        self._alive_timer: asyncio.TimerHandle | None = None
        # How the connection ended (its DISCONNECT, or None), set once. amqtt makes its own
        # disconnect waiter only at the end of start(), after resending the session's in-flight
        # messages and waiting for their acknowledgements: a DISCONNECT, a closed socket or a
        # takeover in that time found no waiter, and the client's loop then waited forever.
        self._ended: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        assert self.session is not None
        self._outbox = Outbox(self.session, self._broker.queue_limits)
        self._started = self._loop.time()  # the CONNECT
        self._keep_alive = keep_alive = self.session.keep_alive
        if keep_alive > 0:
            self._alive_timer = self._loop.call_later(1.5 * keep_alive, self._check_alive)
        # amqtt's reader loop waits for each fixed header with a timeout of the keep alive and
        # then goes on reading; a timeout between a header's first byte and its length puts the
        # stream out of step. Keep alive is ours now: its reader loop starts without a timeout.
        self.session.keep_alive = 0
        if isinstance(self.reader, FramingReader):  # amqtt reads on, whatever its backlog: bound it
            incoming = self.session.delivered_message_queue
            self.reader.hold_back = lambda: incoming.qsize() >= INCOMING_BACKLOG
        try:
            await super().start()
        finally:
            self.session.keep_alive = keep_alive

    def _end(self, disconnect: Any) -> None:
        """The connection ends: with its DISCONNECT packet, or None (the will is published)."""
        if not self._ended.done():
            self._ended.set_result(disconnect)

    async def handle_disconnect(self, disconnect: Any) -> None:  # also called when the socket closes
        self._end(disconnect)
        await super().handle_disconnect(disconnect)

    async def handle_connect(self, connect: Any) -> None:  # a second CONNECT [MQTT-3.1.0-2]
        self._end(None)
        await super().handle_connect(connect)

    async def wait_disconnect(self) -> Any:
        return await asyncio.shield(self._ended)  # amqtt cancels this wait when its loop ends

    def _check_alive(self) -> None:
        """MQTT 3.1.1 section 3.1.2.10: no packet for 1.5 x keep alive closes the connection."""
        session = self.session
        if session is None:
            return
        limit = 1.5 * self._keep_alive
        last = max(self._started, self._broker.guard.last_packet.get(session.client_id, 0.0))
        silent = self._loop.time() - last
        if silent < limit:
            self._alive_timer = self._loop.call_later(limit - silent, self._check_alive)
            return
        log.warning("closing the connection of %s: no packet for %.1f s (keep alive %d s)", session.client_id,
                    silent, self._keep_alive)
        asyncio.ensure_future(self.handle_connection_closed())  # amqtt then publishes the will

    async def stop(self) -> None:
        self._end(None)
        if self._alive_timer is not None:
            self._alive_timer.cancel()
            if self.session is not None:
                self._broker.guard.last_packet.pop(self.session.client_id, None)
        self._keep_what_waits()
        # amqtt's writer.close() first drains, which never ends for a peer that does not read:
        # what such a peer did not take is dropped with the connection.
        abort_connection(self.writer, only_if_stuck=True)
        await super().stop()

    def _keep_what_waits(self) -> None:
        """The connection ended: QoS 1/2 messages still waiting in the outbox go to the queue of
        a persistent session, for its return; the rest is freed now."""
        if self._outbox is None or self._outbox.closed:
            return
        session = self.session
        for topic, data, qos in self._outbox.close():
            if session is not None and not session.clean_session and qos in (QOS_1, QOS_2):
                self._broker.queue_offline(session, topic, data, qos)

    async def mqtt_publish(self, topic: str, data: bytes | bytearray, qos: int | None, retain: bool,
                           ack_timeout: int | None = None) -> OutgoingApplicationMessage:
        outbox, session = self._outbox, self.session
        if session is not None and not self._broker.may(session, topic, READ):
            log.info("not delivering %r to %s: its ACL does not let it read that topic", topic, session.client_id)
            return OutgoingApplicationMessage(None, topic, qos, b"", retain)
        if outbox is None or outbox.closed:
            if session is not None and not session.clean_session and qos in (QOS_1, QOS_2):
                self._broker.queue_offline(session, topic, bytes(data), qos)
            return OutgoingApplicationMessage(None, topic, qos, b"", retain)
        entry = outbox.admit(topic, bytes(data), qos or 0)
        del data  # from here the entry holds the payload, so that dropping it frees it
        if entry is None or not await entry.turn:
            return OutgoingApplicationMessage(None, topic, qos, b"", retain)
        payload, entry.data = entry.data, None
        _writing.set(entry)
        try:
            return await super().mqtt_publish(topic, payload, qos, retain, ack_timeout)
        finally:
            _writing.set(None)
            outbox.written(entry)

    async def _send_packet(self, packet: Any) -> None:
        await super()._send_packet(packet)
        entry = _writing.get()
        if entry is not None and isinstance(packet, PublishPacket) and self._outbox is not None:
            # in the transport's buffer, below its high-water mark: the next message may go
            # while this one waits for its acknowledgement
            _writing.set(None)
            self._outbox.written(entry)

    def queued(self) -> tuple[int, int]:
        return self._outbox.queued() if self._outbox is not None else (0, 0)
