"""A Listen whose documents are taken one by one by the caller's thread, acknowledged only
after the caller came back for the next one (the tap: after it wrote and flushed the RECORD).

The harness's Runtime runs the Listen on a thread of its own with a sink that hands each
document over and waits. :meth:`ListenPipe.documents` yields them; when the caller asks for the
next one, the previous one was written, so the sink returns and the connector acknowledges it.
If the caller stops early (an error, a closed output), the document it held is refused: the
connector does not acknowledge it and the endpoint keeps it (e.g. in a persistent session).

The Listen ends after ``count`` documents, ``timeout`` seconds, or ``idle`` seconds without one
(counted from when the endpoint confirmed it listens, then from the last document).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from connector.harness.runtime import ListenOutcome, ProcessListener, Runtime
from connector.sdk.documents import Document

log = logging.getLogger("connector.singer")


class _Abandoned(Exception):
    """The caller stopped taking documents: this one was not written."""

    def __str__(self) -> str:
        return "the tap stopped before this message was written"


class _Handoff:
    """The sink: hands one document to the caller and waits until it was written."""

    def __init__(self) -> None:
        self.items: queue.Queue[tuple[Document, threading.Event]] = queue.Queue(1)
        self.last = time.monotonic()
        self.abandoned = threading.Event()

    def __call__(self, document: Document) -> None:
        self.last = time.monotonic()
        written = threading.Event()
        self.items.put((document, written))
        while not written.wait(0.1):
            if self.abandoned.is_set():
                raise _Abandoned()
        self.last = time.monotonic()


class ListenPipe:
    """Runs one Listen in the background and yields its documents to the calling thread."""

    def __init__(self, runtime: Runtime, connector_id: str, connection: Mapping[str, Any],
                 operation: Mapping[str, Any], *, count: int | None, timeout: float | None,
                 idle: float | None) -> None:
        self._runtime, self._connector_id = runtime, connector_id
        self._connection, self._operation = connection, operation
        self._timeout, self._idle = timeout, idle
        self._handoff = _Handoff()
        self.listener = ProcessListener(self._handoff, count, on_listening=self._listening)
        self.listening_on: str | None = None
        self.outcome: ListenOutcome | None = None
        self.error: BaseException | None = None

    def _listening(self, description: str) -> None:
        self.listening_on = description
        self._handoff.last = time.monotonic()
        log.info("listening on %s", description)

    def _run(self) -> None:
        try:
            self.outcome = self._runtime.listen(self._connection, self._operation, self._handoff,
                                                timeout=self._timeout, listener=self.listener,
                                                connector_id=self._connector_id)
        except BaseException as exc:
            self.error = exc
        finally:
            self.listener.stopping.set()

    def _watch_idle(self) -> None:
        assert self._idle is not None
        while not self.listener.stopping.wait(0.05):
            if self._handoff.items.empty() and time.monotonic() - self._handoff.last >= self._idle:
                self.listener.stop_for("idle")

    def documents(self) -> Iterator[Document]:
        """Each document, in order; the previous one is acknowledged when the next is asked for.
        Re-raises what ended the Listen (ConnectError...) once all were taken."""
        thread = threading.Thread(target=self._run, name="singer-listen", daemon=True)
        thread.start()
        if self._idle is not None:
            threading.Thread(target=self._watch_idle, name="singer-idle", daemon=True).start()
        written: threading.Event | None = None
        try:
            while True:
                if written is not None:
                    written.set()
                    written = None
                try:
                    document, written = self._handoff.items.get(timeout=0.05)
                except queue.Empty:
                    if not thread.is_alive() and self._handoff.items.empty():
                        break
                    continue
                yield document
        finally:
            self._handoff.abandoned.set()  # a document still held was not written: not acknowledged
            self.listener.stop()
            thread.join(30)
        if self.error is not None:
            raise self.error
