"""Documents flow between the process and a connector; a Result reports one document's fate."""

from __future__ import annotations

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

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCESS

    def to_json(self) -> dict[str, Any]:
        """The contract's results line: ``{"index": 0, "status": "SUCCESS"}`` plus ``error``."""
        line: dict[str, Any] = {"index": self.index, "status": self.status.value}
        if self.error is not None:
            line["error"] = self.error
        return line
