"""Meta-tests of the plugin contract, in the style of datasette's tests/test_plugins.py.

Every hook is specified, prefixed, documented (with its exact signature) and implemented; the
plugin manager loads connectors only through entry points, fails loudly on a misspelled hook,
honours the block list, registers each connector under its manifest id and calls one connector's
hooks only for it when several are installed; the one-way doors between sdk, mqtt and harness hold.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy
import pytest

from connector.harness.runtime import Runtime
from connector.harness.sinks import CollectingSink
from connector.mqtt import plugin as mqtt_plugin
from connector.sdk import hookimpl, hookspecs
from connector.sdk.documents import Document, Result, Status
from connector.sdk.errors import ConfigError, PluginError
from connector.sdk.listener import Listener
from connector.sdk.manifest import Manifest
from connector.sdk.plugins import BLOCK_ENV, CHECK_ENV, ENTRY_POINT_GROUP, Connectors, create_plugin_manager
from installed import BESIDE_MQTT

ROOT = Path(__file__).resolve().parent.parent
SPEC_ATTR = f"{hookspecs.PROJECT}_spec"


def _specs() -> dict[str, Any]:
    return {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, SPEC_ATTR)}


HOOKS = sorted(_specs())


def test_the_spec_module_has_the_hooks() -> None:
    assert HOOKS == ["connector_check", "connector_commands", "connector_describe_operation", "connector_listen",
                     "connector_manifest", "connector_max_document_size", "connector_open", "connector_send",
                     "connector_validate"]


# -- every hook: specified, prefixed, documented, implemented --------------------------------------

@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_has_a_docstring_and_the_prefix(name: str) -> None:
    spec = _specs()[name]
    assert name.startswith("connector_")
    doc = inspect.getdoc(spec)
    assert doc and len(doc.splitlines()) >= 3, f"{name}: the docstring is the contract"


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_dispatch_rules(name: str) -> None:
    spec = _specs()[name]
    opts = getattr(spec, SPEC_ATTR)
    params = list(inspect.signature(spec).parameters)
    doc = inspect.getdoc(spec) or ""
    # no hook takes a connector id: a connector's hooks are called for it only
    assert "connector_id" not in params, name
    if name == "connector_manifest":
        assert not opts["firstresult"] and params == []
    else:
        # called for one plugin: its one answer is the result (None when it does not implement it)
        assert opts["firstresult"], name
    assert "connector_id" not in doc, f"{name}: the docstring still speaks of a connector id"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_implemented_by_the_mqtt_connector(name: str) -> None:
    pm = create_plugin_manager()
    implementers = [impl.plugin_name for impl in getattr(pm.hook, name).get_hookimpls()]
    assert "mqtt" in implementers
    impl = getattr(mqtt_plugin, name)
    assert hasattr(impl, f"{hookspecs.PROJECT}_impl")
    # the implementation takes the spec's arguments, by the same names
    assert list(inspect.signature(impl).parameters) == list(inspect.signature(_specs()[name]).parameters)


@pytest.fixture(scope="module")
def sdk_doc() -> str:
    path = ROOT / "docs" / "sdk.md"
    assert path.is_file(), "docs/sdk.md documents the hooks"
    return path.read_text(encoding="utf-8")


def _documented_signatures(sdk_doc: str) -> dict[str, list[str]]:
    """The hook table of docs/sdk.md: ``| `connector_x(a, b)` | ...`` per hook, as datasette's docs do."""
    found: dict[str, list[str]] = {}
    for name, params in re.findall(r"^\|\s*`(connector_[a-z_]+)\(([^)`]*)\)`\s*\|", sdk_doc, re.MULTILINE):
        assert name not in found, f"docs/sdk.md documents {name} twice"
        found[name] = [p.strip() for p in params.split(",") if p.strip()]
    return found


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_exact_signature(sdk_doc: str, name: str) -> None:
    documented = _documented_signatures(sdk_doc)
    assert name in documented, f"docs/sdk.md's hook table does not document {name}"
    assert documented[name] == list(inspect.signature(_specs()[name]).parameters), \
        f"docs/sdk.md documents {name}({', '.join(documented[name])}), the spec says {inspect.signature(_specs()[name])}"


