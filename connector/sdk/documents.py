"""Documents flow between the process and a connector; a Result reports one document's fate."""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """The outcome of one input document (the Boomi connector SDK's three)."""

    #: The endpoint took the document (for MQTT QoS 1/2: the broker confirmed it).
    SUCCESS = "SUCCESS"
    #: The endpoint refused this document (a failing reason code, an invalid topic, too large);
    #: sending it again unchanged will fail again.
    APPLICATION_ERROR = "APPLICATION_ERROR"
    #: The document's fate is unknown or it could not be sent (lost connection, timeout).
    FAILURE = "FAILURE"


@dataclass(slots=True)
class Document:
    """A payload (bytes, exact) and its properties (names declared in the connector's manifest)."""

    payload: bytes
    properties: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, payload: bytes | str, **properties: Any) -> Document:
        """A document from text (encoded as UTF-8) or bytes."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return cls(bytes(payload), dict(properties))

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (raises UnicodeDecodeError for binary payloads)."""
        return self.payload.decode("utf-8")


@dataclass(slots=True, frozen=True)
class Result:
    """Exactly one per input document, in input order."""

    index: int
    status: Status
    error: str | None = None
    #: Anything else a person should know about it (e.g. confirmed by an earlier run).
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCESS

    def to_json(self) -> dict[str, Any]:
        """The contract's results line: ``{"index": 0, "status": "SUCCESS"}`` plus ``error``."""
        line: dict[str, Any] = {"index": self.index, "status": self.status.value}
        if self.error is not None:
            line["error"] = self.error
        if self.note is not None:
            line["note"] = self.note
        return line


def text_or_base64(data: bytes) -> tuple[str, str]:
    """``(text, "utf-8")`` when ``data`` is UTF-8, else ``(base64 text, "base64")``."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def document_to_json(document: Document) -> dict[str, Any]:
    """The JSON form of a document (one line of a Listen's output): the payload as text when it
    is UTF-8, else base64 (``encoding`` says which), and the properties."""
    payload, encoding = text_or_base64(document.payload)
    properties = dict(document.properties)
    if isinstance(properties.get("correlation_data"), (bytes, bytearray)):
        properties["correlation_data"] = text_or_base64(bytes(properties["correlation_data"]))[0]
    return {"payload": payload, "encoding": encoding, "properties": properties}


def document_from_json(line: dict[str, Any]) -> Document:
    """The inverse of :func:`document_to_json`."""
    if line.get("encoding", "utf-8") == "base64":
        payload = base64.b64decode(line["payload"])
    else:
        payload = line["payload"].encode("utf-8")
    return Document(payload, dict(line.get("properties", {})))
