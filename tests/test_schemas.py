"""manifest.json and the schemas: the single source of truth for options, defaults and help text."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import connector
from connector.sdk.errors import ConfigError, PluginError
from connector.sdk.manifest import REDACTED, Manifest, redact, secret_fields

ROOT = Path(__file__).resolve().parent.parent


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


MANIFEST_JSON = _json(ROOT / "manifest.json")
CONNECTION = _json(ROOT / "schemas" / "connection.schema.json")
OPERATION = _json(ROOT / "schemas" / "operation.schema.json")
SCHEMAS = {"connection": CONNECTION, "operation": OPERATION}


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return Manifest.load("connector.mqtt")


# -- the files themselves --------------------------------------------------------------------

def test_manifest_validates_against_the_sdk_manifest_schema() -> None:
    schema = _json(ROOT / "connector" / "sdk" / "manifest.schema.json")
    Draft202012Validator.check_schema(schema)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(MANIFEST_JSON)]
    assert errors == []


def test_manifest_names_the_schema_files_it_ships() -> None:
    assert (ROOT / MANIFEST_JSON["connection_schema"]).resolve() == ROOT / "schemas" / "connection.schema.json"
    assert (ROOT / MANIFEST_JSON["operation_schema"]).resolve() == ROOT / "schemas" / "operation.schema.json"


@pytest.mark.parametrize("name", SCHEMAS)
def test_connector_schemas_are_valid_json_schema(name: str) -> None:
    schema = SCHEMAS[name]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_manifest_version_is_the_package_version(manifest: Manifest) -> None:
    assert MANIFEST_JSON["version"] == connector.__version__
    assert manifest.version == connector.__version__


def test_loaded_manifest_is_the_files(manifest: Manifest) -> None:
    assert manifest.id == "mqtt"
    assert manifest.connection_schema == CONNECTION
    assert manifest.operation_schema == OPERATION
    assert set(manifest.actions) == {"send", "listen"}


def test_actions_only_use_declared_document_properties() -> None:
    declared = set(MANIFEST_JSON["document_properties"])
    for action in MANIFEST_JSON["actions"].values():
        assert set(action["reads"]) | set(action["writes"]) <= declared


def test_the_mqtt_connector_passes_the_authors_check(manifest: Manifest) -> None:
    # what runs skip (the metaschemas), the connector's own tests do
    assert manifest.check() is manifest
    done = subprocess.run([sys.executable, "-m", "connector.sdk.manifest", "connector.mqtt"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: connector.mqtt: connector 'mqtt'")


def test_a_run_loads_the_manifest_without_jsonschema_and_validates_with_one_validator_per_schema() -> None:
    # a valid configuration needs jsonschema-rs only; jsonschema comes for the first problem to report
    code = ("import sys\nfrom connector.sdk.errors import ConfigError\nfrom connector.sdk.manifest import Manifest\n"
            "m = Manifest.load('connector.mqtt')\nprint('jsonschema' in sys.modules)\nm.validate_connection({})\n"
            "print('jsonschema' in sys.modules)\n"
            "try:\n    m.validate_connection({'port': 0})\nexcept ConfigError:\n    pass\n"
            "print('jsonschema' in sys.modules)\n"
            "v = m._validators['connection_schema'].validator\n"
            "try:\n    m.validate_connection({'port': -1})\nexcept ConfigError:\n    pass\n"
            "print(v is m._validators['connection_schema'].validator)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True", "True"]


# -- a broken connector fails loudly, naming the file --------------------------------------------

GOOD_MANIFEST = {"id": "broken", "name": "Broken", "version": "1", "description": "A connector with faults.",
                 "connection_schema": "connection.json", "operation_schema": "operation.json",
                 "actions": {"send": {"title": "Send", "description": "-", "reads": [], "writes": []}},
                 "document_properties": {}}
GOOD_SCHEMA = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
               "properties": {"n": {"type": "integer", "default": 1}}, "additionalProperties": False}


def _package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, manifest: Any = None, connection: Any = None,
             name: str = "broken_connector_pkg") -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "manifest.json").write_text(json.dumps(GOOD_MANIFEST if manifest is None else manifest))
    (folder / "connection.json").write_text(json.dumps(GOOD_SCHEMA if connection is None else connection))
    (folder / "operation.json").write_text(json.dumps(GOOD_SCHEMA))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def _schema_with(**prop: Any) -> dict:
    return {**GOOD_SCHEMA, "properties": {"n": prop}}


def test_a_good_package_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = Manifest.load(_package(tmp_path, monkeypatch)).check()
    assert loaded.validate_connection({}) == {"n": 1}


@pytest.mark.parametrize(("manifest", "words"), [
    ({k: v for k, v in GOOD_MANIFEST.items() if k != "id"}, "(top level): 'id' is a required property"),
    ({**GOOD_MANIFEST, "actions": []}, "actions: must be an object"),
    ({**GOOD_MANIFEST, "version": 1}, "version: must be a string"),
    (["not", "an", "object"], "must be a JSON object"),
])
def test_a_run_refuses_a_manifest_without_what_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        manifest: Any, words: str) -> None:
    package = _package(tmp_path, monkeypatch, manifest=manifest)
    with pytest.raises(PluginError, match=r"broken_connector_pkg/manifest\.json is not valid: ") as info:
        Manifest.load(package)
    assert words in str(info.value)


def test_a_schema_that_is_not_an_object_is_refused_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PluginError, match=r"broken_connector_pkg/connection\.json is not a valid JSON Schema"):
        Manifest.load(_package(tmp_path, monkeypatch, connection=["type", "object"]))


def test_the_authors_check_finds_what_a_run_does_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = _package(tmp_path, monkeypatch, manifest={**GOOD_MANIFEST, "id": "Not An Id", "extra": 1})
    loaded = Manifest.load(package)  # a run reads what it needs
    with pytest.raises(PluginError, match=r"broken_connector_pkg/manifest\.json is not valid: .*id.*extra"):
        loaded.check()


@pytest.mark.parametrize(("prop", "config", "words"), [
    ({"type": "strnig"}, {"n": 1}, "properties/n/type: "),  # jsonschema raises UnknownType while validating
    ({"type": "integer", "minimum": "five"}, {"n": 3}, "properties/n/minimum: 'five' is not of type 'number'"),
    ({"type": "integer", "maxLength": -1}, {"n": "x"}, "properties/n/maxLength: "),  # spurious problems otherwise
])
def test_a_broken_schema_is_a_plugin_error_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           prop: dict, config: dict, words: str) -> None:
    package = _package(tmp_path, monkeypatch, connection=_schema_with(**prop))
    loaded = Manifest.load(package)  # not checked at load: the author's check and validation find it
    with pytest.raises(PluginError, match=r"broken_connector_pkg/connection\.json is not a valid JSON Schema: ") as info:
        loaded.check()
    assert words in str(info.value)
    # a run that meets the fault fails as loudly, never as the user's ConfigError nor a traceback
    with pytest.raises(PluginError, match=r"broken_connector_pkg/connection\.json is not a valid JSON Schema: ") as info:
        loaded.validate_connection(config)
    assert words in str(info.value) and "\n" not in str(info.value)
    done = subprocess.run([sys.executable, "-m", "connector.sdk.manifest", package], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: broken_connector_pkg/connection.json is not a valid JSON Schema: ")


def test_a_schema_that_cannot_validate_is_a_plugin_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # valid against the metaschema, but its $ref leads nowhere
    package = _package(tmp_path, monkeypatch, connection=_schema_with(**{"$ref": "#/$defs/missing"}))
    loaded = Manifest.load(package).check()
    with pytest.raises(PluginError, match=r"broken_connector_pkg/connection\.json cannot be used to validate: "):
        loaded.validate_connection({"n": 1})


# -- the Options tab ---------------------------------------------------------------------------

def test_options_tab_is_action_topic_qos_retained_in_order() -> None:
    # The four fields of the Options tab first; then the options of one action each (x-actions).
    assert OPERATION["x-order"][:4] == ["action", "topic", "qos", "retained"]
    assert list(OPERATION["properties"]) == OPERATION["x-order"]
    titles = [OPERATION["properties"][name]["title"] for name in OPERATION["x-order"][:4]]
    assert titles == ["Action", "Topic", "Quality of Service", "Retained Message"]
    actions = {name: OPERATION["properties"][name].get("x-actions") for name in OPERATION["x-order"][4:]}
    assert actions and all(a in (["listen"], ["send"]) for a in actions.values()), actions
    assert OPERATION["required"] == ["action", "topic"]
    assert OPERATION["additionalProperties"] is False


def test_action_choices() -> None:
    action = OPERATION["properties"]["action"]
    assert [(o["const"], o["title"]) for o in action["oneOf"]] == [("listen", "Listen"), ("send", "Send")]
    assert "default" not in action  # the user must choose
    assert {o["const"]: o["title"] for o in action["oneOf"]} == {
        k: v["title"] for k, v in MANIFEST_JSON["actions"].items()}


def test_qos_choices_each_titled_with_its_promise() -> None:
    qos = OPERATION["properties"]["qos"]
    options = qos["oneOf"]
    assert [o["const"] for o in options] == [0, 1, 2]
    assert all(type(o["const"]) is int for o in options)
    promises = ["At most once", "At least once", "Exactly once"]
    for option, promise in zip(options, promises):
        assert option["title"] == f"{option['const']} - {promise}"
        assert option["description"]
    assert qos["default"] == 0


def test_retained_is_a_boolean_defaulting_to_false() -> None:
    retained = OPERATION["properties"]["retained"]
    assert retained["type"] == "boolean"
    assert retained["default"] is False


def test_operation_defaults_are_filled_in(manifest: Manifest) -> None:
    assert manifest.validate_operation({"action": "send", "topic": "a/b"}) == {
        "action": "send", "topic": "a/b", "qos": 0, "retained": False, "user_properties": [], "content_type": None,
        "payload_format_indicator": None, "message_expiry_interval": None, "response_topic": None,
        "correlation_data": None, "stamp_id": False}  # x-actions: the Send's options, none set
    assert manifest.validate_operation({"action": "listen", "topic": ["a/+", "b/#"], "qos": 2}) == {
        "action": "listen", "topic": ["a/+", "b/#"], "qos": 2, "retained": False,
        "max_attempts": 3, "retry_delay": 1, "dead_letter_topic": None, "filter_qos": {}, "no_local": False,
        "retain_as_published": False, "retain_handling": 0, "dedupe_window": 0, "skip_retained": False,
        "retained_only": False, "filter_out": []}  # x-actions: Listen's only


@pytest.mark.parametrize(("config", "valid"), [
    ({"action": "send", "topic": "a", "retained": True}, True),
    ({"action": "listen", "topic": "a", "retained": False}, True),
    ({"action": "listen", "topic": "a", "retained": True}, False),
    ({"action": "send", "topic": "a/+"}, False),
    ({"action": "send", "topic": "a/#"}, False),
    ({"action": "send", "topic": "a+b"}, False),
    ({"action": "listen", "topic": "a/+/#"}, True),
    ({"action": "send", "topic": ["a", "b"]}, False),
    ({"action": "send", "topic": ["a"]}, False),
    ({"action": "listen", "topic": ["a", "b/#"]}, True),
    ({"action": "listen", "topic": []}, False),
    ({"action": "listen", "topic": "$share/g/a/#"}, True),
    ({"action": "listen", "topic": "a/#/b"}, False),
    ({"action": "listen", "topic": "a/b+"}, False),
])
def test_the_schema_itself_enforces_the_action_rules(config: dict, valid: bool) -> None:
    # what any runtime that only reads the schema (a UI, another harness) gets
    assert Draft202012Validator(OPERATION).is_valid(config) is valid


# -- help text and secrets ---------------------------------------------------------------------

def _all_properties() -> Iterator[tuple[str, dict]]:
    for name, schema in SCHEMAS.items():
        for prop, spec in schema["properties"].items():
            yield f"{name}.{prop}", spec


@pytest.mark.parametrize(("where", "spec"), list(_all_properties()), ids=[w for w, _ in _all_properties()])
def test_every_property_has_a_title_and_a_description(where: str, spec: dict) -> None:
    assert isinstance(spec.get("title"), str) and spec["title"].strip(), where
    assert isinstance(spec.get("description"), str) and len(spec["description"]) > 15, where
    for option in spec.get("oneOf", []):
        assert option.get("title") and option.get("description"), (where, option)


@pytest.mark.parametrize("name", SCHEMAS)
def test_x_order_lists_every_property_once(name: str) -> None:
    # describe shows the fields in x-order: a property missing from it would never be shown
    schema = SCHEMAS[name]
    assert sorted(schema["x-order"]) == sorted(schema["properties"])
    assert len(set(schema["x-order"])) == len(schema["x-order"])


def _subschemas(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _subschemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _subschemas(value)


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_custom_error_message_belongs_to_a_keyword_of_its_schema(name: str) -> None:
    for sub in _subschemas(SCHEMAS[name]):
        messages = sub.get("errorMessage")
        if isinstance(messages, dict):
            assert set(messages) <= set(sub), (messages, sorted(sub))


def test_password_and_key_passphrase_are_the_only_secrets_and_write_only() -> None:
    assert CONNECTION["properties"]["password"]["writeOnly"] is True
    assert CONNECTION["properties"]["key_password"]["writeOnly"] is True
    assert secret_fields(CONNECTION) == {"password", "key_password"}
    assert secret_fields(OPERATION) == set()


def test_connection_defaults_are_what_validation_fills_in(manifest: Manifest) -> None:
    props = CONNECTION["properties"]
    assert all("default" in spec for spec in props.values()), "an empty connection file must work"
    filled = manifest.validate_connection({})
    assert filled == {name: spec["default"] for name, spec in props.items()}
    # the contract's documented defaults
    assert (filled["host"], filled["port"]) == ("127.0.0.1", 1883)
    # every default passes its own schema
    assert manifest.validate_connection(filled) == filled


def test_given_values_win_over_defaults(manifest: Manifest) -> None:
    filled = manifest.validate_connection({"host": "broker.example", "port": 8883, "clean_session": False})
    assert (filled["host"], filled["port"], filled["clean_session"], filled["keep_alive"]) == (
        "broker.example", 8883, False, CONNECTION["properties"]["keep_alive"]["default"])


def test_whole_numbers_written_as_floats_reach_the_connector_as_int(manifest: Manifest) -> None:
    # JSON Schema accepts 1.0 as an integer; paho and sockets refuse floats
    op = manifest.validate_operation({"action": "send", "topic": "a", "qos": 1.0})
    assert op["qos"] == 1 and type(op["qos"]) is int
    conn = manifest.validate_connection({"port": 1883.0, "max_inflight": 5.0, "connect_timeout": 2.0})
    assert type(conn["port"]) is int and type(conn["max_inflight"]) is int
    assert conn["connect_timeout"] == 2.0  # a number stays a number


# -- every problem at once, with its path --------------------------------------------------------

OP, CONN = "operation", "connection"

# (which schema, config, [(path, words in the sentence)]): exactly these problems, all at once.
PROBLEMS = [
    (OP, {"action": "bogus", "topic": "a", "qos": 3},
     [("action", 'must be one of "listen" (Listen), "send" (Send), not "bogus"'),
      ("qos", "must be one of 0 (At most once), 1 (At least once), 2 (Exactly once), not 3")]),
    (OP, {"topic": "a"}, [("(top level)", "'action' is required")]),
    (OP, {"action": "send"}, [("(top level)", "'topic' is required")]),
    (OP, {}, [("(top level)", "'action' is required"), ("(top level)", "'topic' is required")]),
    (OP, {"action": "send", "topic": "a", "qoss": 1},
     [("(top level)", "unknown field 'qoss' (did you mean 'qos'?)")]),
    (OP, {"action": "send", "topic": "a", "retain": True},
     [("(top level)", "unknown field 'retain' (did you mean 'retained'?)")]),
    (OP, {"action": "listen", "topic": "a", "retained": True},
     [("retained", "Retained Message is for Send only")]),
    (OP, {"action": "send", "topic": "sensors/+/temperature"},
     [("topic", "the wildcards '+' and '#' are for Listen")]),
    (OP, {"action": "send", "topic": ["a", "b"]}, [("topic", "a Send publishes to one topic, not a list")]),
    (OP, {"action": "send", "topic": ""}, [("topic", "the topic is empty")]),
    (OP, {"action": "listen", "topic": "a/#/b"}, [("topic", "'#' only the last one")]),
    (OP, {"action": "listen", "topic": "a\x00b"}, [("topic", "NUL")]),
    (OP, {"action": "listen", "topic": []}, [("topic", "must not be an empty list")]),
    (OP, {"action": "listen", "topic": ["a", "", "b/#/c", 7]},
     [("topic/1", "the topic is empty"), ("topic/2", "'#' only the last one"), ("topic/3", "must be text, not 7")]),
    (OP, {"action": "listen", "topic": 5}, [("topic", "must be text or a list, not 5")]),
    (OP, {"action": "listen", "topic": "a" * 65_536}, [("topic", "at most 65535 characters")]),
    (OP, {"action": "send", "topic": "a", "qos": "1", "retained": "yes"},
     [("qos", 'not "1"'), ("retained", 'must be true or false, not "yes"')]),
    (OP, {"action": "send", "topic": "a", "qos": True}, [("qos", "not true")]),
    (OP, {"action": "send", "topic": "a", "qos": -1}, [("qos", "not -1")]),
    (OP, {"action": "listen", "topic": "a/b+", "qos": 3, "retained": True, "extra": 1},
     [("(top level)", "unknown field 'extra'"), ("qos", "not 3"), ("retained", "for Send only"),
      ("topic", "'+' and '#' must each be a whole level")]),
    (OP, "send a/b", [("(top level)", 'must be an object, not "send a/b"')]),
    (OP, ["send"], [("(top level)", "must be an object")]),
    (CONN, {"host": ""}, [("host", "must not be empty")]),
    (CONN, {"port": 0}, [("port", "must be at least 1, not 0")]),
    (CONN, {"port": 65536}, [("port", "must be at most 65535, not 65536")]),
    (CONN, {"port": "1883"}, [("port", 'must be a whole number, not "1883"')]),
    (CONN, {"port": 1.5}, [("port", "must be a whole number, not 1.5")]),
    (CONN, {"port": True}, [("port", "must be a whole number, not true")]),
    (CONN, {"keep_alive": 0, "connect_timeout": 0, "ack_timeout": -1, "max_inflight": 70_000},
     [("ack_timeout", "must be more than 0, not -1"), ("connect_timeout", "must be more than 0, not 0"),
      ("keep_alive", "must be at least 1, not 0"), ("max_inflight", "must be at most 65535, not 70000")]),
    (CONN, {"clean_session": "no", "username": 5},
     [("clean_session", 'must be true or false, not "no"'), ("username", "must be text, not 5")]),
    (CONN, {"hots": "x"}, [("(top level)", "unknown field 'hots' (did you mean 'host'?)")]),
    (CONN, {"client_id": "c" * 65_536}, [("client_id", "at most 65535 characters")]),
    (CONN, {"host": "", "port": 0, "password": 12345678},
     [("host", "must not be empty"), ("password", "must be text, not the value given"),
      ("port", "must be at least 1, not 0")]),
    (CONN, None, [("(top level)", "must be an object, not null")]),
]


def _check(manifest: Manifest, which: str, config: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        (manifest.validate_operation if which == OP else manifest.validate_connection)(config)
    return info.value


@pytest.mark.parametrize(("which", "config", "expected"), PROBLEMS, ids=[f"{w}-{i}" for i, (w, _, _) in enumerate(PROBLEMS)])
def test_every_problem_is_reported_at_once_with_its_path(manifest: Manifest, which: str, config: Any,
                                                         expected: list[tuple[str, str]]) -> None:
    error = _check(manifest, which, config)
    problems = error.problems
    assert len(problems) == len(expected), problems
    for path, words in expected:
        assert any(p.startswith(f"{path}: ") and words in p for p in problems), (path, words, problems)
    message = str(error)
    assert message.startswith(f"invalid {which}: ")
    assert all(p in message for p in problems)
    assert "\n" not in message
    assert error.__cause__ is None and error.__context__ is None


def test_the_table_is_large_enough() -> None:
    assert len(PROBLEMS) >= 25


# -- secrets never shown ---------------------------------------------------------------------

SECRET = "hunter2-s3cr3t"


@pytest.mark.parametrize(("config", "needle"), [
    ({"password": 987654321}, "987654321"),
    ({"password": 98765.4321}, "98765.4321"),
    ({"password": [SECRET]}, SECRET),
    ({"password": {"value": SECRET}}, SECRET),
    ({"password": SECRET, "pasword": "x"}, SECRET),
    ({"password": SECRET, "bogus": 1, "port": "nope"}, SECRET),
    ({"password": SECRET, "host": "", "port": 0, "Password": "y"}, SECRET),
    ({"password": 4242424242, "username": 7, "hots": "h"}, "4242424242"),
])
def test_a_password_never_appears_in_a_config_error(manifest: Manifest, config: dict, needle: str) -> None:
    error = _check(manifest, CONN, config)
    assert error.problems  # it did fail
    assert needle not in str(error)
    assert not any(needle in p for p in error.problems)
    assert error.__context__ is None  # nothing chained that a traceback could show


def test_a_password_given_as_a_number_is_not_echoed(manifest: Manifest) -> None:
    error = _check(manifest, CONN, {"password": 31415926})
    assert error.problems == ["password: must be text, not the value given"]
    assert "31415926" not in str(error)


def test_redact_masks_secrets_only() -> None:
    config = {"host": "h", "port": 1883, "username": "u", "password": SECRET}
    shown = redact(CONNECTION, config)
    assert shown == {"host": "h", "port": 1883, "username": "u", "password": REDACTED}
    assert config["password"] == SECRET  # a copy, the config itself is untouched
    assert SECRET not in repr(shown)
    assert redact(CONNECTION, {"password": ""}) == {"password": ""}  # nothing to hide
    assert redact(OPERATION, {"action": "send", "topic": "a"}) == {"action": "send", "topic": "a"}
