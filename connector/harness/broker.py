"""The embedded MQTT broker (amqtt 0.12.1), with its known bugs fixed or worked around here.

Fixes, each shown by a test in tests/test_broker.py:

* Retained messages on connect: amqtt replays, to every client that connects, the retained
  messages matching *any* client's subscriptions, with the retained flag: a new subscription
  receives retained messages that do not match its filter, or the same one twice. MQTT sends
  retained messages only in answer to a SUBSCRIBE, so the replay on connect is dropped.
* Delivered QoS: amqtt delivers every message at the subscription's QoS, so a QoS 0 publish
  reaches a QoS 2 subscriber as QoS 2. MQTT delivers at the lower of the published and the
  subscribed QoS; the broadcast carries the published QoS and yields the lower one.
* Persistent sessions of anonymous clients: with anonymous access on, amqtt marks every session
  anonymous and then neither keeps it nor queues its QoS 1/2 messages while it is away. Our
  authentication plugin admits clients without that mark, so ``clean session = false`` works.
* Messages queued for a persistent session: amqtt delivers them with the retained flag when the
  client comes back, so a Listen would report ordinary messages as retained; they go out with
  RETAIN 0, as MQTT requires for a message that matches an established subscription.

* In-flight messages of a session (amqtt issue 401): amqtt forgets a QoS 1/2 message it sent when
  the acknowledgement does not come (the client disconnected, or 5 seconds passed), so a message a
  persistent Listen did not acknowledge was never sent again. Our protocol handler keeps it in the
  session's in-flight list; amqtt's own retry on reconnect then sends it again with DUP set
  [MQTT-4.4.0-1] (or the PUBREL, for a QoS 2 message whose PUBREC came).

Added: shared subscriptions ($share/GROUP/FILTER, connector/harness/shared.py), which amqtt lacks;
and the defences amqtt lacks against misbehaving clients:

* Keep alive [MQTT-3.1.2-24]: a client that sends no packet for one and a half times its keep alive
  is closed, and its will published; a connection that has not sent its CONNECT within
  ``connect_timeout`` seconds is closed.
* Malformed packets close the connection (connector/harness/broker_guard.py).
* What is queued for each client is bounded (connector/harness/broker_queue.py).

Not fixed (see docs/embedded-broker.md): no MQTT 5.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter, WebSocketsReader, WebSocketsWriter
from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import Action
from amqtt.errors import AMQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.protocol.handler import OUTGOING
from amqtt.mqtt.publish import PublishPacket
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import OutgoingApplicationMessage, Session

from connector.harness.broker_auth import READ, WRITE, Acl, AuthFileError, Passwords
from connector.harness.broker_guard import FramingReader, Malformed, PacketGuard
from connector.harness.broker_queue import Entry, Outbox, QueueLimits, held, room_offline
from connector.harness.shared import SHARE, SharedSubscriptions, split_share

log = logging.getLogger("connector.harness.broker")


class BrokerError(Exception):
    """The embedded broker cannot start; the message says why, in words."""


class Refused(Exception):
    """A CONNECT refused by the password file: answered with CONNACK 5 (not authorized)."""


class OpenAuthPlugin(BaseAuthPlugin):
    """Admits every client, anonymous or not, and keeps its session as the client asked."""

    async def authenticate(self, *, session: Session) -> bool | None:
        return True


#: Seconds a new connection has to send its CONNECT (Mosquitto closes it after 1.5 x 60 s).
CONNECT_TIMEOUT = 10.0

# The QoS of the PUBLISH being handled by the current client's task (amqtt does not pass it on).
_published_qos: contextvars.ContextVar[int | None] = contextvars.ContextVar("published_qos", default=None)
# The outbox entry whose PUBLISH the current task is writing (each delivery is its own task).
_writing: contextvars.ContextVar[Entry | None] = contextvars.ContextVar("writing", default=None)


class _Broadcast(dict):  # type: ignore[type-arg]
    """amqtt reads the delivery QoS as ``broadcast.get("qos", subscription_qos)``: answer the lower."""

    def __init__(self, published_qos: int | None, **items: Any) -> None:
        super().__init__(**items)
        self.published_qos = published_qos

    def get(self, key: str, default: Any = None) -> Any:
        if key == "qos" and self.published_qos is not None and isinstance(default, int):
            return min(self.published_qos, default)
        return super().get(key, default)


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


def _abort(writer: Any, only_if_stuck: bool = False) -> None:
    """Close a TCP connection at once, dropping what the peer has not read (amqtt's writer adapter
    keeps asyncio's StreamWriter as ``_writer``; WebSocket writers are left to amqtt)."""
    transport = getattr(getattr(writer, "_writer", None), "transport", None)
    if transport is not None and (not only_if_stuck or transport.get_write_buffer_size() > 0):
        transport.abort()


class EmbeddedHandler(KeepInflightHandler):
    """One client connection: keeps the in-flight list (above), enforces keep alive, and writes
    what it delivers through a bounded :class:`Outbox`. ``setup`` gives it its state right after
    amqtt made it (amqtt builds the handler from the CONNECT; we change its class)."""

    def setup(self, broker: EmbeddedBroker) -> None:
        self._broker = broker
        self.left_over: list[Any] = []  # PUBLISHes acknowledged and not yet handed on when the client left
        self._outbox: Outbox | None = None
        self._alive_timer: asyncio.TimerHandle | None = None

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
        try:
            await super().start()
        finally:
            self.session.keep_alive = keep_alive

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
        if self._alive_timer is not None:
            self._alive_timer.cancel()
            if self.session is not None:
                self._broker.guard.last_packet.pop(self.session.client_id, None)
        self._keep_what_waits()
        # amqtt's writer.close() first drains, which never ends for a peer that does not read:
        # what such a peer did not take is dropped with the connection.
        _abort(self.writer, only_if_stuck=True)
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


class EmbeddedBroker(SharedSubscriptions, Broker):
    """amqtt's broker with the fixes described in this module's docstring, and shared subscriptions."""

    def __init__(self, *args: Any, settings: BrokerSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connecting: set[str] = set()
        self._shared_init()
        settings = settings or BrokerSettings()
        self.connect_timeout = settings.connect_timeout
        self.queue_limits = settings.queue_limits
        self.allow_anonymous = settings.anonymous_allowed
        self.passwords = Passwords(settings.password_file) if settings.password_file else None
        self.acl = Acl.load(settings.acl_file) if settings.acl_file else None
        self._ssl = _tls_context(settings) if settings.cert_file else None
        # every packet a client sends passes the guard before amqtt handles it
        self.guard = self.plugins_manager = PacketGuard(self.plugins_manager, self._check_credentials)

    def _check_credentials(self, connect: Any) -> None:
        """Before amqtt looks at any session (it would take over or wipe one of the same client
        ID first): a CONNECT the password file refuses goes no further."""
        if self.passwords is None:
            return
        user = connect.username if connect.username_flag else None
        if user is None:
            if not self.allow_anonymous:
                raise Refused(f"anonymous client {connect.client_id!r} refused (the broker has a password file)")
            return
        password = connect.password.encode("utf-8", "surrogateescape") if connect.password_flag else None
        if not self.passwords.check(user, password):
            raise Refused(f"client {connect.client_id!r} refused: wrong user name or password for {user!r}")

    def may(self, session: Session, topic: str, access: int) -> bool:
        """Does the ACL file let this client read or write ``topic`` (a filter, to subscribe)?"""
        if self.acl is None:
            return True
        return self.acl.allowed(session.username, session.client_id or "", topic, access)

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        if self.acl is None or action == Action.RECEIVE:  # delivery is checked by EmbeddedHandler
            return await super()._topic_filtering(session, topic, action)
        subscribing = action == Action.SUBSCRIBE
        plain = split_share(topic) if subscribing and topic.startswith(SHARE) else topic
        if self.may(session, plain, READ if subscribing else WRITE):
            return True
        log.warning("ACL: %s may not %s %r: %s", session.client_id, "subscribe to" if subscribing else "publish to",
                    topic, "SUBACK 0x80" if subscribing else "message dropped")
        return False

    def _create_ssl_context(self, listener: Any) -> ssl.SSLContext:
        assert self._ssl is not None
        return self._ssl

    async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                         remote_port: int) -> Any:
        try:
            return await asyncio.wait_for(
                super()._initialize_client_session(reader, writer, remote_address, remote_port), self.connect_timeout)
        except asyncio.TimeoutError:
            log.warning("closing the connection from %s:%s: no CONNECT within %g s", remote_address, remote_port,
                        self.connect_timeout)
            _abort(writer)
            raise AMQTTError("no CONNECT in time") from None
        except Malformed as exc:  # logged by the guard
            _abort(writer)
            raise AMQTTError(str(exc)) from None
        except Refused as exc:
            log.warning("%s", exc)
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise AMQTTError(str(exc)) from None

    async def stream_connected(self, reader: Any, writer: Any, listener_name: str) -> None:
        await self._client_connected(listener_name, FramingReader(StreamReaderAdapter(reader)),
                                     StreamWriterAdapter(writer))

    async def ws_connected(self, websocket: Any, listener_name: str) -> None:
        await self._client_connected(listener_name, FramingReader(WebSocketsReader(websocket)),
                                     WebSocketsWriter(websocket))

    def bound_port(self) -> int:
        """The TCP port the default listener got (the one asked for, or a free one for port 0)."""
        return self._servers["default"].instance.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def queue_offline(self, session: Session, topic: str, data: bytes, qos: int) -> None:
        """Keep a QoS 1/2 message for a persistent session that is away, within its limits."""
        if room_offline(session, len(data), self.queue_limits):
            session.retained_messages.put_nowait(RetainedApplicationMessage(None, topic, data, qos))

    async def _retain_broadcast_message(self, broadcast: dict[str, Any], qos: int, target_session: Session) -> None:
        if room_offline(target_session, len(broadcast["data"] or b""), self.queue_limits):
            await super()._retain_broadcast_message(broadcast, qos, target_session)

    def queued(self, client_id: str) -> tuple[int, int]:
        """Messages and payload bytes the broker holds for a client (0, 0 when it has no session)."""
        session, handler = self._sessions.get(client_id, (None, None))
        if isinstance(handler, EmbeddedHandler) and handler.session is not None:
            return handler.queued()
        return held(session) if session is not None else (0, 0)

    async def _handle_client_session(self, reader: Any, writer: Any, client_session: Session, handler: Any,
                                     *args: Any, **kwargs: Any) -> None:
        # amqtt builds a plain BrokerProtocolHandler from the CONNECT; ours only changes behaviour
        # (no state of its own), so the instance takes our class before it handles anything.
        if type(handler) is BrokerProtocolHandler:
            handler.__class__ = EmbeddedHandler
            handler.setup(self)
        try:
            await super()._handle_client_session(reader, writer, client_session, handler, *args, **kwargs)
        finally:
            await self._member_left(client_session)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        # First step of amqtt's connect path: deliver what was queued while the client was
        # away, then mark the session so that the replay of retained messages that follows
        # (against every subscription in the broker) is skipped.
        # amqtt's own version sends the queued messages with RETAIN 1; they match an established
        # subscription, so MQTT wants RETAIN 0 [MQTT-3.3.1-9]. The rest is amqtt's code.
        handler = self._get_handler(session)
        if handler is not None:
            publishing = []
            while not session.retained_messages.empty():
                queued = await session.retained_messages.get()
                publishing.append(asyncio.ensure_future(
                    handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)))
            if publishing:
                await asyncio.wait(publishing)
        self._connecting.add(session.client_id)

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Session) -> None:
        if session.client_id in self._connecting:
            return
        await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _handle_message_delivery(self, client_session: Session, handler: Any, wait_deliver: Any) -> bool:
        message = wait_deliver.result()
        _published_qos.set(getattr(message, "qos", None))
        try:
            return await super()._handle_message_delivery(client_session, handler, wait_deliver)
        finally:
            _published_qos.set(None)

    async def _broadcast_message(self, session: Session | None, topic: str | None, data: Any,
                                 force_qos: int | None = None) -> None:
        published = force_qos if force_qos is not None else _published_qos.get()
        await self._broadcast_queue.put(_Broadcast(published, session=session, topic=topic, data=data))
        if topic is not None:  # amqtt's broadcast never matches $share/... filters: they are ours
            await self._deliver_shared(topic, data, published)

    async def _client_message_loop(self, client_session: Session, handler: Any) -> None:
        self._connecting.discard(client_session.client_id)
        await super()._client_message_loop(client_session, handler)
        # after the message amqtt's loop was handling when the client left, in their order
        await self._hand_on(client_session, handler, getattr(handler, "left_over", []))

    async def _hand_on(self, session: Session, handler: Any, messages: list[Any]) -> None:
        """Deliver PUBLISHes a client sent (and was confirmed) that amqtt's loop did not get to."""
        for message in messages:
            delivered = asyncio.get_running_loop().create_future()
            delivered.set_result(message)
            await self._handle_message_delivery(session, handler, delivered)

    async def _delete_session(self, client_id: str) -> None:
        # a new connection with clean session wipes the old session's queues, and with them what
        # the old connection published and was confirmed but amqtt had not handed on yet
        session, handler = self._sessions.get(client_id, (None, None))
        waiting = []
        while session is not None and not session.delivered_message_queue.empty():
            waiting.append(session.delivered_message_queue.get_nowait())
        await super()._delete_session(client_id)
        if session is not None:
            await self._hand_on(session, handler, waiting)

    async def _handle_disconnect(self, client_session: Session, handler: Any, disconnect_waiter: Any) -> None:
        # amqtt ends a client's loop at its DISCONNECT (or at the end of its connection): PUBLISHes
        # it had already acknowledged and not yet handed on were lost. Take them before anything
        # (the session monitor) clears the session's queues; they go on when the loop has ended.
        queue = client_session.delivered_message_queue
        if isinstance(handler, EmbeddedHandler):
            while not queue.empty():
                handler.left_over.append(queue.get_nowait())
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)


