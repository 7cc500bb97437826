"""The disk connector's hook implementations: thin, each hands over to its module.

The plugin is registered under its manifest id, ``disk`` (the entry point's name): a runtime
calls these hooks for this connector only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from connector.sdk import hookimpl
from connector.sdk.documents import Document, Result
from connector.sdk.listener import Listener
from connector.sdk.manifest import Manifest
from disk_connector import folders, listen, rules, send

# The modules import only the standard library and connector.sdk: loading them with the plugin
# costs a few milliseconds, so the hooks need no lazy imports.

#: Read once, when the plugin is loaded (manifest.json and schemas/, from the package or the source tree).
MANIFEST = Manifest.load(__package__)


@hookimpl
def connector_manifest() -> Manifest:
    return MANIFEST


@hookimpl
def connector_validate(connection: Mapping[str, Any], operation: Mapping[str, Any] | None) -> list[str]:
    problems = rules.connection_problems(connection)
    return problems if operation is None else problems + rules.operation_problems(operation)


@hookimpl
def connector_open(connection: Mapping[str, Any]) -> Any:
    return folders.Directory(connection)


@hookimpl
def connector_check(connection: Mapping[str, Any]) -> str:
    return folders.check(connection)


@hookimpl
def connector_send(connection: Any, operation: Mapping[str, Any], documents: Iterable[Document]) -> Iterator[Result]:
    return send.send(connection, operation, documents)


@hookimpl
def connector_listen(connection: Any, operation: Mapping[str, Any], listener: Listener) -> int:
    return listen.listen(connection, operation, listener)


@hookimpl
def connector_describe_operation(operation: Mapping[str, Any]) -> str | None:
    return rules.describe_operation(operation)
