"""Whether the disk connector is installed: the other test modules need it."""

from __future__ import annotations

import os
from importlib import metadata

import pytest

HOW = "pip install ./examples/disk-connector"


def test_the_disk_connector_is_installed() -> None:
    if any(ep.name == "disk" for ep in metadata.entry_points(group="connector_sdk.connectors")):
        return
    if os.environ.get("CI"):
        pytest.fail(f"the disk connector is not installed: CI must install it ({HOW}; .ci/run does)", pytrace=False)
    pytest.skip(f"the disk connector is not installed, so its tests were not collected ({HOW})")
