"""The wheel holds the package data, and a non-editable install works outside the source tree."""

from __future__ import annotations

import configparser
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

import connector
from freshinstall import clean_env as _clean_env

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_is_named_with_the_package_version(wheel: Path) -> None:
    assert wheel.name == f"mqtt_connector-{connector.__version__}-py3-none-any.whl"


def test_wheel_contains_the_package_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        # the MQTT connector's manifest and schemas: the single copy at the repository's top level,
        # carried inside the package
        for top, packaged in [("manifest.json", "connector/mqtt/manifest.json")] + [
                (f"schemas/{p.name}", f"connector/mqtt/schemas/{p.name}") for p in (ROOT / "schemas").glob("*.json")]:
            assert packaged in names, f"{packaged} is not in the wheel"
            assert zf.read(packaged) == (ROOT / top).read_bytes()
        assert zf.read("connector/sdk/manifest.schema.json") == (ROOT / "connector/sdk/manifest.schema.json").read_bytes()
        manifest = json.loads(zf.read("connector/mqtt/manifest.json"))
        for key in ("connection_schema", "operation_schema"):
            assert f"connector/mqtt/{manifest[key]}" in names
        schemas = {n for n in names if n.startswith("connector/mqtt/schemas/")}
        assert schemas == {f"connector/mqtt/schemas/{p.name}" for p in (ROOT / "schemas").glob("*.json")}
        for module in ("connector/__main__.py", "connector/sdk/hookspecs.py", "connector/mqtt/plugin.py",
                       "connector/harness/cli.py", "connector/console/app.py"):
            assert module in names
        # the console's page and the browser libraries it uses, offline (no CDN)
        for static in (ROOT / "connector/console/static").rglob("*"):
            if static.is_file():
                packaged = str(static.relative_to(ROOT))
                assert packaged in names and zf.read(packaged) == static.read_bytes(), packaged
        assert "connector/console/static/vendor/jsoneditor.js" in names


def test_the_repository_holds_one_copy_of_the_manifest_and_schemas() -> None:
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    names = tracked.stdout.splitlines()
    names = [n for n in names if not n.startswith("examples/")]  # other connectors, each with its own
    assert [n for n in names if n.endswith("manifest.json")] == ["manifest.json"]
    assert sorted(n for n in names if n.endswith(".schema.json") and n != "connector/sdk/manifest.schema.json") == \
        sorted(f"schemas/{p.name}" for p in (ROOT / "schemas").glob("*.json"))


def test_wheel_ships_only_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        stray = [n for n in zf.namelist() if not n.startswith(("connector/", "mqtt_connector-"))]
        assert stray == []
        assert not [n for n in zf.namelist() if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_declares_the_entry_points_and_dependencies(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        info = f"mqtt_connector-{connector.__version__}.dist-info"
        entry_points = configparser.ConfigParser()
        entry_points.read_string(zf.read(f"{info}/entry_points.txt").decode())
        metadata = zf.read(f"{info}/METADATA").decode()
    assert dict(entry_points["connector_sdk.connectors"]) == {"mqtt": "connector.mqtt.plugin"}
    assert dict(entry_points["console_scripts"]) == {"mqtt-connector": "connector.__main__:main",
                                                     "tap-mqtt": "connector.singer.cli:tap",
                                                     "target-mqtt": "connector.singer.cli:target"}
    assert dict(entry_points["pytest11"]) == {"connector_acceptance": "connector.acceptance.plugin"}
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for dependency in ("pluggy", "paho-mqtt", "jsonschema", "jsonschema-rs", "amqtt", "argcomplete"):
        assert any(r.startswith(dependency) and "extra ==" not in r for r in requires), (dependency, requires)
    # the Singer adapter's singer-sdk only with the extra
    assert [r.replace('"', "'") for r in requires if r.startswith("singer-sdk")] == [
        "singer-sdk<0.55,>=0.54; extra == 'singer'"]
    # the console's server only with its extra
    assert [r.replace('"', "'") for r in requires if r.startswith(("starlette", "uvicorn"))] == [
        "starlette<2,>=1.0; extra == 'console'", "uvicorn>=0.30; extra == 'console'"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_non_editable_install_in_a_fresh_venv(fresh_install: Path, tmp_path: Path) -> None:
    env = _clean_env()
    bin_dir, venv = fresh_install, fresh_install.parent

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run([str(bin_dir / "python"), "-c", "import connector; print(connector.__file__)"],
                           capture_output=True, text=True, timeout=60, env=env, cwd=outside)
    assert where.returncode == 0, where.stderr
    installed = Path(where.stdout.strip())
    assert installed.is_relative_to(venv), f"imported {installed}, not the installed copy"
    assert not installed.is_relative_to(ROOT)

    done = subprocess.run([str(bin_dir / "mqtt-connector"), "describe"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=outside)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert f"MQTT connector {connector.__version__}" in text
    options = text.split("\nOptions\n", 1)[1]
    positions = [options.index(f"  {title}  [{name}:") for title, name in (
        ("Action", "action"), ("Topic", "topic"), ("Quality of Service", "qos"), ("Retained Message", "retained"))]
    assert positions == sorted(positions)
    assert "0 - At most once" in options and "2 - Exactly once" in options

    done = subprocess.run([str(bin_dir / "mqtt-connector"), "describe", "--json"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=outside)
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["operation_schema"]["x-order"][:4] == ["action", "topic", "qos", "retained"]
    assert described["connection_schema"]["properties"]["password"]["writeOnly"] is True
    # served from the installed package: exactly the files at the top of the repository
    manifest = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    assert described == {**manifest, **{key: json.loads((ROOT / manifest[key]).read_text(encoding="utf-8"))
                                        for key in ("connection_schema", "operation_schema")}}
