"""Start-up: the help of every command loads no connector's action code and none of the heavy
libraries (the time is measured by ``python -m bench``; here, not timed, what must not be
imported), and the SDK's own reading of entry points finds what importlib.metadata finds."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from connector.sdk import entrypoints

#: Imported by no ``--help``: the libraries a run needs, and the connectors' action modules.
NOT_FOR_HELP = ("jsonschema", "paho", "amqtt", "importlib.metadata", "email", "logging", "sqlite3", "asyncio",
                "connector.mqtt.connection", "connector.mqtt.send", "connector.mqtt.listen", "connector.mqtt.broker",
                "connector.harness.runtime", "connector.harness.reports", "connector.harness.inputs",
                "connector.sdk.documents", "connector.sdk.listener",
                "disk_connector.listen", "disk_connector.send", "disk_connector.folders", "disk_connector.rules")

_LOADED = """
import contextlib, io, json, sys
from connector.__main__ import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "help": out.getvalue(), "modules": sorted(sys.modules)}))
"""


# The top-level help loads every connector's plugin (for their commands); a schema command's, its schemas.
@pytest.mark.parametrize("argv", [["--help"], ["send", "--help"], ["listen", "--help"]], ids=" ".join)
def test_help_loads_no_action_code_and_no_heavy_library(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", _LOADED, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["code"] == 0 and shown["help"].startswith("usage: ")
    loaded = [m for m in shown["modules"] if any(m == name or m.startswith(name + ".") for name in NOT_FOR_HELP)]
    assert loaded == []


@pytest.mark.parametrize("group", ["connector_sdk.connectors", "console_scripts", "pytest11"])
def test_the_entry_points_are_those_importlib_metadata_finds(group: str) -> None:
    found = sorted((ep.name, ep.value) for ep in entrypoints.entry_points(group))
    assert found == sorted((ep.name, ep.value) for ep in metadata.entry_points(group=group))
    assert found


def test_entry_points_in_a_zip_on_the_path_are_found_through_importlib_metadata(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\nVersion: 1.0\n")
        z.writestr("zipped-1.0.dist-info/entry_points.txt", "[connector_sdk.connectors]\nzipped = zipped.plugin\n")
    monkeypatch.syspath_prepend(str(archive))
    found = {ep.name: ep for ep in entrypoints.entry_points("connector_sdk.connectors")}
    assert found["zipped"].value == "zipped.plugin"
    assert entrypoints.distribution(found["zipped"]).metadata["Name"] == "zipped"
    assert entrypoints.distribution(found["mqtt"]).metadata["Name"] == "mqtt-connector"


def test_a_section_and_its_entries_are_read_as_importlib_metadata_reads_them(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "Some.Thing-2.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("# comment\n[connector_sdk.connectors]\n a =  a.plugin:hooks [extra]\n"
                                           "\n[other]\nb = b.plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = {ep.name: ep.value for ep in entrypoints.entry_points("connector_sdk.connectors")}
    assert found["a"] == "a.plugin:hooks [extra]" and "b" not in found
    assert found == {ep.name: ep.value for ep in metadata.entry_points(group="connector_sdk.connectors")}
