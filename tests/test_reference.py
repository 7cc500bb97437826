"""docs/reference.md is what ``python -m connector.harness.reference`` generates now: every command's
flags from the parser the command line builds, every field of every connector CI installs (mqtt, disk)
from its schemas. A new flag or field makes the committed file differ until it is regenerated."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from connector.__main__ import DEFAULT_CONNECTOR, PROG
from connector.harness.parser import build_parser
from connector.harness.reference import _commands, regenerate_command, render
from connector.sdk.plugins import installed_connectors

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
CONNECTORS = ("mqtt", "disk")


@pytest.fixture(scope="module")
def generated() -> str:
    missing = [c for c in CONNECTORS if c not in installed_connectors().manifests]
    if missing:
        pytest.skip(f"not installed: {missing} (pip install -e ./examples/disk-connector)")
    command = regenerate_command(PROG, DEFAULT_CONNECTOR, CONNECTORS, "docs/reference.md")
    return render(PROG, DEFAULT_CONNECTOR, CONNECTORS, command)


def test_the_committed_reference_is_current(generated: str) -> None:
    command = regenerate_command(PROG, DEFAULT_CONNECTOR, CONNECTORS, "docs/reference.md")
    assert REFERENCE.read_text(encoding="utf-8") == generated, \
        f"docs/reference.md is out of date: regenerate it with `{command}` and commit it"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")}


@pytest.mark.parametrize("connector_id", CONNECTORS)
def test_every_flag_of_every_command_is_in_the_reference(generated: str, connector_id: str) -> None:
    top = build_parser(PROG, DEFAULT_CONNECTOR, argv=["help"], connector_commands={})
    missing = []
    for name in _commands(top):
        parser = _commands(build_parser(PROG, DEFAULT_CONNECTOR, argv=[name, "--connector", connector_id],
                                        connector_commands={}))[name]
        missing += [f"{name} {o}" for o in sorted(_options(parser)) if f"`{o}" not in generated]
        assert f"### `{PROG} {name}`" in generated
    assert missing == []


@pytest.mark.parametrize("connector_id", CONNECTORS)
def test_every_field_is_in_the_reference(generated: str, connector_id: str) -> None:
    manifest = installed_connectors().manifest(connector_id)
    section = generated.split(f"## Connector `{connector_id}`", 1)[1].split("\n## ", 1)[0]
    for schema in (manifest.connection_schema, manifest.operation_schema):
        for name, prop in schema["properties"].items():
            assert f"(field `{name}`;" in section, name
            assert " ".join(prop.get("description", "").split()) in section, name