def test_the_signature_parser_reads_the_table() -> None:
    table = "| hook | x |\n|---|---|\n| `connector_open(connection)` | y |\n| `connector_commands()` | z |\n"
    assert _documented_signatures(table) == {"connector_open": ["connection"], "connector_commands": []}


def test_docs_name_no_hook_that_does_not_exist(sdk_doc: str) -> None:
    called = set(re.findall(r"`(connector_[a-z_]+)`\s*\|", sdk_doc)) | set(re.findall(r"\b(connector_[a-z_]+)\(", sdk_doc))
    assert called, "the docs show no hook at all"
    assert called <= set(HOOKS)


def test_mqtt_plugin_implements_nothing_but_hooks() -> None:
    impls = {name for name, fn in vars(mqtt_plugin).items() if hasattr(fn, f"{hookspecs.PROJECT}_impl")}
    assert impls == set(HOOKS)


@pytest.mark.parametrize("path", [Path(mqtt_plugin.__file__), Path(__file__)])
def test_no_hook_implementation_compares_connector_ids(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("connector_"):
            assert "connector_id" not in [a.arg for a in node.args.args], f"{path.name}: {node.name}"
            if node.name != "connector_manifest":  # the manifest says the id; nothing else looks at one
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                assert not names & {"connector_id", "CONNECTOR_ID", "ID"}, f"{path.name}: {node.name} looks at an id"


# -- loading -------------------------------------------------------------------------------------

def test_the_mqtt_connector_is_found_through_its_entry_point() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps.get("mqtt") == "connector.mqtt.plugin"
    pm = create_plugin_manager(block=BESIDE_MQTT)
    assert pm.get_plugin("mqtt") is mqtt_plugin
    assert [dist.project_name for _, dist in pm.list_plugin_distinfo()] == ["mqtt-connector"]
    assert set(Connectors(pm).manifests) == {"mqtt"}


def test_without_entry_points_nothing_is_installed() -> None:
    pm = create_plugin_manager(entry_points=False)
    assert pm.get_plugin("mqtt") is None
    assert Connectors(pm).manifests == {}
    with pytest.raises(PluginError, match=r"no connector 'mqtt' is installed \(installed: none\)"):
        Runtime(Connectors(pm)).manifest("mqtt")


class Misspelled:
    @hookimpl
    def connector_manifest(self) -> Manifest:  # pragma: no cover - never called
        raise AssertionError

    @hookimpl
    def connector_sned(self, connection: Any, operation: Any, documents: Any) -> None:  # pragma: no cover
        return None


class WrongArgument:
    @hookimpl
    def connector_open(self, conn: Any) -> None:  # pragma: no cover
        return None


def test_a_misspelled_hook_fails_loudly() -> None:
    with pytest.raises(PluginError, match="connector_sned") as info:
        create_plugin_manager(plugins=[Misspelled()])
    assert "\n" not in str(info.value).strip()


def test_a_hook_with_a_wrong_argument_fails_loudly() -> None:
    with pytest.raises(PluginError, match=r"connector_open.*\{'conn'\}") as info:
        create_plugin_manager(plugins=[WrongArgument()], entry_points=False)
    assert "\n" not in str(info.value)


def test_pluggy_alone_would_have_ignored_the_misspelling() -> None:
    # why check_pending() matters: without it the misspelled hook is silently never called
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(Misspelled())
    assert pm.hook.connector_send(connection=None, operation={}, documents=[]) is None


def test_block_list_parameter_prevents_loading() -> None:
    pm = create_plugin_manager(block=["mqtt", *BESIDE_MQTT])
    assert pm.get_plugin("mqtt") is None and pm.is_blocked("mqtt")
    assert Connectors(pm).manifests == {}


def test_block_list_environment_variable_prevents_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BLOCK_ENV, " other , mqtt")
    pm = create_plugin_manager()
    assert pm.get_plugin("mqtt") is None
    assert pm.is_blocked("other") and pm.is_blocked("mqtt")
    monkeypatch.setenv(BLOCK_ENV, "other")
    assert create_plugin_manager().get_plugin("mqtt") is mqtt_plugin


