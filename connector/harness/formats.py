"""How a Listen writes each document (``--format``): as a JSON line (``json``, the default), its
payload alone (``payload``), its ``topic`` property, a space and its payload (``topic-payload``),
or a template of placeholders; and to which output (standard output, or ``--output FILE``).

The two named formats print what ``mosquitto_sub`` and ``mosquitto_sub -v`` print, byte for
byte: the payload's bytes as they are and a newline; for an empty payload nothing at all
(``payload``) or ``TOPIC (null)`` (``topic-payload``).

A template (any other ``--format``; it must hold a placeholder) is written once per document,
followed by a newline. Placeholders:

- ``{payload}`` the payload's bytes as they are; ``{payload:hex}``, ``{payload:base64}``,
  ``{payload:length}`` (its size in bytes);
- ``{json}`` the document's JSON line (without its newline);
- ``{NAME}`` the document property NAME (those the connector's Listen writes): text as it is,
  true / false, numbers, lists and objects as compact JSON, nothing when the document lacks it;
  ``{NAME:json}`` as a JSON value, ``{NAME:hex}`` / ``{NAME:base64}`` its bytes (or UTF-8 text)
  encoded, ``{NAME:epoch}`` an ISO 8601 time as seconds since 1970 (six decimals).

Escapes: ``\\n`` newline, ``\\t`` tab, ``\\r`` carriage return, ``\\\\`` a backslash, ``{{`` and
``}}`` a brace. Anything else (an unknown placeholder, form or escape; a lone brace) is a usage
error, said before anything is opened.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from collections.abc import Callable, Collection
from typing import Any

from connector.harness.exits import UsageError
from connector.sdk.documents import Document, document_to_json

#: The named formats (anything else is a template).
NAMED = ("json", "payload", "topic-payload")
#: The forms a placeholder may take after its colon.
PAYLOAD_FORMS = ("hex", "base64", "length")
PROPERTY_FORMS = ("json", "hex", "base64", "epoch")

Render = Callable[[Document], bytes]
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_TOKEN = re.compile(r"\\(.?)|\{\{|\}\}|\{([^{}]*)\}|[{}]", re.DOTALL)


def json_line(document: Document, byte_properties: Collection[str]) -> bytes:
    """The document's JSON line (the default format), with its newline, in UTF-8."""
    record = document_to_json(document, byte_properties)
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in a property: JSON escapes it, UTF-8 cannot carry it
        return (json.dumps(record) + "\n").encode("utf-8")


def renderer(spec: str, properties: Collection[str], byte_properties: Collection[str]) -> Render:
    """What ``--format spec`` writes for a document; ``properties`` are the names a template may
    use (the connector's Listen writes them). UsageError for a format that is none."""
    if spec == "json":
        return lambda document: json_line(document, byte_properties)
    if spec == "payload":
        return lambda document: document.payload + b"\n" if document.payload else b""
    if spec == "topic-payload":
        def topic_payload(document: Document) -> bytes:
            topic = _text(document.properties.get("topic"))
            return topic + (b" " + document.payload if document.payload else b" (null)") + b"\n"

        return topic_payload
    parts = _compile(spec, properties, byte_properties)
    return lambda document: b"".join(part if type(part) is bytes else part(document) for part in parts) + b"\n"


def _compile(spec: str, properties: Collection[str], byte_properties: Collection[str]) -> list[Any]:
    """The template's parts: bytes, or a function of the document giving bytes."""
    parts: list[Any] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(spec):
        literal.append(spec[position:match.start()])
        position = match.end()
        token = match.group(0)
        if token.startswith("\\"):
            escape = match.group(1)
            if escape not in _ESCAPES:
                raise UsageError(f"--format: unknown escape '\\{escape}': use \\n, \\t, \\r or \\\\")
            literal.append(_ESCAPES[escape])
        elif token in ("{{", "}}"):
            literal.append(token[0])
        elif match.group(2) is None:
            raise UsageError(f"--format: a lone {token!r} at character {match.start() + 1}: write {token * 2} "
                             "for the brace itself")
        else:
            if "".join(literal):
                parts.append("".join(literal).encode("utf-8"))
            literal = []
            parts.append(_placeholder(match.group(2), properties, byte_properties))
    literal.append(spec[position:])
    if "".join(literal):
        parts.append("".join(literal).encode("utf-8"))
    if all(type(part) is bytes for part in parts):
        raise UsageError(f"--format {spec!r} is neither {', '.join(NAMED[:-1])} nor {NAMED[-1]}, nor a template "
                         "with a placeholder such as '{payload}'")
    return parts


def _placeholder(text: str, properties: Collection[str], byte_properties: Collection[str]) -> Render:
    name, _, form = text.partition(":")
    if name == "payload":
        if form and form not in PAYLOAD_FORMS:
            raise UsageError(f"--format: {{payload:{form}}} is not a form of the payload: use "
                             + ", ".join(f"{{payload:{f}}}" for f in PAYLOAD_FORMS))
        if form == "length":
            return lambda document: str(len(document.payload)).encode("ascii")
        return (lambda document: _encoded(document.payload, form)) if form else (lambda document: document.payload)
    if name == "json" and not form:
        return lambda document: json_line(document, byte_properties)[:-1]
    if name not in properties:
        known = ", ".join(f"{{{n}}}" for n in ("payload", "json", *sorted(properties)))
        raise UsageError(f"--format: unknown placeholder {{{text}}}: use one of {known}")
    if form and form not in PROPERTY_FORMS:
        raise UsageError(f"--format: {{{text}}}: unknown form {form!r}: use {', '.join(PROPERTY_FORMS)}")
    return lambda document: _value(document.properties.get(name), form)


def _encoded(data: bytes, form: str) -> bytes:
    return binascii.hexlify(data) if form == "hex" else base64.b64encode(data)


def _text(value: Any) -> bytes:
    """A property's value as the template shows it."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace")
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, (int, float)):
        return str(value).encode("ascii")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


def _value(value: Any, form: str) -> bytes:
    if not form or value is None:
        return _text(value)
    if form in ("hex", "base64"):
        return _encoded(_text(value), form)
    if form == "epoch":
        try:
            moment = datetime.datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return b""
        return f"{moment.timestamp():.6f}".encode("ascii")
    if isinstance(value, (bytes, bytearray)):  # json of bytes: as the JSON line shows them
        from connector.sdk.documents import text_or_base64

        value = text_or_base64(bytes(value))[0]
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "backslashreplace")


def listen_sink(spec: str | None, output: str | None, manifest: Any) -> Any:
    """The sink of a Listen with ``--format spec`` and ``--output FILE``; None for the default
    (JSON lines on standard output: :class:`~connector.harness.sinks.JsonLinesSink`)."""
    if spec in (None, "json") and output is None:
        return None
    import sys

    from connector.harness.recordsink import RecordSink, open_output

    render = renderer(spec or "json", manifest.actions.get("listen", {}).get("writes", ()), manifest.byte_properties)
    if output is None:
        return RecordSink(sys.stdout, render)
    return RecordSink(open_output(output), render, durable=True)
