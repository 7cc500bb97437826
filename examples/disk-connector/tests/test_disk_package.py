"""The connector as its users get it: a wheel carrying manifest.json and schemas/, found through
its entry point, its manifest and schemas valid against the SDK's metaschemas."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from connector.sdk.manifest import Manifest

HERE = Path(__file__).resolve().parent.parent


def test_the_manifest_and_schemas_pass_the_authors_check() -> None:
    manifest = Manifest.load("disk_connector").check()
    assert manifest.id == "disk" and set(manifest.actions) == {"send", "listen"}
    fields = manifest.operation_schema["properties"]
    assert set(manifest.operation_schema["x-order"]) == set(fields)
    for name in ("max_attempts", "retry_delay", "dead_letter_topic"):  # the SDK's retry policy reads them
        assert fields[name]["x-actions"] == ["listen"]
    assert fields["dead_letter_topic"]["title"] == "Failed Folder"


def test_the_entry_point_is_named_by_the_manifest_id() -> None:
    [entry] = [ep for ep in metadata.entry_points(group="connector_sdk.connectors") if ep.name == "disk"]
    assert entry.value == "disk_connector.plugin"


@pytest.mark.slow
def test_the_wheel_carries_the_manifest_and_schemas(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(HERE)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, f"building the wheel failed:\n{done.stdout}\n{done.stderr}"
    [wheel] = tmp_path.glob("disk_connector-*.whl")
    tops = ["manifest.json", *(f"schemas/{p.name}" for p in (HERE / "schemas").glob("*.json"))]
    with zipfile.ZipFile(wheel) as zf:
        for top in tops:
            assert zf.read(f"disk_connector/{top}") == (HERE / top).read_bytes(), top
        assert "disk_connector/plugin.py" in zf.namelist()