def broker_config(host: str, port: int, ws_port: int | None = None, tls: bool = False) -> dict[str, Any]:
    listeners: dict[str, Any] = {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}}
    if tls:  # the context itself comes from EmbeddedBroker._create_ssl_context
        listeners["default"].update(ssl=True, certfile="", keyfile="")
    if ws_port is not None:  # MQTT over WebSocket (ws://HOST:WS_PORT/, any path)
        listeners["websocket"] = {"type": "ws", "bind": f"{host}:{ws_port}", "max_connections": 0}
    return {"listeners": listeners, "plugins": {f"{OpenAuthPlugin.__module__}.{OpenAuthPlugin.__qualname__}": {}}}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _why(exc: BaseException, host: str, port: int) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is already taken: stop what uses it or choose another with --port"
        if isinstance(cause, OSError) and cause.errno == errno.EACCES:
            return f"not allowed to listen on {host}:{port}: choose a port above 1023 with --port"
        if isinstance(cause, OSError) and cause.errno == errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this machine: choose another with --host"
        if isinstance(cause, socket.gaierror):
            return f"cannot find the host {host!r}: give an address of this machine with --host"
        cause = cause.__cause__ or cause.__context__
    return f"the embedded broker cannot start on {host}:{port}: {exc}"


@dataclass(frozen=True)
class BrokerSettings:
    """What ``mqtt-connector broker`` and :class:`BrokerThread` let a user choose beyond the address."""

    #: seconds a new connection has to send its CONNECT
    connect_timeout: float = CONNECT_TIMEOUT
    #: what the broker holds for each client at most
    queue_limits: QueueLimits = field(default_factory=QueueLimits)
    #: Mosquitto password file: clients must give a user name and password from it
    password_file: Path | None = None
    #: with a password file, still admit clients without a user name
    allow_anonymous: bool = False
    #: Mosquitto ACL file: what each client may read and write
    acl_file: Path | None = None
    #: TLS: the broker's certificate and key (PEM); with ``ca_file``, clients need a certificate it signed
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None

    @property
    def anonymous_allowed(self) -> bool:
        return self.password_file is None or self.allow_anonymous


