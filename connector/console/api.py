"""The console's API: the connectors and their forms, validation, check, Send, Listen.

Requests carry the connector's id, its connection and (for an operation) its operation, as the
page's forms hold them. Answers never hold a secret: the connection is never sent back, secret
fields (``writeOnly``) are masked in every message (:func:`connector.harness.logs.mask`), and the
SDK's own messages never show a secret's value.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from connector.console.forms import form_schemas
from connector.console.listening import KEEP, ConsoleListen
from connector.console.problems import field_errors
from connector.harness.logs import mask
from connector.sdk.errors import ConfigError, ConnectError, ConnectorError
from connector.sdk.validation import secret_fields

log = logging.getLogger("connector.console")

#: The largest request the console reads (typed text and uploaded files travel in it).
MAX_REQUEST_BYTES = 256 * 1024 * 1024
#: Seconds a Listen start waits for the endpoint to confirm its subscription before answering.
READY_WAIT = 30.0


class BadRequest(Exception):
    """A request the page would not send: 400 with this line."""


class ConsoleState:
    """The runtime the console runs operations with, and its one Listen."""

    def __init__(self, runtime: Any, connector_id: str | None) -> None:
        self.runtime = runtime
        self.first = connector_id
        self.listen: ConsoleListen | None = None
        self._listen_lock = threading.Lock()

    async def connectors(self, request: Request) -> Response:
        connectors = self.runtime.connectors
        listed = []
        for connector_id, manifest in connectors.manifests.items():
            entry: dict[str, Any] = {"id": connector_id, "name": manifest.name, "version": manifest.version,
                                     "description": manifest.description,
                                     "actions": {name: spec.get("title", name) for name, spec in manifest.actions.items()}}
            try:
                entry["forms"] = form_schemas(manifest)
            except ValueError as exc:
                entry["error"] = str(exc)
            listed.append(entry)
        first = self.first or self.runtime.default_connector
        return JSONResponse({"connectors": listed, "first": first, "keep": KEEP})

    async def _body(self, request: Request) -> tuple[str, dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_REQUEST_BYTES:
            raise BadRequest(f"the request is larger than {MAX_REQUEST_BYTES // 2**20} MiB")
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):
            raise BadRequest("the request is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("connector"), str):
            raise BadRequest("the request names no connector")
        connection, operation = body.get("connection", {}), body.get("operation")
        if not isinstance(connection, dict) or not (operation is None or isinstance(operation, dict)):
            raise BadRequest("the connection and the operation are JSON objects")
        connector_id = body["connector"]
        manifest = self.runtime.connectors.manifest(connector_id)  # not installed: PluginError
        from connector.harness.configs import remember_secrets

        remember_secrets(connection, secret_fields(manifest.connection_schema))
        return connector_id, connection, operation, body

    def _fields(self, connector_id: str) -> dict[str, list[str]]:
        manifest = self.runtime.connectors.manifest(connector_id)
        return {"connection": list(manifest.connection_schema.get("properties", {})),
                "operation": ["action", *manifest.operation_schema.get("properties", {})]}

    async def _answer(self, request: Request, run: Any) -> Response:
        """Read the request, run ``run(connector_id, connection, operation, body)`` in the thread
        pool, and answer its result, or the problem as the page shows it."""
        connector_id = None
        try:
            connector_id, connection, operation, body = await self._body(request)
            return JSONResponse(await run_in_threadpool(run, connector_id, connection, operation, body))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except ConfigError as exc:
            fields = self._fields(connector_id) if connector_id else {}
            errors = field_errors([mask(p) for p in exc.problems] or [mask(str(exc))], fields)
            return JSONResponse({"error": mask(str(exc)), "errors": errors}, status_code=422)
        except ConnectError as exc:
            return JSONResponse({"ok": False, "error": mask(str(exc))}, status_code=502)
        except ConnectorError as exc:  # a connector that is broken or not installed
            return JSONResponse({"error": mask(str(exc))}, status_code=400)
        except Exception as exc:  # a bug: one line here, the details in the log with --verbose
            log.debug("unexpected failure", exc_info=True)
            return JSONResponse({"error": mask(f"unexpected failure: {type(exc).__name__}: {exc}")}, status_code=500)

    async def validate(self, request: Request) -> Response:
        def run(connector_id: str, connection: dict[str, Any], operation: Any, body: Any) -> Any:
            action = operation.get("action") if isinstance(operation, dict) else None
            self.runtime.validate(connection, operation, action if isinstance(action, str) else None, connector_id)
            return {"ok": True}

        return await self._answer(request, run)

    async def check(self, request: Request) -> Response:
        def run(connector_id: str, connection: dict[str, Any], operation: Any, body: Any) -> Any:
            return {"ok": True, "line": mask(self.runtime.check(connection, connector_id))}

        return await self._answer(request, run)

    async def send(self, request: Request) -> Response:
        def run(connector_id: str, connection: dict[str, Any], operation: Any, body: Any) -> Any:
            names, payloads = _documents(body.get("documents"))
            if operation is None:
                raise BadRequest("a Send needs its operation")
            results = []
            for result in self.runtime.send(connection, operation, iter(payloads), connector_id=connector_id):
                item = {"index": result.index, "name": names[result.index], "status": result.status.value}
                if result.error is not None:
                    item["error"] = mask(result.error)
                if getattr(result, "note", None):
                    item["note"] = mask(result.note)
                results.append(item)
            sent = sum(1 for r in results if r["status"] == "SUCCESS")
            where = self.runtime.describe_operation(operation, connector_id)
            summary = f"sent {sent} of {len(results)} document{'s' if len(results) != 1 else ''}"
            return {"results": results, "summary": summary + (f" {mask(where)}" if where else "")}

        return await self._answer(request, run)

    async def listen_start(self, request: Request) -> Response:
        def run(connector_id: str, connection: dict[str, Any], operation: Any, body: Any) -> Any:
            if operation is None:
                raise BadRequest("a Listen needs its operation")
            with self._listen_lock:
                if self.listen is not None and self.listen.ended is None:
                    raise BadRequest("a Listen is running: stop it first")
                self.listen = ConsoleListen(self.runtime, connector_id, connection, operation,
                                            refuse=body.get("refuse") is True)
                listen = self.listen
            try:
                listen.background.wait_ready(READY_WAIT)
            except TimeoutError:
                return {"ok": True, "line": "waiting for the subscription to be confirmed"}
            except BaseException:  # it could not start: once it says so, the next one may
                listen.wait_ended(READY_WAIT)
                raise
            where = listen.description
            return {"ok": True, "line": f"listening {mask(where)}" if where else "listening"}

        return await self._answer(request, run)

    async def listen_stop(self, request: Request) -> Response:
        listen = self.listen
        if listen is None:
            return JSONResponse({"ok": True, "was_running": False, "line": "no Listen is running"})
        running = listen.ended is None
        listen.stop()
        await run_in_threadpool(listen.wait_ended, 30.0)
        return JSONResponse({"ok": True, "was_running": running, "line": "stopped"})

    async def listen_events(self, request: Request) -> Response:
        listen = self.listen
        if listen is None:
            return JSONResponse({"error": "no Listen was started"}, status_code=404)
        after = request.headers.get("last-event-id", "0")
        return StreamingResponse(listen.events(int(after) if after.isdigit() else 0),
                                 media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    def shutdown(self) -> None:
        if self.listen is not None:
            self.listen.stop()
            self.listen.wait_ended(10.0)


def _documents(given: Any) -> tuple[list[str], list[bytes]]:
    """The documents of a Send as the page gives them: ``{"text": ...}`` one document,
    ``{"lines": ...}`` one per line (its newline removed), ``{"base64": ..., "name": ...}`` a
    file's bytes; with the name each result shows."""
    if not isinstance(given, list) or not given:
        raise BadRequest("a Send needs at least one document: type text, give lines or choose files")
    names: list[str] = []
    payloads: list[bytes] = []
    for item in given:
        if not isinstance(item, dict):
            raise BadRequest("each document is a JSON object")
        if isinstance(item.get("text"), str):
            names.append("the text")
            payloads.append(_utf8(item["text"]))
        elif isinstance(item.get("lines"), str):
            lines = list(_lines(item["lines"]))
            names += [f"line {n}" for n in range(1, len(lines) + 1)]
            payloads += lines
        elif isinstance(item.get("base64"), str):
            try:
                payloads.append(base64.b64decode(item["base64"], validate=True))
            except (binascii.Error, ValueError):
                raise BadRequest("a file's content is not valid base64") from None
            names.append(f"file {str(item.get('name', '?'))!r}")
        else:
            raise BadRequest("a document is text, lines or a file")
    if not payloads:
        raise BadRequest("no documents: the lines are empty")
    return names, payloads


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry and UTF-8 cannot
        raise BadRequest("the text is not valid Unicode (a lone surrogate)") from None


def _lines(text: str) -> Iterator[bytes]:
    pieces = text.split("\n")
    if pieces and pieces[-1] == "":
        pieces.pop()  # the newline that ends the last line
    for piece in pieces:
        yield _utf8(piece)
