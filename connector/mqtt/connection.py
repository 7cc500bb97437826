"""One paho-mqtt client's life: connect, wait for CONNACK, reconnect, subscribe, close.

paho runs its network loop in its own thread (``loop_start``). Callbacks only record state
and hand messages over through an inbox (connector.mqtt.inbox); nothing user-supplied runs in paho's thread, so an
exception can never kill it.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from connector.mqtt.inbox import Inbox
from connector.mqtt.paho_client import PahoClient, Received
from connector.mqtt.tls import alert_text, tls_context, tls_failure, uses_tls, warn_if_insecure
from connector.sdk.errors import ConnectError

log = logging.getLogger("connector.mqtt")

# CONNACK refusals that the user can act on, with what to do (MQTT 3.1.1 3.2.2.3, MQTT 5 3.2.2.2).
_HINTS = {
    "Bad user name or password": "check the user name and password",
    "Not authorized": "check the user name and password, and the broker's access rules",
    "Identifier rejected": "use another client ID",
    "Client identifier not valid": "use another client ID",
    "Unsupported protocol version": "the broker does not speak this MQTT version",
    "Server unavailable": "the broker is not ready; try again later",
}

#: How many received messages may wait for the process before paho's thread waits too.
INBOX_SIZE = 10_000

#: MQTT 5 session expiry for a persistent session (clean_session off): never, as in MQTT 3.1.1.
SESSION_NEVER_EXPIRES = 0xFFFFFFFF

#: A connection the broker closes this soon after accepting it, right after it had closed the one
#: before it (which the broker accepted again at once), was taken over by another client with the
#: same client ID: each reconnect of the two takes the session from the other (MQTT 3.1.1 says
#: nothing to the client that loses it; Mosquitto just closes the socket). Unless a request of ours
#: was unanswered at both closes (see MqttConnection._taken_over).
TAKEOVER_WINDOW = 10.0

#: MQTT 5 DISCONNECT reason: another connection with the same client ID took the session.
SESSION_TAKEN_OVER = 0x8E

#: The largest SUBSCRIBE packet sent: a Listen's filters are split into packets of at most this
#: many bytes (or the broker's Maximum Packet Size when lower). Brokers limit packets (Mosquitto's
#: ``max_packet_size``, EMQX's ``max_packet_size``) and close the connection on a larger one;
#: 10,000 filters of 20 characters make a packet of about 230 KB.
SUBSCRIBE_PACKET_BYTES = 65_536


def subscribe_packets(subscriptions: list[tuple[str, int]], limit: int,
                      mqtt5: bool = False) -> list[list[tuple[str, int]]]:
    """``subscriptions`` split, in order, into SUBSCRIBE packets of at most ``limit`` bytes each
    (fixed header included); a filter too long to share a packet goes alone."""
    header = 2 + (1 if mqtt5 else 0)  # packet id; MQTT 5: the properties' length (no properties)
    packets: list[list[tuple[str, int]]] = []
    packet: list[tuple[str, int]] = []
    remaining = header
    for subscription in subscriptions:
        size = 2 + len(subscription[0].encode("utf-8")) + 1  # length, filter, options byte
        if packet and _packet_bytes(remaining + size) > limit:
            packets.append(packet)
            packet, remaining = [], header
        packet.append(subscription)
        remaining += size
    if packet:
        packets.append(packet)
    return packets


def _packet_bytes(remaining: int) -> int:
    """A packet's whole size from its remaining length: the type byte, the length's 1 to 4 bytes."""
    return 1 + (1 if remaining < 128 else 2 if remaining < 16_384 else 3 if remaining < 2_097_152 else 4) + remaining


def doubling(first: float, maximum: float, attempt: int) -> float:
    """The wait before retry ``attempt`` (0 for the first): ``first``, doubling, at most ``maximum``."""
    return min(maximum, first * 2 ** min(attempt, 30))


def backoff(first: float, maximum: float, attempt: int) -> float:
    """:func:`doubling`, drawn between half and all of it (jitter), so that many clients cut at
    once do not all come back at once."""
    delay = doubling(first, maximum, attempt)
    return random.uniform(delay / 2, delay)


def reason_text(reason: Any) -> str:
    """A reason code or error number as words."""
    if isinstance(reason, ReasonCode):
        return reason.getName()
    if isinstance(reason, int):
        return paho.error_string(reason)
    return str(reason)


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (checked by :func:`address_problem`) as ``(host, port)``."""
    host, _, port = address.rpartition(":")
    return host, int(port)


