"""The disk connector's tests run only where it is installed (``pip install ./examples/disk-connector``,
as ``.ci/run`` does): elsewhere the one test of test_disk_installed.py says why they were skipped,
and fails in CI (``CI=true``)."""

from __future__ import annotations

from importlib import metadata

INSTALLED = any(ep.name == "disk" for ep in metadata.entry_points(group="connector_sdk.connectors"))

if not INSTALLED:
    # The other modules import the connector: not collected, the reason is test_disk_installed's.
    collect_ignore_glob = ["test_disk_[!i]*.py", "test_acceptance.py"]
