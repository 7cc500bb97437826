"""The contract between an integration runtime and any connector.

A connector is a pluggy plugin registered under the ``connector_sdk.connectors`` entry-point
group; it implements the hooks in :mod:`connector.sdk.hookspecs`. This package imports no
connector and no runtime.
"""

from connector.sdk.documents import Document, Result, Status
from connector.sdk.errors import ConfigError, ConnectError, ConnectorError
from connector.sdk.hookspecs import hookimpl, hookspec

__all__ = [
    "ConfigError",
    "ConnectError",
    "ConnectorError",
    "Document",
    "Result",
    "Status",
    "hookimpl",
    "hookspec",
]
