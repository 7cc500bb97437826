"""The Singer configuration of a connector: its JSON Schema (the connector's connection schema, the
operation's fields for the action, and the adapter's own settings) and the way back, from a Singer
config to the connection and operation the harness's Runtime runs.

The connector's schemas stay the one source of truth: every property keeps its title, description,
type, choices, bounds and default; a ``writeOnly`` property is marked ``secret`` as singer-sdk
and Meltano expect. Keywords a Singer tool cannot follow (``$ref``, ``if``/``then``,
``errorMessage``) are left out of the copy: the Runtime validates the real configuration against
the connector's own schemas before anything is opened, with every problem at once.
"""

from __future__ import annotations

import copy
import decimal
from collections.abc import Mapping
from typing import Any

from connector.harness.flags import for_action
from connector.sdk.errors import ConfigError, PluginError
from connector.sdk.manifest import Manifest

#: The keywords of a property copied into the Singer schema (the rest are the connector's).
_KEPT = ("type", "title", "description", "default", "examples", "enum", "const", "minimum", "maximum",
         "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
         "writeOnly", "format")

#: The target's own settings (Send).
TARGET_SETTINGS: dict[str, dict[str, Any]] = {
    "payload_field": {
        "type": ["string", "null"],
        "title": "Payload Field",
        "description": "The record field sent as each document's payload (text as UTF-8, any other value as JSON). "
                       "Empty: the whole record as JSON.",
        "default": None,
    },
}

#: The tap's own settings (Listen): the bounds that end a run.
TAP_SETTINGS: dict[str, dict[str, Any]] = {
    "max_records": {
        "type": ["integer", "null"],
        "title": "Maximum Records",
        "description": "Each stream's Listen ends after this many records. Empty: no limit.",
        "minimum": 1,
        "default": None,
    },
    "max_seconds": {
        "type": ["number", "null"],
        "title": "Maximum Seconds",
        "description": "Each stream's Listen ends after this many seconds in all. Empty: no limit.",
        "exclusiveMinimum": 0,
        "default": None,
    },
    "idle_seconds": {
        "type": ["number", "null"],
        "title": "Idle Seconds",
        "description": "Each stream's Listen ends once nothing arrived for this many seconds (counted from when "
                       "it listens, then from the last record). Empty: no limit; at least one of the three "
                       "bounds is needed for a run to end.",
        "exclusiveMinimum": 0,
        "default": 5,
    },
}

#: What each adapter setting must be, for its problem's sentence.
_MUST = {"payload_field": "the name of a record field", "max_records": "a whole number, at least 1",
         "max_seconds": "a number of seconds, more than 0", "idle_seconds": "a number of seconds, more than 0"}

#: Written into a connection's text fields per stream (the tap): ``{stream}``.
STREAM_PLACEHOLDER = "{stream}"


def singer_property(prop: Mapping[str, Any]) -> dict[str, Any]:
    """A connector's schema property as a Singer config property."""
    out = {key: copy.deepcopy(prop[key]) for key in _KEPT if key in prop}
    choices = prop.get("oneOf")
    if isinstance(choices, list) and choices and all(isinstance(c, Mapping) and "const" in c for c in choices):
        out["enum"] = [c["const"] for c in choices]
        listed = "; ".join(f"{c.get('title', c['const'])}: {str(c.get('description', '')).rstrip('.')}"
                           for c in choices)
        out["description"] = f"{out.get('description', '')} Choices: {listed}.".strip()
        if "type" not in out:
            out["type"] = sorted({_json_type(c["const"]) for c in choices})
    items = prop.get("items")
    if isinstance(items, Mapping):
        out["items"] = singer_property(items)
    extra = prop.get("additionalProperties")
    if isinstance(extra, Mapping):
        out["additionalProperties"] = singer_property(extra)
    if prop.get("writeOnly"):
        out["secret"] = True
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "number" if isinstance(value, float) else "string"


