"""Singer records and the SDK's documents, both ways.

Target: a RECORD becomes a :class:`Document` (the record as JSON, or one field as the payload);
an operation field that is also a document property the connector's Send reads (MQTT: ``topic``)
may be a template over the record's fields (``devices/{device_id}/cmd``), filled in per record and
set as that document's property, where the connector checks it against its own rules.

Tap: a document becomes a RECORD: its payload as text (or base64, ``encoding`` says which), the
time it was received, and the document properties the connector's Listen writes.
"""

from __future__ import annotations

import datetime
import decimal
import json
import string
from collections.abc import Mapping
from typing import Any

from connector.sdk.documents import Document, json_properties, text_or_base64
from connector.sdk.errors import ConfigError
from connector.sdk.manifest import Manifest

_FORMATTER = string.Formatter()


class RecordError(Exception):
    """This record cannot become a document (its Result is APPLICATION_ERROR)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"a {type(value).__name__} is not JSON")


def to_json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode("utf-8")


def templates(manifest: Manifest, operation: Mapping[str, Any]) -> dict[str, str]:
    """The operation's template fields: text fields that are also document properties the Send
    reads and that hold a ``{`` or ``}`` (``{{`` and ``}}`` are the braces themselves)."""
    reads = manifest.actions.get("send", {}).get("reads", ())
    found = {}
    for name in reads:
        value = operation.get(name)
        if isinstance(value, str) and ("{" in value or "}" in value):
            check_template(name, value)
            found[name] = value
    return found


def check_template(name: str, template: str) -> None:
    """A template that can never be filled in is a configuration error."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ConfigError(f"operation {name}: not a template over record fields ({exc}); write {{{{ and }}}} "
                          "for the braces themselves") from None
    for _, field, _, _ in parsed:
        if field is not None and (field == "" or field.isdigit()):
            raise ConfigError(f"operation {name}: a template names record fields, as in {{device_id}}, "
                              f"not {{{field}}}")


def fill(name: str, template: str, record: Mapping[str, Any]) -> str:
    """``template`` filled in with ``record``'s fields; a field it lacks is this record's error."""
    try:
        return _FORMATTER.vformat(template, (), _Fields(record))
    except KeyError as exc:
        raise RecordError(f"the {name} template {template!r} needs the record field {exc.args[0]!r}") from None
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise RecordError(f"the {name} template {template!r} cannot be filled in for this record: {exc}") from None


class _Fields(dict):
    """A record's fields for a template: None and a missing field are both missing."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        super().__init__((k, v) for k, v in record.items() if v is not None)

    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


def to_document(record: Mapping[str, Any], payload_field: str | None, fields: Mapping[str, str]) -> Document:
    """The document a RECORD becomes (RecordError: it cannot)."""
    if payload_field is None:
        payload = to_json_bytes(record)
    else:
        value = record.get(payload_field)
        if value is None:
            raise RecordError(f"the record has no payload field {payload_field!r}")
        payload = value.encode("utf-8") if isinstance(value, str) else to_json_bytes(value)
    properties = {name: fill(name, template, record) for name, template in fields.items()}
    return Document(payload, properties)


def record_schema(manifest: Manifest) -> dict[str, Any]:
    """The JSON Schema of the tap's records for ``manifest``'s Listen."""
    properties: dict[str, Any] = {
        "payload": {"type": ["string"], "description": "The payload: text when it is UTF-8, else base64."},
        "encoding": {"type": ["string"], "enum": ["utf-8", "base64"],
                     "description": "How payload holds the bytes: utf-8 (text) or base64."},
        "received_at": {"type": ["string"], "format": "date-time",
                        "description": "When the tap received the message (UTC)."},
    }
    for name in manifest.actions.get("listen", {}).get("writes", ()):
        declared = manifest.document_properties.get(name, {})
        kinds = declared.get("type", ["string", "number", "boolean", "array", "object"])
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if name in manifest.byte_properties:
            kinds = ["string"]
        prop = {"type": sorted(set(kinds) | {"null"})}
        if "description" in declared:
            prop["description"] = declared["description"]
        if "array" in kinds:
            prop["items"] = {}
        properties.setdefault(name, prop)
    return {"type": "object", "properties": properties, "required": ["payload", "encoding", "received_at"]}


def to_record(document: Document, manifest: Manifest, received_at: datetime.datetime) -> dict[str, Any]:
    """The RECORD a document becomes (its declared properties only, bytes as text or base64)."""
    payload, encoding = text_or_base64(document.payload)
    record: dict[str, Any] = {"payload": payload, "encoding": encoding, "received_at": received_at.isoformat()}
    properties = json_properties(document.properties, manifest.byte_properties)
    for name in manifest.actions.get("listen", {}).get("writes", ()):
        if name in properties and name not in record:
            record[name] = properties[name]
    return record
