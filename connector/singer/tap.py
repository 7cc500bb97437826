"""A Singer tap for any installed connector: its Listen, one stream per listened-on value.

The streams come from the operation field the Listen is driven by: the first required operation
field (besides ``action``) that may hold a list (MQTT: ``topic``, a filter or a list of filters).
Each value is a stream of its own, run as its own Listen, one after the other, each bounded by the
tap's ``max_records``, ``max_seconds`` and ``idle_seconds`` so that a run ends. A connector without
such a field has one stream, named after the connector.

A message is acknowledged only after its RECORD was written to standard output and flushed
(:mod:`connector.singer.listenpipe`). With a persistent session at the endpoint (MQTT: Clean
Session off and a stable client ID), what is published between two runs waits there for the
next run. ``{stream}`` in a connection text field (``client_id: meltano-{stream}``) becomes the
stream's name, so that each stream's Listen has a session of its own.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from singer_sdk import Stream, Tap

from connector.harness.runtime import Runtime
from connector.sdk.errors import ConfigError
from connector.sdk.manifest import Manifest
from connector.sdk.plugins import installed_connectors
from connector.singer.config import ConnectorPlugin, SingerConfig, for_stream
from connector.singer.listenpipe import ListenPipe
from connector.singer.records import record_schema, to_record


def stream_field(manifest: Manifest) -> str | None:
    """The operation field whose values are the tap's streams (None: one stream)."""
    schema = manifest.operation_schema
    for name in schema.get("required", ()):
        prop = schema.get("properties", {}).get(name, {})
        kinds = prop.get("type", ())
        if name != "action" and ("array" in kinds if isinstance(kinds, list) else kinds == "array"):
            return name
    return None


def stream_names(values: Iterable[str], fallback: str) -> list[str]:
    """A stream name per value: its words joined by '_' (``sensors/+/temperature``:
    ``sensors_temperature``), made unique with a number."""
    names: list[str] = []
    for value in values:
        base = re.sub(r"[^A-Za-z0-9]+", "_", value).strip("_") or fallback
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


class ConnectorStream(Stream):
    """One stream: one Listen on one value of the stream field."""

    def __init__(self, tap: ConnectorTap, name: str, value: Any) -> None:
        self.value = value
        super().__init__(tap, schema=record_schema(tap.singer_config.manifest), name=name)
        self._connector_tap = tap

    def get_records(self, context: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        tap = self._connector_tap
        config, settings = tap.singer_config, tap.config
        connection, operation = config.split(settings)
        field = stream_field(config.manifest)
        if field is not None:
            operation[field] = self.value
        pipe = ListenPipe(Runtime(), tap.connector_id, for_stream(connection, self.name), operation,
                          count=config.setting(settings, "max_records"),
                          timeout=config.setting(settings, "max_seconds"),
                          idle=config.setting(settings, "idle_seconds"))
        manifest = config.manifest
        for document in pipe.documents():
            yield to_record(document, manifest, datetime.datetime.now(datetime.timezone.utc))
        outcome = pipe.outcome
        if outcome is not None:
            self.logger.info("the Listen of stream %r ended (%s) after %d records", self.name, outcome.reason,
                             outcome.accepted)


class ConnectorTap(ConnectorPlugin, Tap):
    """The base of each connector's tap class (:func:`tap_class` fills in the connector)."""

    connector_id: str = ""
    singer_config: SingerConfig

    def discover_streams(self) -> list[Stream]:
        manifest = self.singer_config.manifest
        field = stream_field(manifest)
        if field is None:
            return [ConnectorStream(self, self.connector_id, None)]
        value = self.config.get(field)
        values = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        if not values:
            raise ConfigError(f"operation {field}: missing; give what the tap listens on")
        return [ConnectorStream(self, name, v) for name, v in zip(stream_names(values, self.connector_id), values)]


def tap_class(connector_id: str) -> type[ConnectorTap]:
    """The Singer tap class of the installed connector ``connector_id``."""
    manifest = installed_connectors().get(connector_id).manifest
    if "listen" not in manifest.actions:
        raise ConfigError(f"the connector {connector_id!r} has no listen action: it cannot be a Singer tap")
    config = SingerConfig(manifest, "listen")
    return type(f"Tap{connector_id.title()}", (ConnectorTap,), {
        "name": f"tap-{connector_id}", "connector_id": connector_id, "singer_config": config,
        "config_jsonschema": config.jsonschema(),
        "__doc__": f"Singer tap of the {manifest.name} connector: {manifest.actions['listen'].get('description', '')}",
        "__module__": __name__,
    })
