"""The console's Listen: one at a time, run by the harness's Runtime in a thread
(:meth:`~connector.harness.runtime.Runtime.listen_in_background`); each document becomes a row
the page shows, streamed as server-sent events. Only the last :data:`KEEP` rows are kept (here
and in the page), so a busy topic cannot grow either without bound."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

from connector.harness.logs import mask
from connector.sdk.documents import Document, json_properties, text_or_base64

#: The rows kept: the page says so.
KEEP = 200
#: The longest payload preview, in bytes (the size is shown too).
PREVIEW_BYTES = 4096
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0


def row(seq: int, document: Document, byte_properties: Collection[str], accepted: bool) -> dict[str, Any]:
    """What the page shows of a document: a preview of its payload as text (UTF-8) or hex, its
    size, its properties, and whether the process accepted it (then it is acknowledged)."""
    payload = document.payload
    shown = payload[:PREVIEW_BYTES]
    text, encoding = text_or_base64(shown)
    if encoding != "utf-8":
        text = shown.hex(" ")
    properties = json_properties(document.properties, byte_properties)
    return {"seq": seq, "preview": text, "encoding": "text" if encoding == "utf-8" else "hex",
            "size": len(payload), "truncated": len(payload) > PREVIEW_BYTES,
            "properties": json.loads(json.dumps(properties, default=str)), "acknowledged": accepted}


class ConsoleListen:
    """A Listen started from the page: its rows, its state, and the event streams watching it."""

    def __init__(self, runtime: Any, connector_id: str, connection: Mapping[str, Any],
                 operation: Mapping[str, Any], refuse: bool = False) -> None:
        self.byte_properties = runtime.manifest(connector_id).byte_properties
        self.description = runtime.describe_operation(operation, connector_id)
        self.refuse = refuse
        self.rows: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.seq = 0
        self.ended: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.background = runtime.listen_in_background(connection, operation, self._take, connector_id=connector_id)
        threading.Thread(target=self._watch, name="console-listen-end", daemon=True).start()

    def _take(self, document: Document) -> None:
        """The sink: keep the row; refuse the document when the page asked to (then it is not
        acknowledged, and the connector retries it or moves it as the operation says)."""
        with self._lock:
            self.seq += 1
            self.rows.append(row(self.seq, document, self.byte_properties, not self.refuse))
            self._changed.notify_all()
        self._notify()
        if self.refuse:
            raise RuntimeError("refused in the console")

    def _watch(self) -> None:
        try:
            self.background.thread.join()
            outcome = self.background.join(0)
            ended: dict[str, Any] = {"reason": outcome.reason, "accepted": outcome.accepted, "error": outcome.error,
                                     "dead_lettered": outcome.dead_lettered, "skipped": outcome.skipped}
        except Exception as exc:  # a lost connection, a refusal by the endpoint: its one line
            ended = {"reason": "failed", "error": mask(str(exc))}
        with self._lock:
            self.ended = ended
            self._changed.notify_all()
        self._notify()

    def stop(self) -> None:
        self.background.stop()

    def wait_ended(self, timeout: float) -> bool:
        """Block until the Listen ended and said how (``ended``); whether it did in time."""
        with self._lock:
            return self._changed.wait_for(lambda: self.ended is not None, timeout)

    def wait_rows(self, count: int, timeout: float) -> bool:
        """Block until ``count`` documents arrived in all (or the Listen ended); whether they did."""
        with self._lock:
            self._changed.wait_for(lambda: self.seq >= count or self.ended is not None, timeout)
            return self.seq >= count

    def _notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that stream's loop is closed: it went away
                pass

    def snapshot(self, after: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        with self._lock:
            return [r for r in self.rows if r["seq"] > after], self.ended

    async def events(self, after: int = 0) -> AsyncIterator[str]:
        """The event stream: every row after ``after`` (at most the last :data:`KEEP`), then each
        new one as it comes, then ``end`` with how the Listen ended."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        waiter = (loop, event)
        with self._lock:
            self._waiters.add(waiter)
        try:
            while True:
                event.clear()
                rows, ended = self.snapshot(after)
                for item in rows:
                    after = item["seq"]
                    yield f"id: {after}\nevent: row\ndata: {json.dumps(item, ensure_ascii=False)}\n\n"
                if ended is not None:
                    yield f"event: end\ndata: {json.dumps(ended, ensure_ascii=False)}\n\n"
                    return
                try:
                    await asyncio.wait_for(event.wait(), KEEPALIVE)
                except asyncio.TimeoutError:
                    yield ": still listening\n\n"
        finally:
            with self._lock:
                self._waiters.discard(waiter)
