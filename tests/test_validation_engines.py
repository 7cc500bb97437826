"""Validation's two engines (connector/sdk/validation.py): jsonschema-rs says "valid" for a run,
jsonschema reports what is wrong. Whatever a configuration is, the outcome (the configuration
with its defaults, or the ConfigError and its problems) is the one jsonschema alone gives, on
every schema the project ships; where the engines read JSON Schema differently, the difference is
the one the module's docstring names."""

from __future__ import annotations

import decimal
import enum
import socket
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.sdk.errors import ConfigError, PluginError
from connector.sdk.manifest import Manifest
from connector.sdk.validation import _Compiled, validate

ROOT = Path(__file__).resolve().parent.parent


class Level(enum.IntEnum):
    ONE = 1


class Text(str):
    pass


#: Values of every JSON type and of the Python types that look like one (which jsonschema-rs
#: takes and jsonschema does not), the edges of the schemas' bounds and patterns.
TRICKY: list[Any] = [
    None, True, False, 0, 1, 2, 3, -1, 15, 16, 65535, 65536, 4294967295, 4294967296, 0.0, 0.5, 1.0, 1e308, -0.0,
    "", "a", "a/b", "a/+/c", "+", "#", "a/#", "a#", "a/b+", "sensors/smoke alarms/#", "$share/g/a/#", "$share//a",
    "$share/g+/a", "a\n", "h:1883", "h:1883\n", "h :1", "h:123456", "/mqtt", "mqtt", "/", "é", "\u0663",
    "a\x00b", "\ud800", "3.1.1", "5", "tcp", "websockets", "send", "listen", "*.json", "x" * 201,
    [], ["a"], ["a/b", "c/#"], ["h:1883"], ["h:1883\n"], [["k", "v"]], [["k"]], [1], {}, {"a/b": 1}, {"a": 3},
    ("a",), ("h:1883",), (("k", "v"),), decimal.Decimal(1), Level.ONE, Text("a/b"), OrderedDict(a=1), {1: 2},
    b"a", {"a", "b"},
]


def _pool(prop: Any) -> list[Any]:
    """The values worth trying for one property: its own (default, examples, consts, bounds) and
    the tricky ones."""
    own: list[Any] = []
    if isinstance(prop, dict):
        own += [prop[k] for k in ("default", "const") if k in prop]
        own += list(prop.get("examples", [])) + list(prop.get("enum", []))
        own += [o["const"] for o in prop.get("oneOf", []) if isinstance(o, dict) and "const" in o]
        for key in ("minimum", "maximum", "exclusiveMinimum"):
            if isinstance(prop.get(key), (int, float)):
                own += [prop[key] - 1, prop[key], prop[key] + 1, prop[key] + 0.5]
    return own + TRICKY


def configs(schema: dict[str, Any], required: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Configurations for ``schema``: some of its properties, each from its pool, the
    ``required`` ones often present, now and then an unknown field or not an object at all."""
    props = schema.get("properties", {})
    fields = st.fixed_dictionaries({}, optional={name: st.sampled_from(_pool(prop)) for name, prop in props.items()})
    extra = st.dictionaries(st.sampled_from(["unknown", "Host", "qos ", ""]), st.sampled_from(TRICKY), max_size=1)

    @st.composite
    def one(draw: st.DrawFn) -> Any:
        if draw(st.integers(0, 9)) == 0:
            return draw(st.sampled_from(TRICKY))
        config = dict(required or {}) if draw(st.integers(0, 3)) else {}
        config.update(draw(fields))
        if draw(st.integers(0, 9)) == 0:
            config.update(draw(extra))
        return config

    return one()


def outcome(fn: Any, config: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(config)
    except ConfigError as exc:
        return "ConfigError", (str(exc), exc.problems)
    except PluginError as exc:
        return "PluginError", str(exc)


class Pair:
    """The same connector's manifest twice: one validating as a run does, one with jsonschema
    alone; what jsonschema-rs accepted on the way is checked against jsonschema's verdict."""

    def __init__(self, package: str) -> None:
        self.both, self.alone = Manifest.load(package), Manifest.load(package)
        for compiled in self.alone._validators.values():
            compiled.fast = None
        self.accepted: list[tuple[str, Any]] = []
        for key, compiled in self.both._validators.items():
            compiled.accepts = self._recording(key, compiled.accepts)  # type: ignore[method-assign]
        self.fast_accepts = 0

    def _recording(self, key: str, accepts: Any) -> Any:
        def record(config: Any) -> bool:
            yes = accepts(config)
            if yes:
                self.accepted.append((key, config))
            return bool(yes)
        return record

    def schema(self, method: str) -> dict[str, Any]:
        """The schema ``method`` validates against (``validate_connection``: the connection's)."""
        return getattr(self.both, method.replace("validate_", "") + "_schema")

    def check(self, method: str, config: Any) -> None:
        expected = outcome(getattr(self.alone, method), config)
        self.accepted.clear()
        got = outcome(getattr(self.both, method), config)
        assert got == expected, f"{method}({config!r})"
        for key, instance in self.accepted:  # the instance as the engines saw it
            assert self.alone._validators[key].validator.is_valid(instance), f"jsonschema refuses {instance!r}"
            self.fast_accepts += 1


EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


CASES = [
    ("connector.mqtt", "validate_connection", {}),
    ("connector.mqtt", "validate_operation", {"action": "send", "topic": "a/b"}),
    ("connector.mqtt", "validate_operation", {"action": "listen", "topic": "a/+/c"}),
    ("disk_connector", "validate_connection", {"directory": "d"}),
    ("disk_connector", "validate_operation", {"action": "listen"}),
]
CASE_IDS = ["mqtt connection", "mqtt send", "mqtt listen", "disk connection", "disk operation"]


@pytest.mark.parametrize("package, method, required", CASES, ids=CASE_IDS)
def test_generated_configurations_validate_as_with_jsonschema_alone(package: str, method: str, required: Any) -> None:
    pytest.importorskip(package, reason="pip install ./examples/disk-connector")
    pair = Pair(package)

    @EXAMPLES
    @given(configs(pair.schema(method), required))
    def run(config: Any) -> None:
        pair.check(method, config)

    run()
    assert pair.fast_accepts > 20  # the fast path did run, on many valid configurations


@pytest.mark.parametrize("package, method, required", CASES, ids=CASE_IDS)
def test_every_field_with_every_value_of_its_pool(package: str, method: str, required: Any) -> None:
    pytest.importorskip(package, reason="pip install ./examples/disk-connector")
    pair = Pair(package)
    for name, prop in pair.schema(method)["properties"].items():
        for value in _pool(prop):
            pair.check(method, {**required, name: value})
    assert pair.fast_accepts > 20


def test_values_that_only_look_like_json_are_left_to_jsonschema() -> None:
    # jsonschema-rs takes a tuple for an array and a Decimal for a number; the connector would get them
    manifest = Manifest.load("connector.mqtt")
    with pytest.raises(ConfigError, match="failover"):
        manifest.validate_connection({"failover": ("h:1883",)})
    with pytest.raises(ConfigError, match="port"):
        manifest.validate_connection({"port": decimal.Decimal(1883)})
    assert manifest.validate_connection({"client_id": Text("a")})["client_id"] == "a"  # jsonschema takes a str
    with pytest.raises(ConfigError, match="client_id"):
        manifest.validate_connection({"client_id": b"a"})


def _field(prop: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"x": prop}}


