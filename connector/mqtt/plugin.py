"""The MQTT connector's hook implementations: thin, each hands over to its module.

The plugin is registered under its manifest id, ``mqtt``: a runtime calls these hooks for
this connector only, so none of them asks which connector is meant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from connector.sdk import hookimpl

# Loaded to build a command line's help: each hook imports what it needs when it is called.
if TYPE_CHECKING:
    from connector.sdk.commands import Command
    from connector.sdk.documents import Document, Result
    from connector.sdk.listener import Listener
    from connector.sdk.manifest import Manifest


@cache
def _manifest() -> Manifest:
    from connector.sdk.manifest import Manifest

    return Manifest.load(__package__)


@hookimpl
def connector_manifest() -> Manifest:
    return _manifest()


@hookimpl
def connector_validate(connection: Mapping[str, Any], operation: Mapping[str, Any] | None) -> list[str]:
    from connector.mqtt.connection import connection_problems
    from connector.mqtt.tls import tls_problems

    problems = tls_problems(connection) + connection_problems(connection)  # bad input, before connecting
    if operation is None:
        return problems
    from connector.mqtt.properties import mqtt5_problems, property_problems
    from connector.mqtt.selection import selection_problems
    from connector.mqtt.topics import operation_problems

    problems += mqtt5_problems(operation) if connection.get("protocol") != "5" else property_problems(operation)
    return problems + operation_problems(operation) + selection_problems(operation)


@hookimpl
def connector_max_document_size(connection: Mapping[str, Any], operation: Mapping[str, Any]) -> int | None:
    from connector.mqtt.send import payload_limit

    return payload_limit(connection, operation)


@hookimpl
def connector_open(connection: Mapping[str, Any]) -> Any:
    from connector.mqtt.connection import MqttConnection

    return MqttConnection(connection).open()


@hookimpl
def connector_check(connection: Mapping[str, Any]) -> str:
    from connector.mqtt.connection import MqttConnection

    with MqttConnection(connection).open() as conn:
        how = f"MQTT {conn.protocol_name}" + (", TLS" if conn.tls else "") + (
            " without certificate checks" if conn.config.get("tls_insecure") else "")
        return f"connected to the MQTT broker at {conn.host}:{conn.port} ({how}) as {conn.client_id!r}"


@hookimpl
def connector_send(connection: Any, operation: Mapping[str, Any], documents: Iterable[Document]) -> Iterator[Result]:
    from connector.mqtt.send import send

    return send(connection, operation, documents)


@hookimpl
def connector_listen(connection: Any, operation: Mapping[str, Any], listener: Listener) -> int:
    from connector.mqtt.listen import listen

    return listen(connection, operation, listener)


@hookimpl
def connector_describe_operation(operation: Mapping[str, Any]) -> str | None:
    from connector.mqtt.phrases import describe_operation

    return describe_operation(operation)


@hookimpl
def connector_commands() -> list[Command]:
    from connector.mqtt.commands import COMMANDS

    return list(COMMANDS)