class SingerConfig:
    """The Singer side of one connector's action (``send``: a target, ``listen``: a tap)."""

    def __init__(self, manifest: Manifest, action: str) -> None:
        self.manifest = manifest
        self.action = action
        self.settings = TARGET_SETTINGS if action == "send" else TAP_SETTINGS
        conn_schema, op_schema = manifest.connection_schema, manifest.operation_schema
        self.connection_fields = list(_ordered(conn_schema))
        self.operation_fields = [name for name in _ordered(op_schema)
                                 if name != "action" and for_action(op_schema, name, action) is not None]
        taken: dict[str, str] = {}
        for what, names in (("connection", self.connection_fields), ("operation", self.operation_fields),
                            ("Singer adapter", list(self.settings))):
            for name in names:
                if name in taken:
                    raise PluginError(f"the connector {manifest.id!r} has a field {name!r} in its {what} and in its "
                                      f"{taken[name]}: a Singer config cannot hold both")
                taken[name] = what

    def jsonschema(self) -> dict[str, Any]:
        """The Singer config schema (what ``--about`` shows and ``--config`` is checked against)."""
        conn_schema, op_schema = self.manifest.connection_schema, self.manifest.operation_schema
        properties: dict[str, Any] = {}
        for name in self.connection_fields:
            properties[name] = singer_property(conn_schema["properties"][name])
        for name in self.operation_fields:
            prop = for_action(op_schema, name, self.action)
            assert prop is not None
            properties[name] = singer_property(prop)
        properties.update(copy.deepcopy(self.settings))
        required = [name for name in conn_schema.get("required", ()) if name in properties]
        required += [name for name in op_schema.get("required", ()) if name in self.operation_fields]
        return {"type": "object", "properties": properties, "required": required}

    def split(self, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The connection and the operation a Singer ``config`` gives (the rest is Singer's)."""
        connection = {name: plain(config[name]) for name in self.connection_fields if name in config}
        operation = {"action": self.action}
        operation.update((name, plain(config[name])) for name in self.operation_fields if name in config)
        return connection, operation

    def problems(self, config: Mapping[str, Any]) -> list[str]:
        """Every problem of a Singer ``config``, as the Runtime words them (its schemas' rules)."""
        connection, operation = self.split(config)
        problems: list[str] = []
        for what, check, given in (("connection", self.manifest.validate_connection, connection),
                                   ("operation", self.manifest.validate_operation, operation)):
            try:
                check(given)
            except ConfigError as exc:
                problems += [f"{what} {p}" for p in exc.problems] or [str(exc)]
        for name, prop in self.settings.items():
            value = plain(config.get(name))
            if value is not None and not _fits(prop, value):
                problems.append(f"{name}: must be {_MUST[name]}, not {value!r}")
        if self.action == "send":
            from connector.singer.records import templates

            try:
                templates(self.manifest, operation)
            except ConfigError as exc:
                problems.append(str(exc))
        if self.action == "listen" and all(self.setting(config, name) is None for name in TAP_SETTINGS):
            problems.append(f"{', '.join(TAP_SETTINGS)}: all empty: a run would never end; give at least one")
        return problems

    def setting(self, config: Mapping[str, Any], name: str) -> Any:
        return plain(config.get(name, self.settings[name].get("default")))


def plain(value: Any) -> Any:
    """``value`` with JSON's own numbers: singer-sdk reads a config file's decimals as Decimal."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _fits(prop: Mapping[str, Any], value: Any) -> bool:
    """Whether an adapter setting's ``value`` is of its type and within its bounds."""
    kinds = prop["type"]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return False
    if isinstance(value, str):
        return "string" in kinds
    if "integer" in kinds and not isinstance(value, int):
        return False
    return value >= prop.get("minimum", value) and value > prop.get("exclusiveMinimum", value - 1)


def _ordered(schema: Mapping[str, Any]) -> list[str]:
    props = schema.get("properties", {})
    order = [name for name in schema.get("x-order", ()) if name in props]
    return order + [name for name in props if name not in order]


def for_stream(connection: Mapping[str, Any], stream: str) -> dict[str, Any]:
    """``connection`` with ``{stream}`` in its text fields replaced by the stream's name, so that
    each stream's Listen can have its own identity at the endpoint (e.g. an MQTT client ID)."""
    return {name: value.replace(STREAM_PLACEHOLDER, stream) if isinstance(value, str) else value
            for name, value in connection.items()}


class ConnectorPlugin:
    """What the tap and the target of a connector share (mixed into singer-sdk's classes)."""

    singer_config: SingerConfig
    config: Mapping[str, Any]

    @classmethod
    def get_plugin_version(cls) -> str:
        return cls.singer_config.manifest.version

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """The connector's schemas decide (every problem at once, one line, exit 2), not the copy
        of them singer-sdk holds."""
        problems = self.singer_config.problems(self.config)
        if problems and raise_errors:
            raise ConfigError("; ".join(problems), problems)
        return problems
