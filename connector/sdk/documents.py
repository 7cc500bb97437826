"""Documents flow between the process and a connector; a Result reports one document's fate."""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Callable, Collection
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


def _fast_init(cls: type) -> None:
    """One Result per document: a frozen dataclass's own ``__init__`` sets each field through
    ``object.__setattr__``; this one calls the slots' setters, in about half the time (the
    instances stay frozen, the signature is the same)."""
    generated = cls.__init__
    set_index, set_status, set_error, set_note = (cls.__dict__[name].__set__ for name in ("index", "status", "error", "note"))

    def __init__(self: Result, index: int, status: Status, error: str | None = None, note: str | None = None) -> None:
        set_index(self, index)
        set_status(self, status)
        set_error(self, error)
        set_note(self, note)

    __init__.__qualname__, __init__.__doc__ = generated.__qualname__, generated.__doc__
    cls.__init__ = __init__  # type: ignore[misc]


_fast_init(Result)


def text_or_base64(data: bytes) -> tuple[str, str]:
    """``(text, "utf-8")`` when ``data`` is UTF-8, else ``(base64 text, "base64")``."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def json_properties(properties: dict[str, Any], byte_properties: Collection[str]) -> dict[str, Any]:
    """``properties`` as a JSON line holds them: each of ``byte_properties`` whose value is bytes
    as text when it is UTF-8, else base64. ``properties`` itself (no copy) when none is bytes."""
    encoded = None
    for name in byte_properties:
        value = properties.get(name)
        if isinstance(value, (bytes, bytearray)):
            if encoded is None:
                encoded = dict(properties)
            encoded[name] = text_or_base64(bytes(value))[0]
    return properties if encoded is None else encoded


def document_to_json(document: Document, byte_properties: Collection[str] = ()) -> dict[str, Any]:
    """The JSON form of a document (one line of a Listen's output): the payload as text when it
    is UTF-8, else base64 (``encoding`` says which), and the properties.

    ``byte_properties``: the document properties that carry bytes, those the connector's manifest
    marks ``"contentEncoding": "base64"`` (:attr:`Manifest.byte_properties
    <connector.sdk.manifest.Manifest.byte_properties>`); each is written as text when its bytes are
    UTF-8, else as their base64."""
    payload, encoding = text_or_base64(document.payload)
    properties = json_properties(document.properties, byte_properties)
    if properties is document.properties:
        properties = dict(properties)
    return {"payload": payload, "encoding": encoding, "properties": properties}


def _json_encoder(make: Any = getattr(json.encoder, "c_make_encoder", None)) -> Callable[[Any], str]:
    """``encode(value)``: the text ``json.JSONEncoder(ensure_ascii=False).encode(value)`` gives,
    from the C encoder made once (``encode`` makes one per call, a third of its time for a short
    document). Without the C module (``make`` None): the stdlib's own ``encode``, the same text."""
    encoder = json.JSONEncoder(ensure_ascii=False)
    if make is not None:
        try:  # markers None: no check for circular references (the recursion limit stops one)
            iterencode = make(None, encoder.default, json.encoder.encode_basestring, None,
                              encoder.key_separator, encoder.item_separator, False, False, True)
        except TypeError:  # a Python whose C encoder takes other arguments
            return encoder.encode
        join = "".join
        return lambda value: join(iterencode(value, 0))
    return encoder.encode


_encode = _json_encoder()
_escape = json.encoder.encode_basestring  # a str as JSON text, non-ASCII kept (C when available)


def document_line(document: Document, byte_properties: Collection[str] = ()) -> bytes:
    """A document's JSON line, in UTF-8 with its newline: :func:`document_to_json`'s object, byte
    for byte as ``json.JSONEncoder(ensure_ascii=False)`` writes it (``", "`` and ``": "`` between
    items, non-ASCII as itself), built without a copy of the properties when none is bytes.

    A property holding a lone surrogate (which UTF-8 cannot carry) makes the line ASCII with
    ``\\u`` escapes (``json.dumps``), as the JSON text allows."""
    payload, encoding = text_or_base64(document.payload)
    properties = json_properties(document.properties, byte_properties)
    try:
        return (f'{{"payload": {_escape(payload)}, "encoding": "{encoding}", '
                f'"properties": {_encode(properties)}}}\n').encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps({"payload": payload, "encoding": encoding, "properties": properties}) + "\n").encode()


def document_from_json(line: dict[str, Any], byte_properties: Collection[str] = ()) -> Document:
    """The inverse of :func:`document_to_json`.

    A property of ``byte_properties`` given as text becomes its UTF-8 bytes. (The JSON form does
    not say whether such a property was written as text or as base64; text is taken as text.)"""
    if line.get("encoding", "utf-8") == "base64":
        payload = base64.b64decode(line["payload"])
    else:
        payload = line["payload"].encode("utf-8")
    properties = dict(line.get("properties", {}))
    for name in byte_properties:
        if isinstance(properties.get(name), str):
            properties[name] = properties[name].encode("utf-8")
    return Document(payload, properties)
