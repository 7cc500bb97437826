"""One paho-mqtt client's life: connect, wait for CONNACK, reconnect, subscribe, close.

paho runs its network loop in its own thread (``loop_start``). Callbacks only record state
and hand messages over through a queue; nothing user-supplied runs in paho's thread, so an
exception can never kill it.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

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


def reason_text(reason: Any) -> str:
    """A reason code or error number as words."""
    if isinstance(reason, ReasonCode):
        return reason.getName()
    if isinstance(reason, int):
        return paho.error_string(reason)
    return str(reason)


class MqttConnection:
    """A connected paho client plus what Send and Listen need from it.

    Created connected by :meth:`open`; a context manager that disconnects on exit.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.host: str = config["host"]
        self.port: int = config["port"]
        self.client_id: str = config["client_id"] or f"mqtt-connector-{uuid.uuid4().hex[:12]}"
        self.inbox: queue.Queue[paho.MQTTMessage] = queue.Queue(INBOX_SIZE)
        self.subscriptions: list[tuple[str, int]] = []
        self.on_subscribed: Any = None  # called with [(filter, granted qos or None)] after every SUBACK
        self.closing = threading.Event()
        self._connack = threading.Event()
        self._connect_error: str | None = None
        self._ever_connected = False
        self._lock = threading.Lock()
        self._sub_mids: dict[int, list[tuple[str, int]]] = {}
        self.client = self._make_client()

    def __repr__(self) -> str:  # never the password
        return f"MqttConnection({self.host}:{self.port}, client_id={self.client_id!r})"

    # -- set-up ------------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        cfg = self.config
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=cfg["clean_session"],
            protocol=paho.MQTTv311,
            manual_ack=True,  # a message is acknowledged only after the process accepted it
        )
        if cfg["username"]:
            client.username_pw_set(cfg["username"], cfg["password"] or None)
        client.connect_timeout = cfg["connect_timeout"]
        client.max_inflight_messages_set(cfg["max_inflight"])
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if log.isEnabledFor(logging.DEBUG):
            client.enable_logger(logging.getLogger("connector.mqtt.paho"))
        return client

    def open(self) -> MqttConnection:
        """Connect and wait for the broker's CONNACK; raise ConnectError with the reason."""
        where = f"{self.host}:{self.port}"
        timeout = self.config["connect_timeout"]
        log.debug("connecting to %s as %r", where, self.client_id)
        try:
            self.client.connect(self.host, self.port, keepalive=self.config["keep_alive"])
        except socket.gaierror:
            raise ConnectError(f"cannot find the host {self.host!r}: check the host name") from None
        except ConnectionRefusedError:
            raise ConnectError(f"connection refused by {where}: is the broker running, and is the port right?") from None
        except (TimeoutError, socket.timeout):
            raise ConnectError(f"no answer from {where} within {timeout:g} s: check the host, port and firewall") from None
        except OSError as exc:
            raise ConnectError(f"cannot reach {where}: {exc.strerror or exc}") from None
        self.client.loop_start()
        if not self._connack.wait(timeout):
            self._abort()
            raise ConnectError(
                f"{where} accepted the TCP connection but sent no MQTT answer within {timeout:g} s: "
                "is it an MQTT broker on a plain (not TLS or WebSocket) port?"
            )
        if self._connect_error is not None:
            self._abort()
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

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, subscriptions: list[tuple[str, int]]) -> None:
        """Subscribe now and again after every reconnect (paho forgets nothing, the broker may)."""
        with self._lock:
            self.subscriptions = list(subscriptions)
        if self.connected:
            self._send_subscribe()

    def _send_subscribe(self) -> None:
        with self._lock:
            subs = list(self.subscriptions)
        if not subs:
            return
        rc, mid = self.client.subscribe(subs)
        if rc == paho.MQTT_ERR_SUCCESS:
            with self._lock:
                self._sub_mids[mid] = subs
        else:
            log.warning("subscribe failed: %s; retrying after the next reconnect", reason_text(rc))

    # -- paho callbacks (paho's thread: record, never raise) ---------------------------------

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        try:  # Nagle's algorithm would hold small packets back by up to 40 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            words = reason_text(reason)
            hint = _HINTS.get(words)
            message = f"the broker at {self.host}:{self.port} refused the connection: {words}"
            self._connect_error = f"{message}: {hint}" if hint else message
            log.debug("CONNACK refused: %s", words)
            if self._ever_connected:
                log.warning("%s", self._connect_error)
            self._connack.set()
            if not self._ever_connected:
                client.disconnect()  # do not retry a refused first connection
            return
        if self._ever_connected:
            log.warning("reconnected to %s:%s (session present: %s)", self.host, self.port, flags.session_present)
        self._ever_connected = True
        self._connect_error = None
        self._connack.set()
        self._send_subscribe()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if self.closing.is_set():
            return
        if not self._ever_connected and not self._connack.is_set():
            self._connect_error = (
                f"{self.host}:{self.port} closed the connection before accepting it ({reason_text(reason)}): "
                "is it an MQTT broker on a plain (not TLS or WebSocket) port?"
            )
            self._connack.set()
            client.disconnect()
            return
        log.warning("connection to %s:%s lost (%s); reconnecting", self.host, self.port, reason_text(reason))

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any) -> None:
        with self._lock:
            subs = self._sub_mids.pop(mid, [])
        granted = [(f, None if r.is_failure else r.value) for (f, _), r in zip(subs, reasons)]
        for (topic_filter, asked), (_, got) in zip(subs, granted):
            if got is None:
                log.error("the broker refused the subscription to %r", topic_filter)
            elif got < asked:
                log.warning("the broker granted QoS %d for %r where %d was asked", got, topic_filter, asked)
        callback = self.on_subscribed
        if callback is not None:
            try:
                callback(granted)
            except Exception:  # the runtime's callback must not kill paho's thread
                log.exception("subscription callback failed")

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # Blocks paho's thread when the process falls far behind: TCP then slows the broker down.
        while not self.closing.is_set():
            try:
                self.inbox.put(message, timeout=0.5)
                return
            except queue.Full:
                continue
