"""What the SDK and the harness do for any connector, shown with a second one (tests/dropconnector.py):
the action set is the manifest's, the outbox keys on the whole operation, and document properties
that carry bytes are those the manifest marks ``"contentEncoding": "base64"``."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import dropconnector
import pytest

from connector.harness.outbox import Outbox
from connector.harness.runtime import Runtime
from connector.harness.sinks import JsonLinesSink
from connector.sdk.documents import Document, document_from_json, document_to_json
from connector.sdk.errors import ConfigError
from connector.sdk.manifest import Manifest
from connector.sdk.plugins import Connectors, create_plugin_manager

TESTS = Path(__file__).parent


@pytest.fixture
def drop() -> Runtime:
    return Runtime(Connectors(create_plugin_manager(plugins=[dropconnector], entry_points=False)))


def _problems(call: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        call()
    return info.value.problems


# -- the action set is the manifest's ----------------------------------------------------------------

def test_a_missing_action_names_the_manifest_actions(drop: Runtime) -> None:
    assert _problems(lambda: drop.send({}, {"pattern": "*.csv"}, ["x"], connector_id="drop")) == [
        "operation action: missing; give one of 'archive', 'listen', 'send'"]
    assert _problems(lambda: drop.listen({}, {}, print, connector_id="drop")) == [
        "operation action: missing; give one of 'archive', 'listen', 'send'"]


def test_an_unknown_action_names_the_manifest_actions(drop: Runtime) -> None:
    assert _problems(lambda: drop.send({}, {"action": "publish"}, ["x"], connector_id="drop")) == [
        "operation action: 'publish' is not an action of this connector; give one of 'archive', 'listen', 'send'"]
    assert _problems(lambda: drop.send({}, {"action": ["send"]}, ["x"], connector_id="drop"))[0].startswith(
        "operation action: the value given is not an action")


def test_an_action_problem_comes_with_the_schema_problems(drop: Runtime) -> None:
    assert _problems(lambda: drop.send({}, {"pattern": 5}, ["x"], connector_id="drop")) == [
        "operation action: missing; give one of 'archive', 'listen', 'send'",
        "operation pattern: must be text, not 5"]


def test_a_schema_without_action_keeps_the_action_and_its_defaults(drop: Runtime) -> None:
    manifest = drop.manifest("drop")
    assert manifest.validate_operation({"action": "listen"}) == {"action": "listen", "pattern": "*", "keep": False}
    assert manifest.validate_operation({"action": "send"}) == {"action": "send", "pattern": "*"}
    assert [r.ok for r in drop.send({}, {"action": "send"}, ["x"], connector_id="drop")] == [True]


def test_an_action_the_harness_does_not_run_is_bad_input(drop: Runtime) -> None:
    assert _problems(lambda: drop.send({}, {"action": "archive"}, ["x"], connector_id="drop")) == [
        "operation action: 'archive' is an action of the connector 'drop', but this harness runs only send and "
        "listen actions"]
    assert _problems(lambda: drop.listen({}, {"action": "send"}, print, connector_id="drop")) == [
        "operation action: this runs a listen, the operation says 'send'"]


def test_a_schema_with_its_own_action_says_it_in_its_words() -> None:
    manifest = Manifest.load("connector.mqtt")
    assert _problems(lambda: manifest.validate_operation({"topic": "a"})) == ["(top level): 'action' is required"]
    assert _problems(lambda: manifest.validate_operation({"action": "get", "topic": "a"})) == [
        'action: must be one of "listen" (Listen), "send" (Send), not "get"']


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, str]:
    """The drop connector installed beside mqtt, as a user installs one (an entry point)."""
    info = tmp_path / "dropconnector-1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dropconnector\nVersion: 1\n")
    (info / "entry_points.txt").write_text("[connector_sdk.connectors]\ndrop = dropconnector\n")
    return {"PYTHONPATH": f"{tmp_path}:{TESTS}"}


@pytest.mark.parametrize(("operation", "expected"), [
    ({"action": "archive"}, "error: 'action' in the operation file {}: 'archive' is an action of the "
                            "connector 'drop', but this harness runs only send and listen actions"),
    ({"pattern": "*"}, "error: 'action' in the operation file {}: missing; give one of 'archive', 'listen', "
                       "'send'"),
])
def test_run_refuses_such_operations_in_one_line(tmp_path: Path, installed: dict[str, str],
                                                 operation: dict[str, Any], expected: str) -> None:
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "o.json").write_text(json.dumps(operation))
    done = subprocess.run([sys.executable, "-m", "connector", "run", "--connector", "drop", "--connection",
                           str(tmp_path / "c.json"), "--operation", str(tmp_path / "o.json")],
                          input=b"x", capture_output=True, timeout=60, env={**os.environ, **installed})
    assert (done.returncode, done.stderr.decode().strip()) == (2, expected.format(repr(str(tmp_path / "o.json"))))


# -- the outbox keys on the connector and the whole operation ------------------------------------------

def test_the_outbox_skips_what_the_same_operation_confirmed(drop: Runtime, tmp_path: Path) -> None:
    box = str(tmp_path / "box")
    operation = {"action": "send", "pattern": "*.csv"}
    assert [r.note for r in drop.send({}, operation, ["a", "b"], connector_id="drop", outbox=box)] == [None, None]
    again = list(drop.send({}, operation, ["a", "b", "c"], connector_id="drop", outbox=box))
    assert [r.note is not None for r in again] == [True, True, False]


def test_an_outbox_of_another_operation_is_refused_naming_the_difference(drop: Runtime, tmp_path: Path) -> None:
    box = str(tmp_path / "box")
    list(drop.send({}, {"action": "send", "pattern": "*.csv"}, ["a"], connector_id="drop", outbox=box))
    with pytest.raises(ConfigError) as info:
        drop.send({}, {"action": "send", "pattern": "*.txt"}, ["a"], connector_id="drop", outbox=box)
    assert str(info.value) == (f"the outbox {box!r} records another Send (operation pattern \"*.csv\", not "
                               "\"*.txt\"): give each Send its own outbox file")


def test_documents_with_other_properties_are_other_documents(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path / "box"), {"connector": "drop", "operation": {}})
    try:
        first = list(box.send([Document(b"x", {"name": "a"})], 1, _confirm))
    finally:
        box.close()
    box = Outbox(str(tmp_path / "box"), {"connector": "drop", "operation": {}})
    try:
        again = list(box.send([Document(b"x", {"name": "b"}), Document(b"y", {"fingerprint": b"\xff"})], 1, _confirm))
    finally:
        box.close()
    assert first[0].note is None and [r.note for r in again] == [None, None]


def _confirm(documents: Any) -> Any:
    from connector.sdk.documents import Result, Status

    return (Result(i, Status.SUCCESS) for i, _ in enumerate(documents))


def test_an_outbox_of_the_earlier_format_gets_one_clear_line(tmp_path: Path) -> None:
    box = tmp_path / "old.outbox"
    db = sqlite3.connect(box)
    db.executescript("create table send (key text not null, value text not null, primary key (key));"
                     "create table documents (position integer primary key, digest blob not null, "
                     "status text not null, error text);")
    db.execute("insert into send values ('target', ?)",
               (json.dumps({"connector": "mqtt", "qos": 1, "retained": False, "topic": "a/b"}, sort_keys=True),))
    db.commit()
    db.close()
    done = subprocess.run([sys.executable, "-m", "connector", "send", "--port", "1", "--topic", "a/b", "--qos", "1",
                           "--message", "x", "--outbox", str(box)], capture_output=True, timeout=60)
    assert (done.returncode, done.stderr.decode()) == (
        2, f"error: the outbox {str(box)!r} was written by an earlier version, which recorded a Send differently: "
           "finish that Send with the version that began it, or give a new outbox file\n")


# -- properties that carry bytes are the manifest's ----------------------------------------------------

def test_a_declared_bytes_property_is_encoded_in_the_json_lines(drop: Runtime) -> None:
    stream = io.StringIO()
    byte_properties = drop.manifest("drop").byte_properties
    assert byte_properties == {"fingerprint"}
    outcome = drop.listen({}, {"action": "listen"}, JsonLinesSink(stream, byte_properties), count=2,
                          connector_id="drop")
    assert outcome.accepted == 2
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["properties"] for line in lines] == [{"name": "a.txt", "fingerprint": "nwAB"},  # base64
                                                      {"name": "b.txt", "fingerprint": "plain"}]  # UTF-8: text
    assert dropconnector.FILES[0].properties["fingerprint"] == b"\x9f\x00\x01"  # the document is not changed


def test_only_declared_properties_are_encoded_and_read_back() -> None:
    document = Document(b"p", {"fingerprint": b"abc", "name": "n"})
    assert document_to_json(document)["properties"] == {"fingerprint": b"abc", "name": "n"}  # nothing declared
    line = document_to_json(document, {"fingerprint"})
    assert line == {"payload": "p", "encoding": "utf-8", "properties": {"fingerprint": "abc", "name": "n"}}
    assert document_from_json(line, {"fingerprint"}) == document
    assert document_from_json(line) == Document(b"p", {"fingerprint": "abc", "name": "n"})


def test_the_mqtt_manifest_marks_correlation_data_and_its_output_is_unchanged() -> None:
    manifest = Manifest.load("connector.mqtt")
    assert manifest.byte_properties == {"correlation_data"}
    stream = io.StringIO()
    sink = JsonLinesSink(stream, manifest.byte_properties)
    sink(Document(b"4", {"topic": "r", "correlation_data": b"req-42"}))
    sink(Document(b"5", {"topic": "r", "correlation_data": b"\xff\x01"}))
    assert stream.getvalue() == (
        '{"payload": "4", "encoding": "utf-8", "properties": {"topic": "r", "correlation_data": "req-42"}}\n'
        '{"payload": "5", "encoding": "utf-8", "properties": {"topic": "r", "correlation_data": "/wE="}}\n')
