"""Where a Listen's process puts documents. A sink is any callable taking a Document;
raising refuses the document (it is then not acknowledged to the broker).

A sink that also has ``write(document)`` (take it, raise to refuse) and ``flush()`` (make every
written document durable, raise if that failed) is written in batches: the runtime writes the
documents that arrived together, flushes once, and only then are they acknowledged. An
:class:`~connector.harness.output.OutputError` from either means the output itself failed
(closed, full): its ``documents`` went out and are acknowledged, the rest are not, and the Listen
stops. A sink with ``attach(stopping, closed)`` is told when the Listen stops, and how to say
that its reader went away."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any

from connector.harness.output import FdOutput, OutputError, as_output
from connector.sdk.documents import Document, document_from_json, document_line, document_to_json

__all__ = ["CollectingSink", "JsonLinesSink", "Sink", "document_from_json", "document_to_json"]

Sink = Callable[[Document], None]


#: A batch's lines go to the output once they hold this many bytes, before the flush.
_WRITE_THROUGH = 1 << 20


class JsonLinesSink:
    """Writes each document as one JSON line in UTF-8; a document counts as accepted only once
    every byte of its line went to the output.

    ``output`` is a file descriptor, a stream with one (``sys.stdout``: written through its
    descriptor, whatever ``PYTHONUNBUFFERED``, ``PYTHONIOENCODING`` or the locale say), or a stream
    without one (``io.StringIO``). Called per document it writes it; in a batch (``write`` each,
    then ``flush``) it writes the batch at once. When the output fails part way, ``flush`` (or
    ``write``) raises :class:`~connector.harness.output.OutputError` whose ``documents`` counts the
    documents of the batch that went out whole: only these may be acknowledged.
    """

    def __init__(self, output: Any, byte_properties: Collection[str] = ()) -> None:
        self.output = as_output(output)
        #: The document properties that carry bytes (the connector manifest's ``byte_properties``).
        self.byte_properties = tuple(byte_properties)
        # A batch's lines, written at once by flush(): one system call per batch rather than one
        # per document, each of which hands the GIL to paho's busy thread.
        self._lines: list[bytes] = []
        self._pending = 0  # bytes in _lines
        self._done = 0  # documents of this batch already written (a batch over _WRITE_THROUGH)
        self._reader_gone: Callable[[], None] | None = None  # see attach()

    def attach(self, stopping: threading.Event, closed: Callable[[], None]) -> None:
        """Called by the runtime: a write blocked on a reader that does not read gives up once
        ``stopping`` is set, and ``closed()`` is called as soon as a pipe's reader went away."""
        if isinstance(self.output, FdOutput):
            self.output.stopping = stopping
            self._reader_gone = closed

    def write(self, document: Document) -> None:
        line = document_line(document, self.byte_properties)
        self._lines.append(line)
        self._pending += len(line)
        if self._pending > _WRITE_THROUGH:  # large documents: bounded memory
            self._write_lines()

    def _write_lines(self) -> None:
        lines, self._lines, self._pending = self._lines, [], 0
        if not lines:
            return
        try:
            self.output.write(b"".join(lines) if len(lines) > 1 else lines[0])
        except OutputError as exc:
            whole, end = 0, 0
            for line in lines:  # the documents whose every byte went out
                end += len(line)
                if end > exc.written:
                    break
                whole += 1
            exc.documents, self._done = self._done + whole, 0
            raise
        self._done += len(lines)
        if self._reader_gone is not None and isinstance(self.output, FdOutput):
            # watched from the first write on, when there is a reader to lose
            self.output.watch_reader(self._reader_gone, self.output.stopping or threading.Event())
            self._reader_gone = None

    def flush(self) -> None:
        self._write_lines()
        self._done = 0

    def __call__(self, document: Document) -> None:
        self.write(document)
        self.flush()


class CollectingSink:
    """Keeps the documents in memory (tests, scripts); ``wait_for(n)`` blocks until n arrived."""

    def __init__(self) -> None:
        self.documents: list[Document] = []
        self._cond = threading.Condition()

    def __call__(self, document: Document) -> None:
        with self._cond:
            self.documents.append(document)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.documents) >= count, timeout)

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self.documents))