def address_problem(address: str) -> str | None:
    """Why a failover ``HOST:PORT`` cannot be connected to, or None (the schema checked its form)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"{address!r}: the port must be 1 to 65535"
    return host_problem(host)


def _space_or_control(text: str) -> str | None:
    """The first space or control character of ``text`` (none in a host name or a URL path)."""
    return next((char for char in text if char.isspace() or not char.isprintable()), None)


def host_problem(host: str) -> str | None:
    """Why ``host`` is no host name or address, or None (without asking the DNS)."""
    bad = _space_or_control(host)
    if bad is not None:
        return f"the host {host!r} contains U+{ord(bad):04X}: a host name has no spaces or control characters"
    try:
        host.encode("idna")  # what the resolver is given: each label at most 63 characters
    except UnicodeError as exc:
        return f"the host {host[:80]!r} is not a valid host name ({exc.__cause__ or exc})"
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a WebSocket path (it goes into the HTTP request line), or None."""
    bad = _space_or_control(path)
    if bad is not None:
        return f"the WebSocket path contains U+{ord(bad):04X}: a URL path has no spaces or control characters"
    return None


#: What a client ID template may hold, each filled in at connect.
CLIENT_ID_FIELDS = ("hostname", "pid", "random")


def expand_client_id(template: str) -> str:
    """``orders-{hostname}-{pid}`` -> ``orders-node7-4242``; ``{random}`` is 8 hex digits; ``{{``
    is a brace. Text without braces is returned as it is; a template :func:`client_id_problem`
    refuses is never given here."""
    if "{" not in template and "}" not in template:
        return template
    return template.format(hostname=socket.gethostname(), pid=os.getpid(), random=uuid.uuid4().hex[:8])


def client_id_problem(template: str) -> str | None:
    """Why a client ID template cannot be filled in, or the client ID it gives cannot be sent; None
    when all is well. Only the plain fields: a format spec such as ``{pid:>999999999}`` would
    build a string of any size, a conversion or ``{pid.real}`` reaches into Python."""
    import string

    from connector.mqtt.topics import TextError, check_string

    fields = ", ".join(f"{{{n}}}" for n in CLIENT_ID_FIELDS)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"the client ID {template[:80]!r} is not a valid template ({exc}): write '{{{{' for a brace"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in CLIENT_ID_FIELDS or spec or conversion:
            field = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            return (f"the client ID template names {field[:80]}: it may hold only {fields} (write '{{{{' "
                    "for a brace)")
    try:
        check_string(expand_client_id(template), "client ID")
    except TextError as exc:  # also after expansion: a host name may hold anything
        return str(exc)
    return None


def connection_problems(config: Mapping[str, Any]) -> list[str]:
    """The connection's rules its schema cannot say: ``"connection FIELD: sentence"`` each. Every
    string MQTT carries fits its 16-bit length and is text MQTT accepts; hosts and ports can be
    connected to; the client ID template is one."""
    from connector.mqtt.topics import TextError, check_binary, check_string, check_topic_name

    problems = []
    checks: list[tuple[str, Any, Any]] = [("host", config["host"], host_problem),
                                          ("client_id", config["client_id"], client_id_problem)]
    checks += [(f"failover/{i}", address, address_problem) for i, address in enumerate(config.get("failover", ()))]
    if config.get("transport") == "websockets":
        checks.append(("ws_path", config["ws_path"], path_problem))
    for name, value, problem in checks:
        found = problem(value)
        if found is not None:
            problems.append(f"connection {name}: {found}")
    texts = [("username", "user name", check_string), ("password", "password", check_binary),
             ("will_payload", "will payload", check_binary)]
    if config.get("will_topic"):
        texts.append(("will_topic", "will topic", lambda topic, _: check_topic_name(topic)))
    for name, what, check in texts:
        try:
            check(config[name], what)
        except TextError as exc:
            problems.append(f"connection {name}: {exc}")
    return problems


