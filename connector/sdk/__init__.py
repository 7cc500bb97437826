"""The contract between an integration runtime and any connector.

A connector is a pluggy plugin registered under the ``connector_sdk.connectors`` entry-point
group; it implements the hooks in :mod:`connector.sdk.hookspecs`. This package imports no
connector and no runtime.

The names below are imported when first used (``from connector.sdk import hookimpl`` loads the
hook specs only), so that a connector's plugin module, loaded to build a command line's help,
loads little.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.sdk.documents import Document, Result, Status
    from connector.sdk.errors import ConfigError, ConnectError, ConnectorError
    from connector.sdk.hookspecs import hookimpl, hookspec

_MODULES = {"Document": "documents", "Result": "documents", "Status": "documents", "ConfigError": "errors",
            "ConnectError": "errors", "ConnectorError": "errors", "hookimpl": "hookspecs", "hookspec": "hookspecs"}

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


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