def test_where_the_engines_read_a_schema_differently_either_ones_yes_is_enough() -> None:
    digits = _field({"type": "string", "pattern": "^\\d+$"})
    # ECMA-262's \d is ASCII, Python's any digit: jsonschema-rs says no, jsonschema yes
    assert validate(digits, {"x": "\u0661\u0662"}, "value") == {"x": "\u0661\u0662"}
    ends = _field({"type": "string", "pattern": "^a$"})
    assert validate(ends, {"x": "a\n"}, "value") == {"x": "a\n"}  # Python's $ matches before a last newline
    with pytest.raises(ConfigError, match="does not match"):
        validate(digits, {"x": "12a"}, "value")
    # decimal multipleOf: 0.3 is a multiple of 0.1 (jsonschema's float division says not)
    tenths = _field({"type": "number", "multipleOf": 0.1})
    assert validate(tenths, {"x": 0.3}, "value") == {"x": 0.3}
    alone = _Compiled(tenths)
    alone.fast = None
    with pytest.raises(ConfigError, match="multiple of"):
        validate(tenths, {"x": 0.3}, "value", alone)


def test_a_schema_jsonschema_rs_cannot_compile_is_validated_by_jsonschema() -> None:
    # Python's re reads {,2} as "at most two"; ECMA-262 (jsonschema-rs) refuses the pattern
    schema = {"type": "object", "properties": {"x": {"type": "string", "pattern": "^a{,2}$"}}}
    compiled = _Compiled(schema)
    assert validate(schema, {"x": "aa"}, "value", compiled) == {"x": "aa"}
    assert compiled.fast is None
    with pytest.raises(ConfigError, match="does not match"):
        validate(schema, {"x": "aaa"}, "value", compiled)


def test_a_remote_ref_is_never_fetched() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    visits: list[object] = []

    def serve() -> None:
        try:
            visits.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    schema = {"type": "object", "properties": {"x": {"$ref": f"http://127.0.0.1:{port}/x.json"}}}
    with pytest.raises(PluginError) as caught:
        validate(schema, {"x": 1}, "value")
    thread.join()
    server.close()
    assert visits == []
    assert str(caught.value) == (f"the value schema cannot be used to validate: its $ref 'http://127.0.0.1:{port}/x.json' "
                                 "is not in the schema (a schema is self-contained: nothing is fetched)")


def test_a_ref_to_nothing_in_the_schema_is_named() -> None:
    schema = {"type": "object", "properties": {"x": {"$ref": "#/$defs/nowhere"}}}
    with pytest.raises(PluginError) as caught:
        validate(schema, {"x": 1}, "operation")
    assert str(caught.value) == "the operation schema cannot be used to validate: its $ref '#/$defs/nowhere' points to " \
                                "nothing in the schema"


_WITHOUT = """
import sys
sys.modules["jsonschema_rs"] = None  # not installed
from connector.sdk.manifest import Manifest
from connector.sdk.errors import ConfigError
m = Manifest.load("connector.mqtt")
print(m.validate_connection({"port": 1})["port"])
try:
    m.validate_connection({"port": 0})
except ConfigError as exc:
    print(exc)
"""


def test_without_jsonschema_rs_jsonschema_does_it_all() -> None:
    done = subprocess.run([sys.executable, "-c", _WITHOUT], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["1", "invalid connection: port: must be at least 1, not 0"]
