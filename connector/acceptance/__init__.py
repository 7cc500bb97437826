"""The acceptance kit: a standard test suite any connector runs on its own live endpoint.

A connector's test file::

    import pytest
    from connector.acceptance import ConnectorAcceptance, Endpoint

    class TestDiskAcceptance(ConnectorAcceptance):
        connector_id = "disk"

        @pytest.fixture
        def endpoint(self, tmp_path):
            ...
            return Endpoint(...)

and ``pytest tests/test_acceptance.py`` runs it (docs/sdk.md, "The acceptance kit"). The pytest
plugin (:mod:`connector.acceptance.plugin`) only declares the ``connector_acceptance`` marker:
pytest loads it in every session, so this package imports the kit (the harness, the SDK) only
when a test module asks for ``ConnectorAcceptance`` or ``Endpoint``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.acceptance.endpoint import Endpoint
    from connector.acceptance.kit import ConnectorAcceptance

__all__ = ["ConnectorAcceptance", "Endpoint"]


def __getattr__(name: str) -> Any:
    if name == "Endpoint":
        from connector.acceptance.endpoint import Endpoint

        return Endpoint
    if name == "ConnectorAcceptance":
        from connector.acceptance.kit import ConnectorAcceptance

        return ConnectorAcceptance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