def test_block_list_from_the_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "connector", "describe"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, BLOCK_ENV: ",".join(["mqtt", *BESIDE_MQTT])})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "no connector 'mqtt' is installed" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def broken_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed distribution whose connector entry point raises when imported."""
    site = tmp_path / "site"
    (site / "broken_connector_dist-1.0.dist-info").mkdir(parents=True)
    (site / "broken_connector_dist-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-connector-dist\nVersion: 1.0\n")
    (site / "broken_connector_dist-1.0.dist-info" / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbroken = broken_connector_plugin\n")
    (site / "broken_connector_plugin.py").write_text("raise RuntimeError('this connector must not be imported')\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "broken_connector_plugin", raising=False)
    return "broken"


def test_a_connector_that_does_not_import_is_a_plugin_error(broken_distribution: str) -> None:
    with pytest.raises(PluginError, match="a connector failed to load: RuntimeError: this connector must not be imported"):
        create_plugin_manager()


def test_a_blocked_connector_is_never_imported(broken_distribution: str) -> None:
    pm = create_plugin_manager(block=[broken_distribution])
    assert "broken_connector_plugin" not in sys.modules
    assert pm.get_plugin("mqtt") is mqtt_plugin


# -- two connectors side by side -----------------------------------------------------------------

FAKE_CONNECTION_SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string", "title": "Path", "description": "Where.", "default": "/fake"}},
    "additionalProperties": False,
}
FAKE_OPERATION_SCHEMA = {
    "type": "object",
    "properties": {
        "action": {"enum": ["send", "listen"], "title": "Action", "description": "What."},
        "upper": {"type": "boolean", "title": "Upper", "description": "Shout.", "default": False},
    },
    "required": ["action"],
    "additionalProperties": False,
}


class FakeConnection:
    def __init__(self, connector: FakeConnector, config: Mapping[str, Any]) -> None:
        self.connector, self.config, self.closed = connector, dict(config), False

    def close(self) -> None:
        self.closed = True
        self.connector.calls.append(("close",))

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeConnector:
    """A second connector, id "fake", that records every call it gets. Like every connector, it
    never asks which connector a call is meant for: before connectors were registered under their
    ids, it would have answered for every id."""

    ID = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.sent: list[bytes] = []

    @hookimpl
    def connector_manifest(self) -> Manifest:
        raw = {"id": self.ID, "name": "Fake", "version": "1", "description": "A test double.",
               "connection_schema": "-", "operation_schema": "-", "document_properties": {},
               "actions": {"send": {"title": "Send", "description": "-", "reads": [], "writes": []},
                           "listen": {"title": "Listen", "description": "-", "reads": [], "writes": []}}}
        return Manifest(id=self.ID, name="Fake", version="1", description=raw["description"], actions=raw["actions"],
                        document_properties={}, connection_schema=FAKE_CONNECTION_SCHEMA,
                        operation_schema=FAKE_OPERATION_SCHEMA, raw=raw)

    @hookimpl
    def connector_validate(self, connection: Mapping[str, Any],
                           operation: Mapping[str, Any] | None) -> list[str] | None:
        self.calls.append(("validate", operation))
        if operation is not None and operation.get("upper") and operation.get("action") == "listen":
            return ["operation upper: the fake cannot shout while it listens"]
        return []

    @hookimpl
    def connector_open(self, connection: Mapping[str, Any]) -> FakeConnection | None:
        self.calls.append(("open", dict(connection)))
        return FakeConnection(self, connection)

    @hookimpl
    def connector_check(self, connection: Mapping[str, Any]) -> str | None:
        self.calls.append(("check", dict(connection)))
        return f"fake at {connection['path']}"

    @hookimpl
    def connector_send(self, connection: Any, operation: Mapping[str, Any],
                       documents: Iterable[Document]) -> Iterator[Result] | None:
        assert isinstance(connection, FakeConnection)
        self.calls.append(("send", dict(operation)))

        def results() -> Iterator[Result]:
            for index, document in enumerate(documents):
                payload = document.payload.upper() if operation["upper"] else document.payload
                self.sent.append(payload)
                yield Result(index, Status.SUCCESS if payload else Status.APPLICATION_ERROR,
                             None if payload else "empty")
        return results()

    @hookimpl
    def connector_listen(self, connection: Any, operation: Mapping[str, Any],
                         listener: Listener) -> int | None:
        self.calls.append(("listen", dict(operation)))
        listener.listening("everything the fake makes up")
        accepted = 0
        for n in range(100):
            if listener.stopping.is_set():
                break
            if listener.submit(Document.of(f"message {n}", topic="fake/x")):
                accepted += 1
        return accepted


@pytest.fixture
def fake() -> FakeConnector:
    return FakeConnector()


@pytest.fixture
def two(fake: FakeConnector) -> Runtime:
    # the fake answers every call it gets: only its own reach it
    return Runtime(Connectors(create_plugin_manager(plugins=[fake], block=BESIDE_MQTT)), default_connector="mqtt")


def test_both_connectors_are_installed_each_under_its_manifest_id(two: Runtime, fake: FakeConnector) -> None:
    assert set(two.connectors.manifests) == {"mqtt", "fake"}
    pm = two.connectors.pm
    assert pm.get_plugin("fake") is fake and pm.get_plugin("mqtt") is mqtt_plugin
    impls = [i.plugin_name for i in pm.hook.connector_send.get_hookimpls()]
    assert sorted(impls) == ["fake", "mqtt"]  # both implement Send ...
    fake_send = two.connectors.get("fake")
    assert (fake_send.id, fake_send.manifest.name) == ("fake", "Fake")
    assert two.connectors.get("fake") is fake_send


def test_a_connector_s_hooks_reach_its_plugin_only(two: Runtime, fake: FakeConnector) -> None:
    # ... but a call for mqtt never reaches the fake, which would answer anything it is asked
    mqtt = two.connectors.get("mqtt")
    assert mqtt.validate(mqtt.manifest.validate_connection({}), None) == []
    assert two.connectors.get("mqtt").describe_operation({"action": "send", "topic": "a", "qos": 1}) == \
        "to 'a' (QoS 1)"
    assert fake.calls == []
    assert two.connectors.get("fake").validate({}, None) == []
    assert fake.calls == [("validate", None)]


def test_two_connectors_that_answer_everything_answer_only_for_themselves() -> None:
    class Other(FakeConnector):
        ID = "other"

    fake, other = FakeConnector(), Other()
    connectors = Connectors(create_plugin_manager(plugins=[fake, other], entry_points=False))
    assert connectors.get("other").check({"path": "/o"}) == "fake at /o"
    assert (fake.calls, other.calls) == ([], [("check", {"path": "/o"})])
    assert connectors.get("fake").open({"path": "/f"}).connector is fake
    assert [c[0] for c in other.calls] == ["check"]


def test_a_plugin_is_registered_again_under_its_manifest_id(fake: FakeConnector) -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(fake, name="files")  # as an entry point named otherwise would be
    with pytest.raises(PluginError, match="registered as 'files' has the manifest id 'fake'"):
        Connectors(pm).manifests
    from connector.sdk.plugins import _register_under_ids

    _register_under_ids(pm)
    assert pm.get_plugin("fake") is fake and pm.get_plugin("files") is None
    assert list(Connectors(pm).manifests) == ["fake"]


def test_an_entry_point_named_otherwise_is_registered_under_the_manifest_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    info = site / "drop_connector_dist-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: drop-connector-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nfiles = drop_connector_plugin:PLUGIN\n")
    (site / "drop_connector_plugin.py").write_text(
        "from test_plugins import FakeConnector\n\nclass Drop(FakeConnector):\n    ID = 'drop'\n\nPLUGIN = Drop()\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "drop_connector_plugin", raising=False)
    pm = create_plugin_manager()
    assert pm.get_plugin("files") is None and pm.get_plugin("drop") is not None
    assert set(Connectors(pm).manifests) == {"mqtt", "drop", *BESIDE_MQTT}
    assert create_plugin_manager(block=["files"]).get_plugin("drop") is None  # blocked by its entry-point name
    assert create_plugin_manager(block=["drop"]).get_plugin("drop") is None  # or by its id


def test_a_plugin_without_a_manifest_is_refused() -> None:
    class Nameless:
        @hookimpl
        def connector_check(self, connection: Any) -> str:  # pragma: no cover
            return "?"

    with pytest.raises(PluginError, match="implements no connector_manifest"):
        create_plugin_manager(plugins=[Nameless()], entry_points=False)


def test_resolve_picks_the_connector() -> None:
    class Other(FakeConnector):
        ID = "other"

    one = Connectors(create_plugin_manager(entry_points=False, plugins=[FakeConnector()]))
    assert one.resolve(None) == "fake" and one.resolve(None, "mqtt") == "fake"  # the only one installed
    assert one.resolve("fake") == "fake"
    several = Connectors(create_plugin_manager(entry_points=False, plugins=[FakeConnector(), Other()]))
    assert several.resolve(None, "other") == "other" and several.resolve("fake", "other") == "fake"
    with pytest.raises(PluginError, match=r"^several connectors are installed \(fake, other\): say which one"):
        several.resolve(None)
    with pytest.raises(PluginError, match=r"^no connector 'mqtt' is installed \(installed: fake, other\)$"):
        several.resolve(None, "mqtt")
    with pytest.raises(PluginError, match=r"^no connector 'nope' is installed \(installed: fake, other\)$"):
        several.resolve("nope", "other")
    with pytest.raises(PluginError, match=r"^no connector 'nope' is installed \(installed: fake, other\)$"):
        several.get("nope")
    with pytest.raises(PluginError, match="^no connector is installed$"):
        Connectors(create_plugin_manager(entry_points=False)).resolve(None)


def test_the_runtime_has_no_default_connector_of_its_own(fake: FakeConnector) -> None:
    pm = create_plugin_manager(plugins=[fake])
    with pytest.raises(PluginError, match="several connectors are installed"):
        Runtime(Connectors(pm)).manifest()
    assert Runtime(Connectors(pm), default_connector="fake").manifest().id == "fake"
    assert Runtime(Connectors(create_plugin_manager(block=BESIDE_MQTT))).manifest().id == "mqtt"  # the only one


def test_a_misspelled_hook_still_fails_through_a_connector(two: Runtime) -> None:
    with pytest.raises(AttributeError):
        two.connectors.get("fake")._call("connector_sned", connection={})


def test_the_summary_phrase_is_the_connector_s_or_none(two: Runtime) -> None:
    assert two.describe_operation({"action": "send", "topic": "a/b", "qos": 1, "retained": True}) == \
        "to 'a/b' (QoS 1, retained)"
    assert two.describe_operation({"action": "listen", "topic": ["a/#", "b"], "qos": 1, "filter_qos": {"b": 0}}) == \
        "on 'a/#' (QoS 1), 'b' (QoS 0)"
    assert two.describe_operation({"action": "send"}, "fake") is None  # the fake has no such hook
    assert two.connectors.get("fake").commands() == []


def test_send_reaches_the_fake_connector_only(two: Runtime, fake: FakeConnector) -> None:
    results = list(two.send({}, {"action": "send", "upper": True}, ["a", b"", "c"], connector_id="fake"))
    assert [r.status for r in results] == [Status.SUCCESS, Status.APPLICATION_ERROR, Status.SUCCESS]
    assert [r.index for r in results] == [0, 1, 2]
    assert fake.sent == [b"A", b"", b"C"]
    assert fake.calls == [("validate", {"action": "send", "upper": True}), ("open", {"path": "/fake"}),
                          ("send", {"action": "send", "upper": True}), ("close",)]


def test_check_and_listen_reach_the_fake_connector(two: Runtime, fake: FakeConnector) -> None:
    assert two.check({"path": "/x"}, connector_id="fake") == "fake at /x"
    sink = CollectingSink()
    outcome = two.listen({}, {"action": "listen"}, sink, count=3, connector_id="fake")
    assert (outcome.accepted, outcome.reason) == (3, "count")
    assert [d.text for d in sink] == ["message 0", "message 1", "message 2"]
    assert [c[0] for c in fake.calls] == ["validate", "check", "validate", "open", "listen", "close"]
    assert fake.calls[0] == ("validate", None)  # a test of the connection has no operation
    assert fake.calls[4] == ("listen", {"action": "listen", "upper": False})


def test_the_fake_connector_is_validated_by_its_own_schemas(two: Runtime, fake: FakeConnector) -> None:
    with pytest.raises(ConfigError) as info:
        list(two.send({"host": "x"}, {"action": "send", "topic": "a"}, ["a"], connector_id="fake"))
    assert info.value.problems == [
        "connection (top level): unknown field 'host'; known fields: path",
        "operation (top level): unknown field 'topic'; known fields: action, upper",
    ]
    assert fake.calls == []  # nothing opened


def test_mqtt_is_still_dispatched_to_mqtt(two: Runtime, fake: FakeConnector) -> None:
    # the mqtt schemas apply to "mqtt", and the fake never hears of it
    with pytest.raises(ConfigError, match="operation qos"):
        two.send({}, {"action": "send", "topic": "a", "qos": 5}, ["x"])  # the default connector
    assert two.manifest("mqtt").id == "mqtt"
    with pytest.raises(PluginError, match=r"no connector 'nobody' is installed \(installed: fake, mqtt\)"):
        two.connectors.get("nobody")
    assert fake.calls == []


class BrokenSchemaConnector(FakeConnector):
    """A connector whose connection schema is not a valid JSON Schema (a misspelled type)."""

    ID = "broken"

    @hookimpl
    def connector_manifest(self) -> Manifest:
        good = super().connector_manifest()
        schema = {"type": "object", "properties": {"path": {"type": "strnig"}}}
        return Manifest(**{**vars(good), "id": self.ID, "connection_schema": schema})


def test_installed_connectors_pass_the_authors_check() -> None:
    # what a run skips (metaschemas), a connector's test suite runs at registration
    assert set(Connectors(create_plugin_manager(), check=True).manifests) == {"mqtt", *BESIDE_MQTT}


def test_the_authors_check_at_registration_fails_loudly_on_a_broken_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = create_plugin_manager(plugins=[BrokenSchemaConnector()], block=BESIDE_MQTT)
    with pytest.raises(PluginError, match=r"^broken/- is not a valid JSON Schema: properties/path/type: "):
        Connectors(pm, check=True).manifests
    monkeypatch.setenv(CHECK_ENV, "1")
    with pytest.raises(PluginError, match="is not a valid JSON Schema"):
        Connectors(pm).manifests
    monkeypatch.setenv(CHECK_ENV, "0")
    runtime = Runtime(Connectors(pm))  # a run does not check at load ...
    assert set(runtime.connectors.manifests) == {"mqtt", "broken"}
    with pytest.raises(PluginError, match="is not a valid JSON Schema: properties/path/type: "):
        runtime.check({"path": "/x"}, connector_id="broken")  # ... but fails as loudly when it meets the fault


def test_two_connectors_with_one_id_are_refused(fake: FakeConnector) -> None:
    other = FakeConnector()
    with pytest.raises(PluginError, match="two installed connectors share the id 'fake'"):
        create_plugin_manager(plugins=[fake, other], entry_points=False)


# -- the doors between the packages ------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return _imports_of(path.read_text(encoding="utf-8"), package)


def _imports_of(source: str, package: str) -> set[str]:
    """Every module a source imports: plain, from, relative, and by name through import_module."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__"):
            found.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return found


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize(("room", "forbidden"), [
    ("harness", ["connector.mqtt"]),
    ("sdk", ["connector.mqtt", "connector.harness"]),
])
def test_the_doors_are_one_way(room: str, forbidden: list[str]) -> None:
    files = sorted((ROOT / "connector" / room).rglob("*.py"))
    assert len(files) >= 3
    seen: set[str] = set()
    for path in files:
        imports = _imports(path)
        seen |= imports
        bad = sorted(m for m in imports for f in forbidden if _inside(m, f))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    assert any(_inside(m, "connector.sdk") for m in seen) or room == "sdk"
    assert "pluggy" in seen or room == "harness"  # the scan does see imports