def _notify(callback: Any, *args: Any) -> None:
    """Call what the Listen asked to be told (in paho's thread): it must not kill that thread."""
    if callback is not None:
        try:
            callback(*args)
        except Exception:
            log.exception("connection callback failed")


class _Unreachable(ConnectError):
    """The broker cannot be reached (yet): worth trying again when waiting for it."""


class MqttConnection:
    """A connected paho client plus what Send and Listen need from it.

    Created connected by :meth:`open`; a context manager that disconnects on exit.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.host: str = config["host"]
        self.port: int = config["port"]
        #: Host and port, then the failover brokers: tried in turn.
        self.addresses = [(self.host, self.port), *(parse_address(a) for a in config.get("failover", ()))]
        self.client_id: str = expand_client_id(config["client_id"]) or f"mqtt-connector-{uuid.uuid4().hex[:12]}"
        self.mqtt5: bool = config.get("protocol") == "5"
        self.tls: bool = uses_tls(config)
        #: MQTT 5: mid -> the broker's reason for refusing a published message (PUBACK/PUBCOMP >= 0x80).
        self.refused: dict[int, str] = {}
        #: The largest packet the broker accepts: the configured max_packet_size, lowered by an MQTT 5
        #: broker's CONNACK Maximum Packet Size; None when neither sets one.
        self.max_packet_size: int | None = config.get("max_packet_size")
        #: MQTT 5: how many QoS 1/2 messages the broker takes unacknowledged (CONNACK Receive Maximum).
        self.receive_maximum: int | None = None
        self._tls_error: str | None = None
        self.inbox: Inbox[Received] = Inbox(INBOX_SIZE)
        self.subscriptions: list[tuple[str, int]] = []
        #: Called with [(filter, granted qos or None)] once every SUBACK of a subscription came.
        self.on_subscribed: Any = None
        self.on_up: Any = None  # called after every CONNACK that accepted the connection
        self.on_down: Any = None  # called with the reason when an accepted connection was lost
        self.closing = threading.Event()
        self._connack = threading.Event()
        self._connect_error: str | None = None
        self._connect_retryable = False
        self._ever_connected = False
        #: Set while connected (CONNACK accepted), cleared when the connection is lost.
        self.up = threading.Event()
        #: Since when the broker has not answered: the connection was lost (and not yet accepted
        #: again) or, connected, it stayed silent while a message waited; None while it answers.
        self.silent_since: float | None = None
        self._was_up = False  # whether the connection paho is about to report lost had been accepted
        #: Why the connection ended for good while in use (another client took the client ID).
        self.failure: str | None = None
        #: What uses the connection, for messages: "Send", or "Listen" (set by the Listen).
        self.role = "Send"
        self._connected_at = 0.0
        #: Whether the outage was announced (once a connection, by Send).
        self.announced = False
        self._kicked = False  # the last connection was closed by the broker and accepted again at once
        self._unanswered_at_kick: frozenset[Any] = frozenset()  # what was unanswered at that close
        self._lock = threading.Lock()
        self._sub_mids: dict[int, list[tuple[str, int]]] = {}  # SUBSCRIBE's id -> its filters
        #: The SUBSCRIBEs of the last subscription, in order: id -> what its SUBACK granted (None until then).
        self._sub_round: dict[int, list[tuple[str, int | None]] | None] = {}
        self._subscribed_on: int | None = None  # the client's connection the SUBSCRIBE went out on
        self._options: dict[str, Any] = {}
        self.client = self._make_client()

    def __repr__(self) -> str:  # never the password or the key passphrase
        return (f"MqttConnection({self.host}:{self.port}, client_id={self.client_id!r}, "
                f"MQTT {self.protocol_name}{', TLS' if self.tls else ''})")

    @property
    def window(self) -> int:
        """How many published messages may await confirmation: the configured window, never more
        than the broker's Receive Maximum (MQTT 5)."""
        configured: int = self.config["max_inflight"]
        return min(configured, self.receive_maximum) if self.receive_maximum else configured

    @property
    def protocol_name(self) -> str:
        return "5" if self.mqtt5 else "3.1.1"

    # -- set-up ------------------------------------------------------------------------------

    def _make_client(self) -> PahoClient:
        cfg = self.config
        client = PahoClient(
            CallbackAPIVersion.VERSION2,
            reconnect_delay=functools.partial(backoff, cfg["reconnect_delay"], cfg["reconnect_max_delay"]),
            client_id=self.client_id,
            clean_session=None if self.mqtt5 else cfg["clean_session"],  # MQTT 5: clean_start at connect
            protocol=paho.MQTTv5 if self.mqtt5 else paho.MQTTv311,
            manual_ack=True,  # a message is acknowledged only after the process accepted it (PahoClient.ack)
            transport=cfg.get("transport", "tcp"),
        )
        client.addresses = self.addresses
        if cfg.get("transport") == "websockets":
            client.ws_set_options(path=cfg["ws_path"])
        if cfg.get("will_topic"):  # published by the broker if this connection ends without DISCONNECT
            client.will_set(cfg["will_topic"], cfg["will_payload"].encode("utf-8"), cfg["will_qos"],
                            cfg["will_retained"])
        if cfg["username"]:
            client.username_pw_set(cfg["username"], cfg["password"] or None)
        if self.tls:
            try:
                client.tls_set_context(tls_context(cfg))
            except ValueError as exc:  # checked by connector_validate already; a file changed since
                raise ConnectError(str(exc)) from None
            if cfg.get("tls_insecure"):
                client.tls_insecure_set(True)
        client.connect_timeout = cfg["connect_timeout"]
        client.max_inflight_messages_set(cfg["max_inflight"])
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_socket_lost = self._socket_lost
        client.on_connect_fail = self._on_connect_fail
        client.on_messages = self._on_messages
        client.on_subscribe = self._on_subscribe
        if self.mqtt5:  # only MQTT 5 acks carry a reason; paho builds objects per message for this callback
            client.on_publish = self._on_publish
        client.on_pubrec_refused = self.refused.__setitem__
        client.on_log = self._on_log  # until the CONNACK: keeps the reason a TLS connection was closed
        if log.isEnabledFor(logging.DEBUG):
            client.enable_logger(logging.getLogger("connector.mqtt.paho"))
        return client

    def open(self) -> MqttConnection:
        """Connect and wait for the broker's CONNACK; raise ConnectError with the reason.

        With ``wait_for_broker`` > 0, a broker that cannot be reached yet (refused, unreachable,
        no answer, closed before accepting, 'Server unavailable': a cluster node electing leaders
        does all of these) is tried again, every failover address each round, with the reconnect
        backoff, the last round when the wait ends."""
        wait = self.config.get("wait_for_broker", 0)
        began = time.monotonic()
        attempt = 0
        while True:
            failures = []
            for host, port in self.addresses:  # the failover brokers in turn
                self.host, self.port = host, port
                try:
                    return self._open_once()
                except _Unreachable as exc:
                    failures.append(str(exc))
                    self._reset_attempt()
            error = failures[0] if len(failures) == 1 else "no broker can be reached: " + "; ".join(failures)
            left = began + wait - time.monotonic()
            if left <= 0:
                if wait:
                    error += f" (tried {attempt + 1} times in {time.monotonic() - began:.1f} s)"
                raise ConnectError(error)
            delay = min(left, backoff(self.config["reconnect_delay"], self.config["reconnect_max_delay"], attempt))
            log.warning("%s; trying again in %.1f s", error, delay)
            time.sleep(delay)
            attempt += 1

    def _reset_attempt(self) -> None:
        self.closing.clear()
        self._connack.clear()
        self._connect_error = None
        self._connect_retryable = False

    def _open_once(self) -> MqttConnection:
        where = f"{self.host}:{self.port}"
        timeout = self.config["connect_timeout"]
        log.debug("connecting to %s as %r (MQTT %s%s)", where, self.client_id, self.protocol_name,
                  ", TLS" if self.tls else "")
        if self.tls:
            warn_if_insecure(self.config, where)
        extra: dict[str, Any] = {}
        if self.mqtt5:
            extra["clean_start"] = self.config["clean_session"]
            expiry = self.config.get("session_expiry")
            if expiry is None and not self.config["clean_session"]:
                expiry = SESSION_NEVER_EXPIRES
            receive_maximum = self.config.get("receive_maximum")
            if expiry or receive_maximum:
                extra["properties"] = Properties(PacketTypes.CONNECT)
                if expiry:
                    extra["properties"].SessionExpiryInterval = expiry
                if receive_maximum:  # at most this many unacknowledged QoS 1/2 messages towards us
                    extra["properties"].ReceiveMaximum = receive_maximum
        try:
            self.client.connect(self.host, self.port, keepalive=self.config["keep_alive"], **extra)
        except ssl.SSLError as exc:
            raise ConnectError(tls_failure(exc, self.config, self.host, where)) from None
        except ssl.CertificateError as exc:  # paho's own host name check (only without check_hostname)
            raise ConnectError(f"TLS to {where} failed: {exc}") from None
        except ConnectionResetError if self.tls else ():
            raise ConnectError(f"TLS to {where} failed: the connection was reset during the TLS handshake: "
                               "is it a TLS port?") from None
        except socket.gaierror:
            raise ConnectError(f"cannot find the host {self.host!r}: check the host name") from None
        except ConnectionRefusedError:
            raise _Unreachable(f"connection refused by {where}: is the broker running, and is the port right?") from None
        except (TimeoutError, socket.timeout):
            raise _Unreachable(f"no answer from {where} within {timeout:g} s: check the host, port and firewall") from None
        except OSError as exc:
            raise _Unreachable(f"cannot reach {where}: {exc.strerror or exc}") from None
        self.client.loop_start()
        if not self._connack.wait(timeout):
            self._abort()
            if self.tls:
                hint = "is it an MQTT broker on a TLS port?"
            else:
                hint = "is it an MQTT broker on a plain (not TLS or WebSocket) port?"
            if self.mqtt5:
                hint += " Does it speak MQTT 5 (try protocol 3.1.1)?"
            raise _Unreachable(f"{where} accepted the {'TLS' if self.tls else 'TCP'} connection but sent no MQTT "
                               f"answer within {timeout:g} s: {hint}")
        if self._connect_error is not None:
            self._abort()
            if self._connect_retryable:
                raise _Unreachable(self._connect_error)
            raise ConnectError(self._connect_error)
        return self

    def _abort(self) -> None:
        self.closing.set()
        self.client.disconnect()
        self.client.loop_stop()

    def close(self) -> None:
        """Disconnect cleanly (a DISCONNECT packet, so no will message is sent) and stop paho's thread."""
        if self.closing.is_set():
            return
        self.closing.set()
        self.client.disconnect()
        self.client.loop_stop()
        log.debug("disconnected from %s:%s", self.host, self.port)

    def __enter__(self) -> MqttConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    # -- an absent broker --------------------------------------------------------------------

    def gives_up_at(self, patience: float) -> float | None:
        """When what waits for the broker stops waiting: ``patience`` seconds into an outage (or a
        silence), at once after the connection ended for good; None while the broker answers."""
        if self.failure is not None:
            return 0.0
        since = self.silent_since
        if since is None:
            return None
        if self.up.is_set() and self.client.heard_at >= since:  # it answered after all
            with self._lock:
                if self.silent_since == since:
                    self.silent_since = None
            return None
        return since + patience

    def gave_up(self, patience: float) -> bool:
        """Whether what waits for the broker has waited ``patience`` seconds of an outage already
        (see :meth:`gives_up_at`)."""
        at = self.gives_up_at(patience)
        return at is not None and at <= time.monotonic()

    def silent(self, since: float) -> None:
        """A message published at ``since`` (monotonic) got no answer, and nothing else came since."""
        with self._lock:
            if self.silent_since is None and self.client.heard_at < since:
                self.silent_since = since

    def unreachable(self) -> str:
        """The outage in words, for the documents it failed."""
        if self.failure is not None:
            return self.failure
        since = self.silent_since
        seconds = time.monotonic() - since if since is not None else 0.0
        if len(self.addresses) > 1:
            where = "no broker of " + ", ".join(f"{h}:{p}" for h, p in self.addresses) + " was reachable"
        else:
            where = f"the broker at {self.host}:{self.port} was unreachable"
        return f"{where} for {seconds:.0f} s" if seconds >= 10 else f"{where} for {seconds:.1f} s"

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, subscriptions: list[tuple[str, int]], options: Mapping[str, Any] | None = None) -> None:
        """Subscribe now and again after every reconnect (paho forgets nothing, the broker may).
        ``options`` (MQTT 5): ``no_local``, ``retain_as_published``, ``retain_handling`` for every filter."""
        with self._lock:
            self.subscriptions = list(subscriptions)
            self._options = dict(options or {})
            self._subscribed_on = None  # new subscriptions: sent again, on this connection too
        if self.connected:
            self._send_subscribe()

    def _send_subscribe(self) -> None:
        # All under the lock, up to recording each SUBSCRIBE's id: a SUBACK, handled in paho's
        # thread, can come before this thread runs again, and must find what it answers (else the
        # granted QoS is lost: no "granted QoS" warning). Once per connection: subscribe() and
        # _on_connect both come here when the connection is new.
        with self._lock:
            subs, connection = list(self.subscriptions), self.client.connection
            if not subs or self._subscribed_on == connection:
                return
            limit = min(SUBSCRIBE_PACKET_BYTES, self.max_packet_size or SUBSCRIBE_PACKET_BYTES)
            options = self._options
            self._sub_round = {}
            for packet in subscribe_packets(subs, limit, self.mqtt5):
                if self.mqtt5:  # MQTT 5 subscription options
                    rc, mid = self.client.subscribe([(f, SubscribeOptions(
                        qos, noLocal=options.get("no_local", False),
                        retainAsPublished=options.get("retain_as_published", False),
                        retainHandling=options.get("retain_handling", 0))) for f, qos in packet])
                else:
                    rc, mid = self.client.subscribe(packet)
                if rc != paho.MQTT_ERR_SUCCESS:
                    log.warning("subscribe failed: %s; retrying after the next reconnect", reason_text(rc))
                    return
                self._sub_mids[mid] = packet
                self._sub_round[mid] = None
            self._subscribed_on = connection

    # -- paho callbacks (paho's thread: record, never raise) ---------------------------------

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        try:  # Nagle's algorithm would hold small packets back by up to 40 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass

    def _on_log(self, client: paho.Client, userdata: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR and self.tls and "ssl" in text.lower():
            self._tls_error = alert_text(text)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        # Called before paho marks the message published, so Send sees the refusal when it looks.
        if reason.is_failure:  # a PUBREC's refusal, when there was one, says more than the PUBCOMP's
            self.refused.setdefault(mid, reason_text(reason))

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        client.on_log = None  # formatting every debug line costs time on a busy connection
        if reason.is_failure:
            words = reason_text(reason)
            hint = _HINTS.get(words)
            if words == "Unsupported protocol version" and self.mqtt5:
                hint = "the broker does not speak MQTT 5: use protocol 3.1.1"
            message = f"the broker at {self.host}:{self.port} refused the connection: {words}"
            self._connect_error = f"{message}: {hint}" if hint else message
            self._connect_retryable = words == "Server unavailable"
            self._kicked = False
            log.debug("CONNACK refused: %s", words)
            if self._ever_connected:
                log.warning("%s", self._connect_error)
            self._connack.set()
            if not self._ever_connected:
                self.closing.set()  # no "connection lost" warning for it
                client.disconnect()  # do not retry a refused first connection
            return
        self.host, self.port = client.address  # with failover, the broker now in use
        if self._ever_connected:
            log.warning("reconnected to %s:%s (session present: %s)", self.host, self.port, flags.session_present)
        announced = getattr(properties, "MaximumPacketSize", None)
        configured = self.config.get("max_packet_size")
        self.max_packet_size = min(filter(None, (announced, configured)), default=None)
        # paho ignores the Receive Maximum an MQTT 5 broker announces (and cannot change its own
        # window on an open connection); Send keeps at most `window` messages unconfirmed, so paho
        # never has more in flight. More would be a protocol error, and Mosquitto loses QoS 2 then.
        self.receive_maximum = getattr(properties, "ReceiveMaximum", None)
        client.new_session(continued=flags.session_present)
        with self._lock:  # a SUBACK for a SUBSCRIBE of the lost connection never comes
            self._sub_mids.clear()
        self._ever_connected = True
        self._connected_at = time.monotonic()
        self.silent_since = None
        self.announced = False
        self.up.set()
        self._connect_error = None
        self._connack.set()
        _notify(self.on_up)
        self._send_subscribe()

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._kicked = False

    def _socket_lost(self) -> None:
        # Before paho closes the socket of a lost connection: from then on a publish finds no
        # connection, so what waits for one must know at once (paho's on_disconnect comes later).
        self._was_up = self.up.is_set()
        self.up.clear()
        self._went_silent()

    def _went_silent(self) -> None:
        if self.closing.is_set():
            return
        with self._lock:
            if self.silent_since is None:
                self.silent_since = time.monotonic()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        was_up, self._was_up = self.up.is_set() or self._was_up, False
        self.up.clear()
        if self.closing.is_set():
            return
        self._went_silent()
        if was_up:
            _notify(self.on_down, reason_text(reason))
        if was_up and self._taken_over(reason):
            self.failure = (f"another client uses the client ID {self.client_id!r}: give each {self.role} its own "
                            "--client-id")
            log.debug("taken over (%s)", reason_text(reason))
            if self.role == "Send":  # a Send may be waiting for its input: say so now
                log.warning("another client took the client ID %r: the Send stops at its next document or the "
                            "end of its input", self.client_id)
            client.stop_reconnecting()  # the other client would only take it back
            return
        if not self._ever_connected and not self._connack.is_set():
            if self._tls_error is not None:
                self._connect_error = f"TLS to {self.host}:{self.port} failed: {self._tls_error}"
            elif self.tls:
                self._connect_error = (f"{self.host}:{self.port} closed the TLS connection before accepting it "
                                       f"({reason_text(reason)}): is it an MQTT broker on a TLS port?")
            else:
                self._connect_error = (
                    f"{self.host}:{self.port} closed the connection before accepting it ({reason_text(reason)}): "
                    "is it an MQTT broker on a plain (not TLS or WebSocket) port?"
                )
            # After the TLS handshake (paho's connect() completes it): a cluster node electing leaders,
            # a load balancer whose broker is not up yet, as well as no MQTT broker at all.
            self._connect_retryable = self._tls_error is None
            self._connack.set()
            client.disconnect()
            return
        log.warning("connection to %s:%s lost (%s); reconnecting", self.host, self.port, reason_text(reason))

    def _taken_over(self, reason: Any) -> bool:
        """Whether another connection with this client ID took the session (see TAKEOVER_WINDOW)."""
        if isinstance(reason, ReasonCode) and reason.value == SESSION_TAKEN_OVER:
            return True
        by_broker, self.client.closed_by_broker = self.client.closed_by_broker, False  # not for the next close
        with self._lock:
            unanswered = self.client.unanswered() | ({"subscribe"} if self._sub_mids else set())
        # A request unanswered at both closes is the likely cause: a broker that closes the connection
        # on what it does not support (NATS on a QoS 2 PUBLISH) closes it again when it is sent again.
        again = (self._kicked and time.monotonic() - self._connected_at < TAKEOVER_WINDOW
                 and not unanswered & self._unanswered_at_kick)
        log.debug("closed by the broker: %s; after a close by the broker: %s; connected %.2f s ago; unanswered: %d",
                  by_broker, self._kicked, time.monotonic() - self._connected_at, len(unanswered))
        self._kicked, self._unanswered_at_kick = by_broker, unanswered
        return by_broker and again

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any) -> None:
        with self._lock:
            subs = self._sub_mids.pop(mid, [])
            granted = [(f, None if r.is_failure else r.value) for (f, _), r in zip(subs, reasons)]
            rounds = self._sub_round
            if mid in rounds:
                rounds[mid] = granted
            whole = None if None in rounds.values() else [g for answer in rounds.values() for g in answer or ()]
        for (topic_filter, asked), (_, got) in zip(subs, granted):
            if got is None:
                log.error("the broker refused the subscription to %r", topic_filter)
            elif got < asked:
                log.warning("the broker granted QoS %d for %r where %d was asked", got, topic_filter, asked)
        if whole is not None and mid in rounds:
            _notify(self.on_subscribed, whole)

    def _on_messages(self, client: paho.Client, userdata: Any, messages: list[Received]) -> None:
        # The messages read together: the Listen is woken once for all of them (a batch). Blocks
        # paho's thread when the process falls far behind: TCP then slows the broker down.
        put = self.inbox.put_all
        while not put(messages, 0.5) and not self.closing.is_set():
            pass
