"""``ConnectorAcceptance``: the standard tests every connector passes, on its own live endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.acceptance.configuration import ConfigurationPromises
from connector.acceptance.listen import ListenPromises
from connector.acceptance.secrets import SecretPromises
from connector.acceptance.send import SendPromises
from connector.acceptance.support import CommandLine
from connector.harness.runtime import Runtime
from connector.sdk.manifest import Manifest


class ConnectorAcceptance(ConfigurationPromises, SecretPromises, SendPromises, ListenPromises):
    """The acceptance kit: what the SDK promises of every connector, as tests.

    Subclass it in a connector's tests (the class name must start with ``Test``), set
    ``connector_id``, and provide the ``endpoint`` fixture (function scope: a fresh place per
    test, e.g. a unique topic or folder) returning an :class:`~connector.acceptance.Endpoint`.
    The connector must be installed (its entry point): the kit runs it through the harness's
    Python API and its command line (``python -m connector ... --connector ID``), as a runtime
    would. Each test's docstring states the promise it checks.
    """

    #: The manifest id of the connector under test.
    connector_id: str

    pytestmark = pytest.mark.connector_acceptance

    @pytest.fixture
    def endpoint(self) -> object:
        raise NotImplementedError(f"{type(self).__name__} must provide the 'endpoint' fixture (see "
                                  "connector.acceptance.Endpoint)")

    @pytest.fixture
    def kit_runtime(self) -> Runtime:
        """The harness's Python API, with the installed connectors."""
        if not isinstance(getattr(self, "connector_id", None), str):
            raise TypeError(f"{type(self).__name__} must set connector_id to the connector's manifest id")
        return Runtime(default_connector=self.connector_id)

    @pytest.fixture
    def kit_manifest(self, kit_runtime: Runtime) -> Manifest:
        return kit_runtime.manifest(self.connector_id)

    @pytest.fixture
    def kit_cli(self, kit_runtime: Runtime, tmp_path: Path) -> CommandLine:
        """The command line, run in a subprocess in the test's temporary folder."""
        return CommandLine(self.connector_id, tmp_path)
