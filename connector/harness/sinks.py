"""Where a Listen's process puts documents. A sink is any callable taking a Document;
raising refuses the document (it is then not acknowledged to the broker)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import IO, Any

from connector.sdk.documents import Document

Sink = Callable[[Document], None]


def _text_or_base64(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def document_to_json(document: Document) -> dict[str, Any]:
    """The contract's JSON form: payload as text when it is UTF-8, else base64."""
    payload, encoding = _text_or_base64(document.payload)
    properties = dict(document.properties)
    if isinstance(properties.get("correlation_data"), (bytes, bytearray)):
        properties["correlation_data"] = _text_or_base64(bytes(properties["correlation_data"]))[0]
    return {"payload": payload, "encoding": encoding, "properties": properties}


def document_from_json(line: dict[str, Any]) -> Document:
    """The inverse of :func:`document_to_json`."""
    if line.get("encoding", "utf-8") == "base64":
        payload = base64.b64decode(line["payload"])
    else:
        payload = line["payload"].encode("utf-8")
    return Document(payload, dict(line.get("properties", {})))


class JsonLinesSink:
    """Writes each document as one JSON line and flushes it before it counts as accepted."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, document: Document) -> None:
        self.stream.write(json.dumps(document_to_json(document), ensure_ascii=False) + "\n")
        self.stream.flush()


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
