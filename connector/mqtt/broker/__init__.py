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
  amqtt listens for the end of the connection only after that retry got its acknowledgements: a
  DISCONNECT, closed socket or takeover meanwhile went unnoticed; our handler notes it from the start.

* Confirmed PUBLISHes of a client that leaves: amqtt ends the client's loop at its DISCONNECT, and
  wipes the session's queues when the same client ID connects again with clean session, losing
  PUBLISHes it had acknowledged and not yet handed on; they are handed on, in order.

Added: shared subscriptions ($share/GROUP/FILTER, connector/mqtt/broker/shared.py), which amqtt lacks;
and the defences amqtt lacks against misbehaving clients:

* Keep alive [MQTT-3.1.2-24]: a client that sends no packet for one and a half times its keep alive
  is closed, and its will published; a connection that has not sent its CONNECT within
  ``connect_timeout`` seconds is closed.
* Malformed packets close the connection (connector/mqtt/broker/guard.py).
* What is queued for each client is bounded (connector/mqtt/broker/queue.py).

Not fixed (see docs/embedded-broker.md): no MQTT 5.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import socket
import threading
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter, WebSocketsReader, WebSocketsWriter
from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import Action
from amqtt.errors import AMQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED, UNACCEPTABLE_PROTOCOL_VERSION, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from connector.mqtt.broker.auth import READ, WRITE, Acl, Passwords
from connector.mqtt.broker.guard import FramingReader, Malformed, PacketGuard
from connector.mqtt.broker.handler import EmbeddedHandler, KeepInflightHandler, abort_connection
from connector.mqtt.broker.queue import held, room_offline
from connector.mqtt.broker.settings import BrokerSettings, check_files, tls_context
from connector.mqtt.broker.shared import SharedSubscriptions
from connector.mqtt.topics import split_shared
from connector.sdk.addresses import is_loopback

__all__ = ["BrokerError", "BrokerSettings", "BrokerThread", "EmbeddedBroker", "KeepInflightHandler", "check_files",
           "free_port", "serve", "start_broker"]

log = logging.getLogger("connector.mqtt.broker")


class BrokerError(Exception):
    """The embedded broker cannot start; the message says why, in words."""


class Refused(Exception):
    """A CONNECT refused by the password file: answered with CONNACK 5 (not authorized)."""


class OpenAuthPlugin(BaseAuthPlugin):
    """Admits every client, anonymous or not, and keeps its session as the client asked."""

    async def authenticate(self, *, session: Session) -> bool | None:
        return True


# The QoS of the PUBLISH being handled by the current client's task (amqtt does not pass it on).
_published_qos: contextvars.ContextVar[int | None] = contextvars.ContextVar("published_qos", default=None)


class _Broadcast(dict):  # type: ignore[type-arg]
    """amqtt reads the delivery QoS as ``broadcast.get("qos", subscription_qos)``: answer the lower."""

    def __init__(self, published_qos: int | None, **items: Any) -> None:
        super().__init__(**items)
        self.published_qos = published_qos

    def get(self, key: str, default: Any = None) -> Any:
        if key == "qos" and self.published_qos is not None and isinstance(default, int):
            return min(self.published_qos, default)
        return super().get(key, default)


class EmbeddedBroker(SharedSubscriptions, Broker):
    """amqtt's broker with the fixes described in this module's docstring, and shared subscriptions."""

    def __init__(self, *args: Any, settings: BrokerSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connecting: set[str] = set()
        self._connections: dict[str, tuple[Any, asyncio.Event]] = {}  # client ID -> its handler, ended
        self._shared_init()
        settings = settings or BrokerSettings()
        self.connect_timeout = settings.connect_timeout
        self.queue_limits = settings.queue_limits
        self.allow_anonymous = settings.anonymous_allowed
        self.passwords = Passwords(settings.password_file) if settings.password_file else None
        self.acl = Acl.load(settings.acl_file) if settings.acl_file else None
        self._ssl = tls_context(settings) if settings.cert_file else None
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
        plain = split_shared(topic)[1] if subscribing else topic
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
            abort_connection(writer)
            raise AMQTTError("no CONNECT in time") from None
        except Malformed as exc:  # logged by the guard
            if getattr(reader, "connect_level", 4) not in (None, 4):
                # amqtt reads an MQTT 5 CONNECT as 3.1.1 and may find it malformed: say what it is
                await ConnackPacket.build(0, UNACCEPTABLE_PROTOCOL_VERSION).to_stream(writer)
                await writer.close()
            abort_connection(writer)
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
        ended = await self._take_over(client_session.client_id, handler)
        try:
            await super()._handle_client_session(reader, writer, client_session, handler, *args, **kwargs)
        finally:
            ended.set()
            if self._connections.get(client_session.client_id, (None,))[0] is handler:
                del self._connections[client_session.client_id]
            await self._member_left(client_session)

    async def _take_over(self, client_id: str, handler: Any) -> asyncio.Event:
        """Close the connection that holds ``client_id``, if one does [MQTT-3.1.4-2], and wait until
        amqtt is done with it. amqtt left it open when the new one asked for a clean session (two
        clients shared the ID), and for a persistent session the old connection's end marked the
        session disconnected under the new one."""
        old = self._connections.get(client_id)
        ended = asyncio.Event()
        self._connections[client_id] = (handler, ended)
        if old is not None:
            log.debug("client %r connected again: closing its older connection", client_id)
            old_handler, old_ended = old
            await old_handler.handle_connection_closed()
            await old_handler.stop()
            try:
                await asyncio.wait_for(old_ended.wait(), 5.0)
            except TimeoutError:
                log.warning("the older connection of client %r did not end within 5 s", client_id)
        return ended

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


#: amqtt and the libraries it runs on log tracebacks for conditions the broker reports itself in
#: one line: they are heard only with debug logging (``--verbose``).
_CHATTY_LIBRARIES = ("amqtt", "transitions", "websockets", "asyncio")


def _quiet_libraries() -> None:
    """Set amqtt's (and its libraries') log levels from the root logger's, as the command line
    set it before the broker starts: with debug logging, amqtt's INFO and the rest's DEBUG; else
    only their CRITICAL lines."""
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    if verbose:
        logging.getLogger("amqtt").setLevel(logging.INFO)


async def start_broker(host: str, port: int, ws_port: int | None = None,
                       settings: BrokerSettings | None = None) -> EmbeddedBroker:
    """Start the broker on the running event loop; raise BrokerError with a reason in words."""
    _quiet_libraries()
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
