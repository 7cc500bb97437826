"""``<prog> console``: serve the console on this machine until Ctrl-C (:func:`serve`).

It binds 127.0.0.1 by default and prints the URL to open, which holds a random access token
(as Jupyter does); every request without it is refused (403). ``--host`` beyond loopback prints
a warning: anyone who reaches the port and has the URL can run the connectors from it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import secrets
import socket
import sys
from collections.abc import Iterator
from typing import Any

from connector.sdk.network import is_loopback
from connector.sdk.errors import ConfigError, ConnectError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port); ConnectError when taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host!r}: {exc.strerror}") from None
    family = infos[0][0]
    try:
        return socket.create_server((host, port), family=family, backlog=64)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConnectError(f"port {port} on {host} is already taken: stop what uses it or choose another "
                               "with --port") from None
        raise ConnectError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None


def url_for(host: str, port: int, token: str = "") -> str:
    """The URL a browser on this machine opens (a wildcard address is reached on loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(runtime: Any, host: str, port: int, connector_id: str | None = None, browser: bool = True,
          out: Any = None) -> int:
    """Run the console until Ctrl-C or SIGTERM; 0 when it was stopped so."""
    import uvicorn

    from connector.console.app import create_app  # imports Starlette: only now

    out = out or sys.stdout
    sock = bind(host, port)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(32)
    app = create_app(runtime, token, f"console_token_{port}", connector_id)
    url = url_for(host, port, token)
    if not is_loopback(host):
        sys.stderr.write(f"warning: the console listens on {host}, beyond this machine: anyone who reaches port "
                         f"{port} with the URL's token can run the connectors with the connections typed in\n")
    out.write(f"console at {url} (Ctrl-C to stop)\n")
    out.flush()
    if browser:
        _open_browser(url)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2,
                            log_level=logging.getLogger().level or logging.WARNING)
    server = _server_class()(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    sys.stderr.write("console stopped\n")
    return 0


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, except that Ctrl-C and SIGTERM are the console's normal end (exit 0,
        as the broker's): uvicorn raises the signal again once it has shut down."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                getattr(self, "_captured_signals", []).clear()

    return Server


def _open_browser(url: str) -> None:
    import webbrowser

    try:
        webbrowser.open(url, new=2)
    except Exception:  # no browser here (a server, a container): the printed URL is enough
        logging.getLogger("connector.console").debug("no browser opened", exc_info=True)
