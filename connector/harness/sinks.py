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

from connector.harness.recordsink import RecordSink
from connector.sdk.documents import Document, document_from_json, document_line, document_to_json

__all__ = ["CollectingSink", "JsonLinesSink", "Sink", "document_from_json", "document_to_json"]

Sink = Callable[[Document], None]


class JsonLinesSink(RecordSink):
    """Writes each document as one JSON line in UTF-8; a document counts as accepted only once
    every byte of its line went to the output.

    ``output`` is a file descriptor, a stream with one (``sys.stdout``: written through its
    descriptor, whatever ``PYTHONUNBUFFERED``, ``PYTHONIOENCODING`` or the locale say), or a stream
    without one (``io.StringIO``). Called per document it writes it; in a batch (``write`` each,
    then ``flush``) it writes the batch at once: one system call per batch rather than one per
    document, each of which hands the GIL to paho's busy thread. When the output fails part way,
    ``flush`` (or ``write``) raises :class:`~connector.harness.output.OutputError` whose
    ``documents`` counts the documents of the batch that went out whole: only these may be
    acknowledged.
    """

    def __init__(self, output: Any, byte_properties: Collection[str] = ()) -> None:
        #: The document properties that carry bytes (the connector manifest's ``byte_properties``).
        self.byte_properties = tuple(byte_properties)
        properties = self.byte_properties
        super().__init__(output, lambda document: document_line(document, properties))


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
