"""The acceptance kit's pytest plugin (entry point ``pytest11``): loaded by every pytest session
of everyone who installed the package, so it only declares the marker. The kit itself is
imported by a connector's test module (``from connector.acceptance import ConnectorAcceptance``)."""

from __future__ import annotations

from typing import Any

MARKER = "connector_acceptance"


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: a test of the connector acceptance kit (connector.acceptance); "
        f"-m {MARKER} runs only those")
