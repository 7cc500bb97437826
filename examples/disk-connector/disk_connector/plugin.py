"""The disk connector's hook implementations: thin, each hands over to its module.

The plugin is registered under its manifest id, ``disk`` (the entry point's name): a runtime
calls these hooks for this connector only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from connector.sdk import hookimpl

# A runtime loads every installed connector's plugin to list the connectors and build its
# command line's help: the hooks import the connector's modules when they are called, so that
# loading the plugin costs next to nothing (the imports below are for type checkers only).
if TYPE_CHECKING:
    from connector.sdk.documents import Document, Result
    from connector.sdk.listener import Listener
    from connector.sdk.manifest import Manifest


@cache
def _manifest() -> Manifest:
    """Read on first use (manifest.json and schemas/, from the package or the source tree), then kept."""
    from connector.sdk.manifest import Manifest

    return Manifest.load(__package__)


@hookimpl
def connector_manifest() -> Manifest:
    return _manifest()


@hookimpl
def connector_validate(connection: Mapping[str, Any], operation: Mapping[str, Any] | None) -> list[str]:
    from disk_connector import rules

    problems = rules.connection_problems(connection)
    return problems if operation is None else problems + rules.operation_problems(operation)


@hookimpl
def connector_open(connection: Mapping[str, Any]) -> Any:
    from disk_connector.folders import Directory

    return Directory(connection)


@hookimpl
def connector_check(connection: Mapping[str, Any]) -> str:
    from disk_connector.folders import check

    return check(connection)


@hookimpl
def connector_send(connection: Any, operation: Mapping[str, Any], documents: Iterable[Document]) -> Iterator[Result]:
    from disk_connector.send import send

    return send(connection, operation, documents)


@hookimpl
def connector_listen(connection: Any, operation: Mapping[str, Any], listener: Listener) -> int:
    from disk_connector.listen import listen

    return listen(connection, operation, listener)


@hookimpl
def connector_describe_operation(operation: Mapping[str, Any]) -> str | None:
    from disk_connector.rules import describe_operation

    return describe_operation(operation)
