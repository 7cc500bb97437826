"""paho-mqtt's private names live in one module, connector/mqtt/paho_client.py, which checks at
import (connector/mqtt/paho_check.py) the installed paho's version and every private name it uses."""

from __future__ import annotations

import ast
import importlib.util
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import paho.mqtt as paho_mqtt
import paho.mqtt.client as paho
import pytest

import connector
from connector.mqtt import paho_check
from connector.sdk.errors import PluginError

PAHO = Path(paho.__file__).parent
CONNECTOR = Path(connector.__file__).parent
CLIENT = CONNECTOR / "mqtt" / "paho_client.py"
CHECK = CONNECTOR / "mqtt" / "paho_check.py"
ROOT = CONNECTOR.parent


def _private(name: str) -> bool:
    return re.fullmatch(r"_[A-Za-z]\w*", name) is not None and not name.endswith("__")


def paho_private_names() -> set[str]:
    """Every private name paho-mqtt's own source defines: modules, classes, functions, attributes."""
    names = {path.stem for path in PAHO.glob("*.py") if _private(path.stem)}
    for path in PAHO.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {name for name in names if _private(name)}


class _Uses(ast.NodeVisitor):
    """The private paho names a module uses: imported from paho, overridden in a subclass of paho's,
    read or set on any object but ``self`` / ``super()`` of a class of its own, or named in getattr()
    and its kind."""

    def __init__(self, names: set[str]) -> None:
        self.names, self.found, self.paho_aliases = names, set[str](), {"paho"}
        self.in_paho_class = [False]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.startswith("paho"):
                self.found |= {part for part in alias.name.split(".") if _private(part)}
                self.paho_aliases.add((alias.asname or alias.name).split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if (node.module or "").startswith("paho"):
            self.found |= {part for part in (node.module or "").split(".") if _private(part)}
            self.found |= {alias.name for alias in node.names if _private(alias.name)}
            self.paho_aliases |= {alias.asname or alias.name for alias in node.names}

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.in_paho_class.append(any(ast.unparse(base).split(".")[0] in self.paho_aliases for base in node.bases))
        self.generic_visit(node)
        self.in_paho_class.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name in self.names and self.in_paho_class[-1]:  # overrides paho's private method
            self.found.add(node.name)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        own = ((isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
               or (isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "super"))
        if node.attr in self.names and (not own or self.in_paho_class[-1]):
            self.found.add(node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in self.names):
            self.found.add(node.args[1].value)
        self.generic_visit(node)


def private_uses(source: str, names: set[str]) -> set[str]:
    uses = _Uses(names)
    uses.visit(ast.parse(source))
    return uses.found


@pytest.fixture(scope="module")
def names() -> set[str]:
    found = paho_private_names()
    assert {"_out_messages", "_handle_publish", "_published", "_packet", "_ConnectionState"} <= found
    return found


def test_the_scan_finds_each_way_of_reaching_into_paho(names: set[str]) -> None:
    """The scan itself: it must see every kind of use, or the next test would pass on nothing."""
    source = '''
import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import _ConnectionState
class Mine(paho.Client):
    def f(self): return self._out_messages, super()._sock_close()
    def _handle_pubrel(self): pass
class Other:
    def g(self, info, sock):
        self._state = 1  # its own attribute, though paho has one of that name
        return info._published, getattr(sock, "_socket", sock)
'''
    assert private_uses(source, names) == {"_packet", "_ConnectionState", "_out_messages", "_sock_close",
                                           "_handle_pubrel", "_published", "_socket"}


def test_only_paho_client_uses_paho_private_names(names: set[str]) -> None:
    outside = {}
    for path in sorted(CONNECTOR.rglob("*.py")):
        found = private_uses(path.read_text(encoding="utf-8"), names)
        if found and path not in (CLIENT, CHECK):
            outside[str(path.relative_to(ROOT))] = sorted(found)
    assert outside == {}
    # The check only looks up the places of the names it lists, which paho_client.py uses.
    listed = {part for place, listed in paho_check.PRIVATE_NAMES.items() for part in (*place.split("."), *listed)}
    assert private_uses(CHECK.read_text(encoding="utf-8"), names) <= listed


def test_paho_client_uses_exactly_the_private_names_checked_at_import(names: set[str]) -> None:
    used = private_uses(CLIENT.read_text(encoding="utf-8"), names)
    checked = {name for listed in paho_check.PRIVATE_NAMES.values() for name in listed if _private(name)}
    assert len(used) >= 20  # the subclass needs them: a scan that found nothing would prove nothing
    assert used == checked


def test_the_checked_series_is_what_pyproject_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert paho_check.REQUIREMENT in project["dependencies"]
    assert all(release.startswith("2.2.") for release in paho_check.CHECKED)  # >=2.2,<2.3
    assert paho_mqtt.__version__ in paho_check.CHECKED  # the installed one is a checked one


@pytest.mark.parametrize(("version", "level"), [
    ("2.2.0", None), ("2.2.7", None), ("2.2.1rc1", None),  # a checked release, its patch releases
    ("2.3.0", logging.WARNING), ("2.1.0", logging.WARNING), ("nightly", logging.WARNING),
    ("3.0.0", logging.ERROR), ("1.6.1", logging.ERROR),
])
def test_a_version_outside_the_checked_series_warns_and_another_major_one_is_refused(version: str,
                                                                                       level: int | None) -> None:
    problem = paho_check.version_problem(version)
    assert (problem and problem[0]) == level
    if problem is not None:
        assert "\n" not in problem[1]
        assert f"paho-mqtt {version} is installed" in problem[1] and "2.2.0" in problem[1]
        assert paho_check.REQUIREMENT in problem[1]


def _import_afresh(path: Path) -> ModuleType:
    """The module run again as if imported for the first time, without replacing the imported one."""
    spec = importlib.util.spec_from_file_location(f"fresh_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_refuses_another_major_release_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paho_mqtt, "__version__", "3.0.0")
    with pytest.raises(ImportError) as refused:
        _import_afresh(CHECK)
    assert isinstance(refused.value, PluginError)  # what a runtime reports as a broken connector
    assert str(refused.value) == ("paho-mqtt 3.0.0 is installed; the MQTT connector works with paho-mqtt 2.2.0 "
                                  "(and its patch releases) only, whose internals it relies on: install "
                                  "paho-mqtt>=2.2,<2.3")


def test_import_warns_once_on_another_minor_release(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(paho_mqtt, "__version__", "2.3.0")
    with caplog.at_level(logging.WARNING, "connector.mqtt"):
        _import_afresh(CHECK)
    assert [record.getMessage() for record in caplog.records] == [
        "paho-mqtt 2.3.0 is installed; the MQTT connector was checked against paho-mqtt 2.2.0 only and relies on "
        "its internals: if delivery misbehaves, install paho-mqtt>=2.2,<2.3"]
    caplog.clear()
    monkeypatch.setattr(paho_mqtt, "__version__", "2.2.3")
    with caplog.at_level(logging.WARNING, "connector.mqtt"):
        _import_afresh(CHECK)
    assert caplog.records == []


def test_import_refuses_a_paho_without_a_method_the_client_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(paho.Client, "_handle_pubrel")
    with pytest.raises(ImportError, match=r"^paho-mqtt 2\.2\.0 lacks paho\.mqtt\.client\.Client\._handle_pubrel, "
                                          r"which the MQTT connector relies on \(checked against paho-mqtt 2\.2\.0\)"):
        _import_afresh(CHECK)


def test_import_refuses_a_paho_whose_objects_lack_an_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attributes paho's __init__ sets are looked up on real objects, not on the classes."""
    real_client, real_info = paho.Client.__init__, paho.MQTTMessageInfo.__init__

    def client_without(self: paho.Client, *args: object, **kwargs: object) -> None:
        real_client(self, *args, **kwargs)
        del self._out_messages

    def info_without(self: paho.MQTTMessageInfo, mid: int) -> None:
        real_info(self, mid)
        del self._published

    monkeypatch.setattr(paho.Client, "__init__", client_without)
    monkeypatch.setattr(paho.MQTTMessageInfo, "__init__", info_without)
    assert paho_check.missing_names() == ["paho.mqtt.client.Client._out_messages",
                                          "paho.mqtt.client.MQTTMessageInfo._published"]
    with pytest.raises(ImportError, match="lacks paho.mqtt.client.Client._out_messages, "
                                          "paho.mqtt.client.MQTTMessageInfo._published, which"):
        _import_afresh(CHECK)


def test_the_installed_paho_has_every_name() -> None:
    assert paho_check.missing_names() == []


def test_the_command_line_says_so_in_one_line_before_any_private_name_is_touched() -> None:
    """The whole connector on paho 3: the check runs before paho_client's own private imports, and
    the runtime reports it as a broken connector (exit 2), without a traceback."""
    script = ("import sys, paho.mqtt; paho.mqtt.__version__ = '3.0.0'; sys.argv = ['mqtt-connector', 'check', "
              "'--port', '1']; import runpy; runpy.run_module('connector', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stderr.splitlines() == [
        "error: paho-mqtt 3.0.0 is installed; the MQTT connector works with paho-mqtt 2.2.0 (and its patch "
        "releases) only, whose internals it relies on: install paho-mqtt>=2.2,<2.3"]
    assert done.returncode == 2
