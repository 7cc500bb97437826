"""How a Listen hands documents to the process: :class:`ProcessListener` (the SDK's Listener,
writing to a sink, counting, stopping) and :class:`ListenOutcome` (how the Listen ended)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from connector.harness.output import OutputError
from connector.harness.sinks import Sink
from connector.sdk.documents import Document
from connector.sdk.listener import Listener

log = logging.getLogger("connector.harness")


@dataclass
class ListenOutcome:
    """How a Listen ended."""

    #: Documents the process accepted (each acknowledged to the endpoint).
    accepted: int
    #: "count", "timeout", "stopped" (asked to, e.g. Ctrl-C), "done" (the connector ended it as
    #: the operation asks, e.g. every retained message read), "refused" (the process failed
    #: for a document every attempt and there was no dead-letter topic), "closed" (the output's
    #: reader went away, e.g. ``listen | head -1``) or "output" (the output failed: full disk...).
    reason: str
    #: The process's error when reason is "refused", the output's when "output".
    error: str | None = None
    #: Documents the process failed for every attempt, moved to the dead-letter topic.
    dead_lettered: int = 0
    #: Repeats of documents handed over before, dropped by the connector (a duplicate window).
    repeats_dropped: int = 0
    #: Documents the connector left out as the operation asks, by reason (acknowledged).
    skipped: dict[str, int] = field(default_factory=dict)
    #: Why the connector ended the Listen itself (reason "done"), in its words.
    done: str | None = None


class ProcessListener(Listener):
    """Hands documents to a sink; stops after ``count`` accepted documents."""

    def __init__(self, sink: Sink, count: int | None = None,
                 on_listening: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.sink = sink
        self.count = count
        self.accepted = 0
        #: Documents handed over by the connector (a document handed over again, e.g. retried, once).
        self.received = 0
        self._last_received: Document | None = None
        self.ready = threading.Event()
        self.reason = "stopped"
        self.dead_letters = 0
        self.repeats = 0
        self.skips: dict[str, int] = {}
        self.done_because: str | None = None
        #: Documents handed over again after the process refused them (each time).
        self.retried = 0
        #: Connections won back after one was lost.
        self.reconnects = 0
        #: Since when (``time.monotonic()``) the Listen has had no connection: from its start until
        #: the first one is up, and from each loss until the next; None while connected.
        self.down_since: float | None = time.monotonic()
        #: Why the last connection was lost (None while connected, or before the first one).
        self.down_because: str | None = None
        #: Whether the endpoint confirmed the subscriptions on the connection now up.
        self.subscribed = False
        #: True while the runtime opens the connection (and waits for the broker, retrying).
        self.opening = False
        #: When (``time.monotonic()``) the last document came from the connector; None before the first.
        self.last_received_at: float | None = None
        self._was_up = False
        self._on_listening = on_listening
        attach = getattr(sink, "attach", None)
        if attach is not None:  # a sink that may block on its reader, or lose it (see sinks)
            attach(self.stopping, lambda: self.stop_for("closed"))

    def _received(self, documents: list[Document]) -> None:
        if documents and documents[-1] is not self._last_received:  # a retry hands a tail of the same batch
            self.received += len(documents)
            self._last_received = documents[-1]
            self.last_received_at = time.monotonic()

    def submit(self, document: Document) -> bool:
        self._received([document])
        try:
            self.sink(document)
        except OutputError as exc:
            return self._output_failed(exc) > 0
        except Exception as exc:
            self._refuse(document, exc)
            return False
        self._took(1)
        return True

    def submit_batch(self, documents: list[Document]) -> int:
        """Write the batch to a sink with ``write``/``flush`` and flush once; the answer counts
        only documents that were flushed (a failed flush: 0, nothing is acknowledged)."""
        sink = self.sink
        write, flush = getattr(sink, "write", None), getattr(sink, "flush", None)
        if write is None or flush is None:
            return super().submit_batch(documents)
        self._received(documents)
        if self.count is not None:
            documents = documents[:max(0, self.count - self.accepted)]
        if not documents:
            return 0
        written = 0
        try:
            for document in documents:
                if self.stopping.is_set():
                    break
                write(document)
                written += 1
        except OutputError as exc:
            return self._output_failed(exc)
        except Exception as exc:
            self._refuse(document, exc)
        try:
            flush()
        except OutputError as exc:
            return self._output_failed(exc)
        except Exception as exc:
            self._refuse(documents[0], exc)
            return 0
        self._took(written)
        return written

    def _output_failed(self, exc: OutputError) -> int:
        """The output took only ``exc.documents`` of the batch whole: those are accepted, the rest
        not, and the Listen stops at once (another attempt would not find the output better)."""
        if exc.kind == "failed":
            self.error = str(exc)
            self.stop_for("output")
        elif exc.kind == "closed":
            self.stop_for("closed")
        self._took(exc.documents)
        return exc.documents

    def _took(self, accepted: int) -> None:
        self.accepted += accepted
        if self.count is not None and self.accepted >= self.count:
            self.reason = "count"
            self.stop()

    def _refuse(self, document: Document, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        log.debug("the process refused a document: %s", self.error)

    def dead_lettered(self, document: Document, error: str, attempts: int, destination: str) -> None:
        self.dead_letters += 1
        log.warning("the process failed %d time%s for a message (%s): moved to %r", attempts,
                    "s" if attempts > 1 else "", error, destination)

    def repeat_dropped(self, document: Document) -> None:
        self.repeats += 1
        self.last_received_at = time.monotonic()

    def skipped(self, document: Document, reason: str) -> None:
        self.skips[reason] = self.skips.get(reason, 0) + 1
        self.last_received_at = time.monotonic()

    def retrying(self, document: Document, error: str, attempt: int, wait: float) -> None:
        self.retried += 1

    @contextmanager
    def while_opening(self) -> Iterator[None]:
        """:attr:`opening` is True inside."""
        self.opening = True
        try:
            yield
        finally:
            self.opening = False

    def connected(self) -> None:
        if self._was_up and self.down_since is not None:  # won back after a loss (not the first connection)
            self.reconnects += 1
        self._was_up = True
        self.down_since = self.down_because = None

    def disconnected(self, reason: str) -> None:
        self.subscribed = False
        self.down_because = reason
        if self.down_since is None:
            self.down_since = time.monotonic()

    def done(self, reason: str) -> None:
        if not self.stopping.is_set():
            self.done_because = reason
        self.stop_for("done")

    def gave_up(self, document: Document, error: str, attempts: int) -> None:
        self.error = error
        self.stop_for("refused")

    def listening(self, description: str) -> None:
        self.subscribed = True
        self.ready.set()
        if self._on_listening is not None:
            self._on_listening(description)

    def outcome(self) -> ListenOutcome:
        """How the Listen ended (once it did)."""
        error = self.error if self.reason in ("refused", "output") else None
        return ListenOutcome(self.accepted, self.reason, error, self.dead_letters, self.repeats, dict(self.skips),
                             self.done_because)

    def stop_for(self, reason: str) -> None:
        if not self.stopping.is_set():
            self.reason = reason
            self.stop()
