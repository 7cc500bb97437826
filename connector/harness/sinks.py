"""Where a Listen's process puts documents. A sink is any callable taking a Document;
raising refuses the document (it is then not acknowledged to the broker).

A sink that also has ``write(document)`` (take it, raise to refuse) and ``flush()`` (make every
written document durable, raise if that failed) is written in batches: the runtime writes the
documents that arrived together, flushes once, and only then are they acknowledged."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import IO, Any

from connector.sdk.documents import Document, text_or_base64, document_from_json, document_to_json

__all__ = ["CollectingSink", "JsonLinesSink", "Sink", "document_from_json", "document_to_json"]

Sink = Callable[[Document], None]


#: One encoder for every line: ``json.dumps(..., ensure_ascii=False)`` builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False).encode
#: A batch's lines go to the stream once they hold this many characters, before the flush.
_WRITE_THROUGH = 1 << 20


class JsonLinesSink:
    """Writes each document as one JSON line; a document counts as accepted only once flushed.

    Called per document it writes and flushes; in a batch (``write`` each, then ``flush``) it
    flushes once for the batch.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        # A batch's lines, written to the stream at once by flush(): one system call per batch
        # rather than one per 8 KiB, each of which hands the GIL to paho's busy thread.
        self._lines: list[str] = []
        self._pending = 0  # characters in _lines

    def write(self, document: Document) -> None:
        # document_to_json without the copy of the properties, which only correlation_data needs
        text, encoding = text_or_base64(document.payload)
        properties = document.properties
        if isinstance(properties.get("correlation_data"), (bytes, bytearray)):
            properties = document_to_json(document)["properties"]
        line = _encode({"payload": text, "encoding": encoding, "properties": properties}) + "\n"
        self._lines.append(line)
        self._pending += len(line)
        if self._pending > _WRITE_THROUGH:  # large documents: bounded memory, still flushed only by flush()
            self._write_lines()

    def _write_lines(self) -> None:
        lines, self._lines, self._pending = self._lines, [], 0
        if lines:
            self.stream.write("".join(lines))

    def flush(self) -> None:
        self._write_lines()
        self.stream.flush()

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