def test_the_import_scanner_sees_relative_and_lazy_imports() -> None:
    source = textwrap.dedent("""
        def f():
            from ..mqtt import plugin
            from . import runtime
            import importlib
            importlib.import_module("connector.mqtt.send")
    """)
    imports = _imports_of(source, "connector.harness")
    assert {"connector.mqtt", "connector.mqtt.plugin", "connector.harness.runtime", "connector.mqtt.send"} <= imports


CHECK_LAZY = """
import sys
{code}
heavy = ("paho", "amqtt", "jsonschema", "pluggy", "connector.mqtt")
print(sorted({{m.split(".")[0] if not m.startswith("connector") else ".".join(m.split(".")[:2])
              for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)}}))
"""


@pytest.mark.parametrize("code", [
    "import connector.harness.cli",
    "from connector.harness.cli import build_parser; build_parser().format_help()",
    "from connector.__main__ import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass",
    "from connector.__main__ import main\ntry:\n    main(['describe', '--help'])\nexcept SystemExit:\n    pass",
])
def test_the_command_line_starts_without_the_heavy_imports(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", CHECK_LAZY.format(code=code)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(("argv", "shown"), [
    (["--help"], r"^    broker +run the embedded MQTT broker"),
    (["send", "--help"], r"^  --ack-timeout S +Seconds a document may take"),
    (["check", "--help"], r"^  --keep-alive S +Seconds between keep-alive pings"),
])
def test_the_help_loads_the_connectors_but_not_their_clients(argv: list[str], shown: str) -> None:
    # the top-level help lists the commands the installed connectors add, and send's, listen's and
    # check's list their connector's flags (from its schemas), so they find them: nothing more
    code = f"from connector.__main__ import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    done = subprocess.run([sys.executable, "-c", CHECK_LAZY.format(code=code)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['connector.mqtt', 'pluggy']"
    assert re.search(shown, done.stdout, re.MULTILINE), done.stdout


def test_describe_does_not_import_paho() -> None:
    # the connector's manifest is read without loading its MQTT client
    code = ("from connector.harness.runtime import Runtime\nRuntime().manifest('mqtt')")
    done = subprocess.run([sys.executable, "-c", CHECK_LAZY.format(code=code)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.strip().splitlines()[-1]
    assert "'paho'" not in loaded and "'amqtt'" not in loaded
    assert "'pluggy'" in loaded  # the probe does see what was loaded


def test_the_connectors_own_rules_run_before_anything_is_opened(two: Runtime, fake: FakeConnector) -> None:
    with pytest.raises(ConfigError) as caught:
        two.listen({}, {"action": "listen", "upper": True}, lambda d: None, count=1, connector_id="fake")
    assert caught.value.problems == ["operation upper: the fake cannot shout while it listens"]
    assert [c[0] for c in fake.calls] == ["validate"]  # never opened
