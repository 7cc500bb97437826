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
plugin (:mod:`connector.acceptance.plugin`) only declares the ``connector_acceptance`` marker;
nothing here is imported until a test module imports it.
"""

from connector.acceptance.endpoint import Endpoint
from connector.acceptance.kit import ConnectorAcceptance

__all__ = ["ConnectorAcceptance", "Endpoint"]
