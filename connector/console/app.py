"""The console's web application (:func:`create_app`): the page, its static files, and the API it
calls, behind the access token (:class:`TokenGate`).

Every operation goes through the harness's :class:`~connector.harness.runtime.Runtime`: the same
validation, the same connectors, the same results as the command line. Blocking work (checks,
Sends, waiting for a Listen's subscription) runs in Starlette's thread pool; a Listen runs in a
thread of its own (:mod:`connector.console.listening`).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from connector.console import api

STATIC = Path(__file__).parent / "static"
#: Sent with every answer: no framing, no referrer (the first URL holds the token), scripts and
#: styles only from the console itself (the form library sets inline styles).
HEADERS = {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                      "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
           "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "Cache-Control": "no-store"}
FORBIDDEN = "403 Forbidden: open the console with the URL it printed when it started (it holds the access token)\n"


class TokenGate:
    """Lets through only requests that show the token: in the query (``?token=...``), or in the
    cookie set when the page was first opened with it (the page then reloads without it in its URL).
    Everything else is 403. The cookie is HttpOnly and SameSite=Strict: another site's page cannot
    use it."""

    def __init__(self, app: ASGIApp, token: str, cookie: str) -> None:
        self.app, self.token, self.cookie = app, token.encode(), cookie

    def _valid(self, given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode("utf-8", "replace"), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self._valid(request.cookies.get(self.cookie)):
            await self.app(scope, receive, _with_headers(send))
            return
        if self._valid(request.query_params.get("token")):
            if request.method == "GET" and scope["path"] == "/":
                response: Response = RedirectResponse("/", status_code=303, headers=HEADERS)
                response.set_cookie(self.cookie, self.token.decode(), httponly=True, samesite="strict")
                await response(scope, receive, send)
                return
            await self.app(scope, receive, _with_headers(send))
            return
        await PlainTextResponse(FORBIDDEN, status_code=403, headers=HEADERS)(scope, receive, send)


def _with_headers(send: Send) -> Send:
    async def sending(message: Any) -> None:
        if message["type"] == "http.response.start":
            present = {k.decode().lower() for k, _ in message.get("headers", [])}
            message["headers"] = list(message.get("headers", [])) + [
                (k.lower().encode(), v.encode()) for k, v in HEADERS.items() if k.lower() not in present]
        await send(message)

    return sending


def create_app(runtime: Any, token: str, cookie: str = "console_token", connector_id: str | None = None) -> ASGIApp:
    """The console for ``runtime``'s connectors; ``connector_id`` is picked first in the page."""
    state = api.ConsoleState(runtime, connector_id)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    routes = [Route("/", index),
              Route("/api/connectors", state.connectors),
              Route("/api/validate", state.validate, methods=["POST"]),
              Route("/api/check", state.check, methods=["POST"]),
              Route("/api/send", state.send, methods=["POST"]),
              Route("/api/listen", state.listen_start, methods=["POST"]),
              Route("/api/listen/stop", state.listen_stop, methods=["POST"]),
              Route("/api/listen/events", state.listen_events),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(state.shutdown)  # a running Listen ends with the server

    app = Starlette(routes=routes, exception_handlers={404: _not_found}, lifespan=lifespan)
    app.state.console = state
    return TokenGate(app, token, cookie)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"no such page: {quote(request.url.path)}"}, status_code=404)
