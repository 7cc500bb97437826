"""Load a connector's manifest and schemas from its package; validate configurations.

The schemas are the single source of truth for options, defaults and help text: code asks
the manifest for them and never repeats them. Validation reports every problem at once, each
with its JSON path and a sentence, and never shows the value of a secret (``writeOnly``) field.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from connector.sdk.errors import ConfigError, PluginError

REDACTED = "********"


def _read_json(package: str, path: str) -> Any:
    try:
        text = resources.files(package).joinpath(path).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise PluginError(f"connector package {package!r} has no {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PluginError(f"{package}/{path} is not valid JSON: {exc}") from None


def _check(validator: Draft202012Validator, instance: Any, what: str) -> None:
    problems = [f"{_path(e)}: {e.message}" for e in validator.iter_errors(instance)]
    if problems:
        raise PluginError(f"{what} is not valid: " + "; ".join(problems))


@dataclass(frozen=True)
class Manifest:
    """A connector's manifest with its two schemas loaded."""

    id: str
    name: str
    version: str
    description: str
    actions: dict[str, Any]
    document_properties: dict[str, Any]
    connection_schema: dict[str, Any]
    operation_schema: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, package: str) -> Manifest:
        """Read ``manifest.json`` and the schemas it names from ``package`` (works from a wheel)."""
        raw = _read_json(package, "manifest.json")
        _check(Draft202012Validator(_manifest_schema()), raw, f"{package}/manifest.json")
        schemas = {}
        for key in ("connection_schema", "operation_schema"):
            schema = _read_json(package, raw[key])
            try:
                Draft202012Validator.check_schema(schema)
            except Exception as exc:  # SchemaError: a broken connector, say which file
                raise PluginError(f"{package}/{raw[key]} is not a valid JSON Schema: {exc}") from None
            schemas[key] = schema
        return cls(
            id=raw["id"],
            name=raw["name"],
            version=raw["version"],
            description=raw["description"],
            actions=raw["actions"],
            document_properties=raw["document_properties"],
            connection_schema=schemas["connection_schema"],
            operation_schema=schemas["operation_schema"],
            raw=raw,
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest with both schemas inlined (what ``describe --json`` prints)."""
        return {**self.raw, "connection_schema": self.connection_schema, "operation_schema": self.operation_schema}

    def validate_connection(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a connection configuration; return it with the schema's defaults filled in."""
        return validate(self.connection_schema, config, "connection")

    def validate_operation(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Validate an operation configuration; return it with the schema's defaults filled in."""
        return validate(self.operation_schema, config, "operation")


_MANIFEST_SCHEMA: dict[str, Any] | None = None


def _manifest_schema() -> dict[str, Any]:
    global _MANIFEST_SCHEMA
    if _MANIFEST_SCHEMA is None:
        _MANIFEST_SCHEMA = json.loads(resources.files(__package__).joinpath("manifest.schema.json").read_text("utf-8"))
    return _MANIFEST_SCHEMA


def defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level properties' defaults."""
    return {name: prop["default"] for name, prop in schema.get("properties", {}).items() if "default" in prop}


def secret_fields(schema: Mapping[str, Any]) -> set[str]:
    """Names of the top-level properties marked ``writeOnly`` (secrets)."""
    return {name for name, prop in schema.get("properties", {}).items() if prop.get("writeOnly")}


def redact(schema: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with every non-empty secret replaced, safe to log or show."""
    hidden = secret_fields(schema)
    return {k: (REDACTED if k in hidden and v else v) for k, v in config.items()}


def validate(schema: Mapping[str, Any], config: Any, what: str) -> dict[str, Any]:
    """Validate ``config`` against ``schema``; raise one ConfigError listing every problem."""
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        problems = list(dict.fromkeys(f"{_path(e)}: {_sentence(e, schema)}" for e in errors))
        raise ConfigError(f"invalid {what}: " + "; ".join(problems), problems)
    return {**defaults(schema), **_whole_numbers(schema, config)}


def _whole_numbers(schema: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Schema counts 1.0 as an integer, but paho and sockets refuse floats: hand the
    connector ``int`` wherever the schema asks for a whole number."""
    out = dict(config)
    for name, prop in schema.get("properties", {}).items():
        value = out.get(name)
        if isinstance(value, float) and value.is_integer() and _wants_integer(prop):
            out[name] = int(value)
    return out


def _wants_integer(prop: Mapping[str, Any]) -> bool:
    options = prop.get("oneOf", [])
    kinds = prop.get("type")
    return "integer" in (kinds if isinstance(kinds, list) else [kinds]) or (
        bool(options) and all(type(o.get("const")) is int for o in options))


def _path(error: ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


def _shown(error: ValidationError, root: Mapping[str, Any]) -> str:
    """The offending value, or a mask when it sits in a secret field."""
    path = list(error.absolute_path)
    if path and path[0] in secret_fields(root):
        return "the value given"
    return json.dumps(error.instance, ensure_ascii=False) if _short(error.instance) else "the value given"


def _short(value: Any) -> bool:
    return isinstance(value, (int, float, bool, type(None))) or (isinstance(value, str) and len(value) <= 80)


def _sentence(error: ValidationError, root: Mapping[str, Any]) -> str:
    """A sentence for a person; the schema may give its own through ``errorMessage``."""
    custom = error.schema.get("errorMessage") if isinstance(error.schema, Mapping) else None
    if isinstance(custom, str):
        return custom
    if isinstance(custom, Mapping) and error.validator in custom:
        return custom[error.validator]
    kind, expected = error.validator, error.validator_value
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "a field"
        return f"'{missing}' is required"
    if kind == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        hints = []
        for name in extra:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return f"unknown field {', '.join(hints)}; known fields: {', '.join(known)}"
    if kind == "oneOf" and all("const" in option for option in expected):
        choices = ", ".join(_choice(o) for o in expected)
        return f"must be one of {choices}, not {_shown(error, root)}"
    if kind == "type":
        return f"must be {_a(expected)}, not {_shown(error, root)}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}
        return f"must be {word[kind]} {expected}, not {_shown(error, root)}"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters long"
    if kind == "minItems":
        return "must not be an empty list" if expected == 1 else f"must hold at least {expected} items"
    if kind == "maxLength":
        return f"must be at most {expected} characters long"
    if kind == "const":
        return f"must be {json.dumps(expected)}"
    if kind == "enum":
        return f"must be one of {', '.join(json.dumps(v) for v in expected)}, not {_shown(error, root)}"
    return "is not valid" if _shown(error, root) == "the value given" else error.message


def _choice(option: Mapping[str, Any]) -> str:
    """``0 (At most once)`` for ``{"const": 0, "title": "0 - At most once"}``."""
    const = json.dumps(option["const"])
    title = option.get("title", "")
    if title.startswith(const):
        title = title[len(const):].lstrip(" -:")
    return f"{const} ({title})" if title else const


def _a(expected: Any) -> str:
    names = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
             "object": "an object", "array": "a list", "null": "null"}
    if isinstance(expected, list):
        return " or ".join(names.get(t, t) for t in expected)
    return names.get(expected, expected)
