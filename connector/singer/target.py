"""A Singer target for any installed connector: its Send (see :mod:`connector.singer.sendpipe`).

Each RECORD becomes one document; the first record opens the connection (a connection error
ends the run before any STATE); records of every stream go through the same Send, in the order
they were read. At the end of the input every record has its Result; if any failed, the target
reports each one and ends with :class:`RecordsFailed` (exit 1).
"""

from __future__ import annotations

from typing import Any

from singer_sdk import Sink, Target

from connector.sdk.errors import ConfigError
from connector.sdk.plugins import installed_connectors
from connector.singer.config import ConnectorPlugin, SingerConfig
from connector.singer.records import RecordError, templates, to_document
from connector.singer.sendpipe import SendPipe


class RecordsFailed(Exception):
    """Some records did not reach the endpoint (each was reported when its Result came)."""


class ConnectorSink(Sink):
    """Hands each record to the target's one Send; nothing is batched here (the Send paces)."""

    def __init__(self, target: ConnectorTarget, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        self._connector_target = target

    def process_record(self, record: dict, context: dict) -> None:
        self._connector_target.send_record(self.stream_name, record)

    def process_batch(self, context: dict) -> None:
        """Nothing waits in the sink: every record is with the Send already."""


class ConnectorTarget(ConnectorPlugin, Target):
    """The base of each connector's target class (:func:`target_class` fills in the connector)."""

    connector_id: str = ""
    singer_config: SingerConfig
    default_sink_class = ConnectorSink

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pipe: SendPipe | None = None
        self._fields: dict[str, str] | None = None

    def _start(self) -> SendPipe:
        connection, operation = self.singer_config.split(self.config)
        self._fields = templates(self.singer_config.manifest, operation)
        self._pipe = SendPipe(self.connector_id, connection, operation, self._emit_state)
        self.logger.info("sending to the %s connector %s (in-flight window %d)", self.connector_id,
                         _describe(self.connector_id, operation), self._pipe.window)
        return self._pipe

    def send_record(self, stream: str, record: dict[str, Any]) -> None:
        pipe = self._pipe or self._start()
        assert self._fields is not None
        try:
            document = to_document(record, self.singer_config.setting(self.config, "payload_field"), self._fields)
        except RecordError as exc:
            pipe.record(stream, None, f"APPLICATION_ERROR: {exc}")
            return
        pipe.record(stream, document)

    def _process_state_message(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"value"})
        state = message_dict["value"]
        if self._latest_state == state:
            return
        self._latest_state = state
        if self._pipe is None:  # no record before it: nothing to wait for
            self._emit_state(state)
        else:
            self._pipe.state(state)

    def _write_state_message(self, state: dict) -> None:
        """singer-sdk's drains pass STATE on at once; here the Send passes it on when it is safe."""

    def _emit_state(self, state: dict[str, Any]) -> None:
        Target._write_state_message(self, state)

    def listen(self, file_input: Any = None) -> None:
        try:
            super().listen(file_input)
        finally:
            if self._pipe is not None:
                self._pipe.close()

    def process_endofpipe(self) -> None:
        super().process_endofpipe()
        if self._pipe is None:
            return
        pipe = self._pipe
        pipe.finish()
        self.logger.info("sent %d of %d records", pipe.succeeded, pipe.records)
        if pipe.failures:
            number, stream, error = pipe.failures[0]
            dropped = f"; {pipe.states_dropped} STATE message(s) after it not passed on" if pipe.states_dropped else ""
            raise RecordsFailed(f"{len(pipe.failures)} of {pipe.records} records failed, the first (record "
                                f"{number + 1}, stream {stream!r}): {error}{dropped}")


def _describe(connector_id: str, operation: dict[str, Any]) -> str:
    connectors = installed_connectors()
    connector = connectors.get(connector_id)
    try:
        phrase = connector.describe_operation(connector.manifest.validate_operation(operation))
    except ConfigError:
        phrase = None
    return phrase or ""


def target_class(connector_id: str) -> type[ConnectorTarget]:
    """The Singer target class of the installed connector ``connector_id``."""
    manifest = installed_connectors().get(connector_id).manifest
    if "send" not in manifest.actions:
        raise ConfigError(f"the connector {connector_id!r} has no send action: it cannot be a Singer target")
    config = SingerConfig(manifest, "send")
    name = f"target-{connector_id}"
    return type(f"Target{connector_id.title()}", (ConnectorTarget,), {
        "name": name, "connector_id": connector_id, "singer_config": config,
        "config_jsonschema": config.jsonschema(),
        "__doc__": f"Singer target of the {manifest.name} connector: {manifest.actions['send'].get('description', '')}",
        "__module__": __name__,
    })
