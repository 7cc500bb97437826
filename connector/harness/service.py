"""A Listen run as a service: health checks, and metrics when asked, over HTTP (``listen
--health-port``), from the counts and the state its :class:`~connector.harness.listening.ProcessListener`
keeps.

``GET /healthz``: 200 while the Listen is connected, or has been without a connection for less than
the threshold (connecting at start, or reconnecting); 503 once longer. A supervisor restarts a
Listen that fails it. ``GET /readyz``: 200 once the endpoint confirmed the subscriptions on the
connection now up; 503 before, while disconnected and once the Listen stops. ``GET /metrics``
(``--metrics``): the Prometheus text format (:mod:`connector.harness.metrics`). Anything else: 404.

The server is the standard library's threaded HTTP server, on a thread of its own, started before
the Listen connects (so that it answers while the Listen waits for its broker) and closed when the
Listen ended.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connector.harness.listening import ProcessListener
from connector.harness.parser import DEFAULT_HEALTH_THRESHOLD
from connector.sdk.errors import ConfigError, ConnectError

log = logging.getLogger("connector.harness.service")

#: An HTTP client that sends nothing for this long is closed (it would hold a thread).
REQUEST_TIMEOUT = 10.0
#: How often the server's thread looks whether it must stop.
POLL_SECONDS = 0.2

#: (status, body, content type) of an answer.
Answer = tuple[int, bytes, str]
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class ServiceOptions:
    """``--health-port`` (0: a free one), ``--health-host``, ``--health-threshold``, ``--metrics``."""

    port: int
    host: str = "127.0.0.1"
    threshold: float = DEFAULT_HEALTH_THRESHOLD
    metrics: bool = False


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def health(listener: ProcessListener, threshold: float, now: float | None = None) -> tuple[bool, str]:
    """Whether the Listen is healthy (connected, or not for less than ``threshold`` seconds), and why."""
    since = listener.down_since
    if since is None:
        return True, "connected"
    down = (time.monotonic() if now is None else now) - since
    what = f"disconnected for {_seconds(down)} ({listener.down_because})" if listener.down_because else \
        f"not connected yet after {_seconds(down)}"
    if down < threshold:
        return True, f"{what}; unhealthy after {threshold:g} s"
    return False, f"{what}, longer than the threshold of {threshold:g} s"


def readiness(listener: ProcessListener) -> tuple[bool, str]:
    """Whether the Listen takes messages (subscribed on the connection now up), and why not."""
    if listener.stopping.is_set():
        return False, "stopping"
    if listener.down_since is not None:
        return False, f"disconnected ({listener.down_because})" if listener.down_because else "not connected yet"
    if not listener.subscribed:
        return False, "not subscribed yet"
    return True, "subscribed"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT

    def version_string(self) -> str:  # not the Python version
        return "connector-listen"

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        route = self.server.routes.get(self.path.partition("?")[0])
        if route is None:
            status, text, kind = 404, f"not found: try {', '.join(self.server.routes)}\n".encode(), TEXT
        else:
            try:
                status, text, kind = route()
            except Exception as exc:  # a broken collector must not take the server down
                log.exception("answering %s failed", self.path)
                status, text, kind = 500, f"error: {type(exc).__name__}\n".encode(), TEXT
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(text)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if body:
                self.wfile.write(text)
        except OSError:  # the client went away: nothing to tell it
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's name)
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow client never holds the exit up
    routes: dict[str, Callable[[], Answer]]

    def handle_error(self, request: Any, client_address: Any) -> None:  # no traceback on stderr
        log.debug("a health-check connection from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _text(ok: bool, why: str) -> Answer:
    return (200 if ok else 503), f"{'ok' if ok else 'failing'}: {why}\n".encode(), TEXT


class ServiceServer:
    """The health (and metrics) endpoint of one Listen: :meth:`start`, then :meth:`close`."""

    def __init__(self, listener: ProcessListener, options: ServiceOptions,
                 metrics: Callable[[], Answer] | None = None) -> None:
        self.listener, self.options = listener, options
        self.routes: dict[str, Callable[[], Answer]] = {
            "/healthz": lambda: _text(*health(listener, options.threshold)),
            "/readyz": lambda: _text(*readiness(listener)),
        }
        if metrics is not None:
            self.routes["/metrics"] = metrics
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.options.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> ServiceServer:
        """Listen on the port and serve from a thread of its own. A port taken (or not ours to
        take) is a :class:`ConnectError` (exit 3), a host that is not one a :class:`ConfigError`."""
        host, port = self.options.host, self.options.port
        kind = _Server6 if ":" in host else _Server
        try:
            self._server = kind((host, port), _Handler)
        except socket.gaierror:
            raise ConfigError(f"--health-host {host!r}: no such host or address on this machine") from None
        except OSError as exc:
            where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
            if exc.errno == errno.EADDRINUSE:
                reason = "the port is taken: give another --health-port, or 0 for a free one"
            elif exc.errno == errno.EADDRNOTAVAIL:
                reason = "the address is not one of this machine's: check --health-host"
            elif exc.errno == errno.EACCES:
                reason = "not allowed (ports below 1024 need privileges): give a port from 1024 up"
            else:
                reason = exc.strerror or str(exc)
            raise ConnectError(f"cannot serve health checks on {where}: {reason}") from None
        self._server.routes = self.routes
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_SECONDS,),
                                        name="health", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close the port (answers under way are finished by their threads)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
