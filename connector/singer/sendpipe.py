"""One Send for a whole target run, fed record by record, with STATE held back until it is safe.

The connector reads documents lazily and keeps at most its in-flight window of them unconfirmed
(``window`` on the connection it opened, as the harness's outbox reads it), so the records read
from standard input are handed over through a queue of that size: the input is paced by the
endpoint. The Results come back in order on a thread of their own.

A STATE message goes through the same queue, behind the records read before it, and is passed on
(written to standard output) only once every one of those records got SUCCESS: for MQTT QoS 1 or
2, once the broker confirmed it. After a record failed, no later STATE is passed on: Meltano then
never records progress past a record that did not reach the endpoint. A record the target could
not turn into a document (a template it cannot fill) fails in its place in the same order.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from connector.harness.runtime import Runtime
from connector.sdk.documents import Document, Result

log = logging.getLogger("connector.singer")

_END = object()
#: When the connection has no ``window``: how many documents wait in the queue at most.
DEFAULT_WINDOW = 20


class _Runtime(Runtime):
    """The harness's Runtime, keeping the connection a Send opened (to read its ``window``)."""

    opened: Any = None

    def _open(self, connector: Any, connection: dict[str, Any]) -> Any:  # type: ignore[override]
        self.opened = Runtime._open(connector, connection)
        return self.opened


class SendPipe:
    """Sends records as documents through one Send; passes STATE on once it is safe."""

    def __init__(self, connector_id: str, connection: Mapping[str, Any], operation: Mapping[str, Any],
                 write_state: Callable[[dict[str, Any]], None], runtime: Runtime | None = None) -> None:
        self._write_state = write_state
        self._runtime = _Runtime(runtime.connectors if runtime is not None else None)
        # Opens the connection now: a ConnectError or ConfigError raises here, before any record.
        self._results = self._runtime.send(connection, operation, self._documents(), connector_id)
        self.window = max(1, int(getattr(self._runtime.opened, "window", DEFAULT_WINDOW) or DEFAULT_WINDOW))
        self._queue: queue.Queue[Any] = queue.Queue(self.window)
        self._seq = 0
        self._inflight: deque[tuple[int, int, str]] = deque()  # (seq, record number, stream) of each document
        self._states: deque[tuple[int, dict[str, Any]]] = deque()
        self._first_failure: float = float("inf")  # the seq of the first record that failed
        self.failures: list[tuple[int, str, str]] = []  # (record number, stream, error)
        self.records = 0
        self.states_dropped = 0
        self.succeeded = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="singer-send", daemon=True)
        self._thread.start()

    # The reading side (the target's thread)

    def record(self, stream: str, document: Document | None, error: str | None = None) -> None:
        """Hand over the next record's document (or, with ``error``, the reason it has none)."""
        number = self.records
        self.records += 1
        self._put(("doc", document, number, stream) if document is not None else ("fail", error, number, stream))

    def state(self, state: dict[str, Any]) -> None:
        """A STATE message read after the records handed over so far."""
        self._put(("state", state))

    def finish(self) -> None:
        """No more records: wait until every one has its Result; re-raise what ended the Send."""
        self._put(_END)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """End the Send without raising (after an error of the target's own)."""
        if self._thread.is_alive():
            try:
                self._queue.put(_END, timeout=1)
            except queue.Full:
                pass
            self._thread.join(5)

    def _put(self, item: Any) -> None:
        if item is not _END:
            self._seq += 1
            item = (self._seq, *item)
        while True:
            if not self._thread.is_alive():  # the Send ended early: why
                if self.error is not None:
                    raise self.error
                raise RuntimeError("the connector stopped reading documents before the input ended")
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    # The Send's side (its own thread)

    def _documents(self) -> Iterator[Document]:
        while True:
            self._release_states()
            item = self._queue.get()
            if item is _END:
                return
            seq, kind = item[0], item[1]
            if kind == "doc":
                self._inflight.append((seq, item[3], item[4]))
                yield item[2]
            elif kind == "fail":
                self._failed(seq, item[3], item[4], item[2])
            else:
                self._states.append((seq, item[2]))

    def _run(self) -> None:
        try:
            for result in self._results:
                self._settle(result)
        except BaseException as exc:  # e.g. ConnectError: the connection ended for good
            self.error = exc
        finally:
            self._release_states()

    def _settle(self, result: Result) -> None:
        seq, number, stream = self._inflight.popleft()
        if result.ok:
            self.succeeded += 1
        else:
            self._failed(seq, number, stream, f"{result.status.value}: {result.error}")
        self._release_states()

    def _failed(self, seq: int, number: int, stream: str, error: str) -> None:
        if self._first_failure == float("inf"):
            log.error("record %d (stream %r) failed: no STATE is passed on after it", number + 1, stream)
        self._first_failure = min(self._first_failure, seq)
        self.failures.append((number, stream, error))
        log.error("record %d (stream %r): %s", number + 1, stream, error)

    def _release_states(self) -> None:
        """Pass on the latest STATE whose records all got SUCCESS; drop those after a failure."""
        ready = None
        while self._states and not (self._inflight and self._inflight[0][0] < self._states[0][0]):
            seq, state = self._states.popleft()
            if seq > self._first_failure:
                self.states_dropped += 1
                continue
            ready = state
        if ready is not None:
            self._write_state(ready)