def _tls_context(settings: BrokerSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(settings.cert_file), str(settings.key_file) if settings.key_file else None)
        if settings.ca_file is not None:
            context.load_verify_locations(cafile=str(settings.ca_file))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(str(f) for f in (settings.cert_file, settings.key_file, settings.ca_file) if f)
        reason = (exc.strerror if not isinstance(exc, ssl.SSLError) and exc.strerror else
                  "not a PEM certificate with its key, or the key does not belong to it")
        raise AuthFileError(f"cannot use the TLS files {files}: {reason}") from None
    return context


def check_files(settings: BrokerSettings) -> None:
    """Read the password, ACL and TLS files now; AuthFileError names the first that cannot be used."""
    if settings.password_file is not None:
        Passwords(settings.password_file)
    if settings.acl_file is not None:
        Acl.load(settings.acl_file)
    if settings.cert_file is not None:
        _tls_context(settings)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond this machine


async def start_broker(host: str, port: int, ws_port: int | None = None,
                       settings: BrokerSettings | None = None) -> EmbeddedBroker:
    """Start the broker on the running event loop; raise BrokerError with a reason in words."""
    settings = settings or BrokerSettings()
    broker = EmbeddedBroker(broker_config(host, port, ws_port, tls=settings.cert_file is not None),
                            settings=settings)  # AuthFileError for a bad password, ACL or TLS file
    try:
        await broker.start()
    except Exception as exc:
        raise BrokerError(_why(exc, host, port)) from None
    log.debug("embedded broker listening on %s:%d", host, port)
    return broker


class BrokerThread:
    """The embedded broker on its own event loop in a background thread.

    For scripts, tests and the demo::

        with BrokerThread() as broker:      # a free port on 127.0.0.1
            ... broker.host, broker.port ...
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, websocket: bool = False,
                 **settings: Any) -> None:
        """``settings``: the fields of :class:`BrokerSettings`."""
        self.host = host
        self.settings = BrokerSettings(**settings)
        self.port = port if port is not None else free_port(host)
        #: With ``websocket=True``, the port of its MQTT-over-WebSocket listener (ws://host:ws_port/).
        self.ws_port = free_port(host) if websocket else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: EmbeddedBroker | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def broker(self) -> EmbeddedBroker:
        assert self._broker is not None, "the broker is not running"
        return self._broker

    def start(self, timeout: float = 10.0) -> BrokerThread:
        self._thread = threading.Thread(target=self._run, name=f"mqtt-broker-{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise BrokerError(f"the embedded broker did not start on {self.host}:{self.port} within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._broker = loop.run_until_complete(start_broker(self.host, self.port, self.ws_port, self.settings))
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        loop.run_forever()
        loop.run_until_complete(self._broker.shutdown())
        # amqtt leaves the tasks of connections still open running: end them before the loop
        # closes, or their coroutines fail later, wherever the garbage collector finds them
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=5))
        loop.close()

    def call(self, coro_factory: Any, timeout: float = 10.0) -> Any:
        """Run ``coro_factory()`` on the broker's loop and return its result (for tests)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro_factory(), self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> BrokerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str, port: int, settings: BrokerSettings | None = None) -> int:
    """``mqtt-connector broker``: run in the foreground until Ctrl-C or SIGTERM."""
    import signal
    import sys

    settings = settings or BrokerSettings()

    async def main() -> None:
        broker = await start_broker(host, port, settings=settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if settings.anonymous_allowed and not is_loopback(host):
            sys.stderr.write(f"warning: listening on {host}, beyond this machine, with anonymous access: anyone who "
                             "reaches it can publish and subscribe; give --password-file (and --acl-file)\n")
        if settings.acl_file is not None and settings.password_file is None:
            sys.stderr.write("warning: --acl-file without --password-file: user names are not checked, so any "
                             "client can claim any user's rights\n")
        scheme = "mqtts" if settings.cert_file else "mqtt"
        bound = broker.bound_port()  # the one chosen for --port 0
        print(f"embedded MQTT broker listening on {scheme}://{host}:{bound} (MQTT 3.1.1 only; Ctrl-C to stop)",
              flush=True)
        await stop.wait()
        sys.stderr.write("stopping the broker\n")
        await broker.shutdown()

    asyncio.run(main())
    return 0
