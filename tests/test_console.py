"""The web console's server (connector/console), through its HTTP API as the page calls it: the
access token, the forms made from the schemas (secrets never sent), the SDK's validation errors
placed on their fields, check, Send and Listen on the embedded broker, and the command itself."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brokers import missing
from clirun import run_cli

try:
    from starlette.testclient import TestClient
except ImportError:  # each test says so (skipped here, failed in CI): see _extras
    TestClient = None

from connector.console.listening import KEEP
from connector.harness.runtime import Runtime

TOKEN = "test-token-0123456789"
SECRET = "pa55-Word-never-shown"


@pytest.fixture(autouse=True)
def _extras() -> None:
    if TestClient is None or importlib.util.find_spec("httpx2") is None:
        missing("the console extras are not installed: pip install -e '.[console,console-test]'")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from connector.console.app import create_app

    app = create_app(Runtime(default_connector="mqtt"), TOKEN, connector_id="mqtt")
    with TestClient(app, base_url="http://127.0.0.1") as running:
        running.cookies.set("console_token", TOKEN)
        yield running


def _post(client: Any, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def _events(text: str) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a server-sent event stream."""
    found = []
    for block in text.split("\n\n"):
        event = re.search(r"^event: (.*)$", block, re.MULTILINE)
        data = re.search(r"^data: (.*)$", block, re.MULTILINE)
        if event and data:
            found.append((event.group(1), json.loads(data.group(1))))
    return found


def test_every_request_without_the_token_is_refused() -> None:
    from connector.console.app import create_app

    app = create_app(Runtime(default_connector="mqtt"), TOKEN)
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as bare:
        for path in ("/", "/api/connectors", "/static/console.js", "/static/vendor/jsoneditor.js", "/nowhere"):
            assert bare.get(path).status_code == 403, path
            assert bare.get(path + "?token=wrong").status_code == 403, path
        assert _post(bare, "/api/check", {"connector": "mqtt", "connection": {}}).status_code == 403
        bare.cookies.set("console_token", "wrong")
        assert bare.get("/").status_code == 403
        bare.cookies.clear()
        assert bare.get("/?token=" + "\u00e9" * 3).status_code == 403  # not ASCII: refused, not an error
        # the first visit with the token sets the cookie and drops the token from the address
        first = bare.get(f"/?token={TOKEN}")
        assert first.status_code == 303 and first.headers["location"] == "/"
        assert "httponly" in first.headers["set-cookie"].lower() and "samesite=strict" in first.headers["set-cookie"].lower()
        bare.cookies.set("console_token", TOKEN)
        page = bare.get("/")
        assert page.status_code == 200 and "Connector console" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in page.headers["content-security-policy"]


def test_the_forms_come_from_the_schemas_and_carry_no_secret(client: Any) -> None:
    listed = client.get("/api/connectors").json()
    assert listed["first"] == "mqtt" and listed["keep"] == KEEP == 200
    mqtt = next(c for c in listed["connectors"] if c["id"] == "mqtt")
    operation = mqtt["forms"]["operation"]["properties"]
    qos = operation["qos"]
    assert qos["enum"] == [0, 1, 2]
    assert qos["options"]["enum_titles"] == ["0 - At most once", "1 - At least once", "2 - Exactly once"]
    order = sorted(operation, key=lambda name: operation[name]["propertyOrder"])
    assert order[:4] == ["action", "topic", "qos", "retained"]
    assert operation["retained"]["options"]["dependencies"] == {"action": ["send"]}  # from the schema's if/then
    assert operation["max_attempts"]["options"]["dependencies"] == {"action": ["listen"]}
    one, several = operation["topic"]["oneOf"]  # one topic or a list of them, each named
    assert (one["type"], one["title"], several["type"], several["title"]) == ("string", "text", "array", "a list")
    topic_error = one["options"]["error_messages"]["en"]["error_pattern"]
    assert topic_error.startswith("'+' and '#' must each be a whole level")  # the schema's errorMessage
    password = mqtt["forms"]["connection"]["properties"]["password"]
    assert password["format"] == "password" and "default" not in password
    assert mqtt["forms"]["connection"]["properties"]["host"]["default"] == "127.0.0.1"


def test_a_connector_without_an_action_field_gets_one_from_its_manifest(client: Any) -> None:
    listed = client.get("/api/connectors").json()["connectors"]
    disk = next((c for c in listed if c["id"] == "disk"), None)
    if disk is None:
        missing("the disk connector is not installed (pip install ./examples/disk-connector)")
    operation = disk["forms"]["operation"]
    assert operation["properties"]["action"]["enum"] == ["send", "listen"]
    assert operation["x-required"][0] == "action"
    assert operation["properties"]["pattern"]["options"]["dependencies"] == {"action": ["listen"]}
    assert disk["forms"]["connection"]["x-required"] == ["directory"]


def test_the_server_validates_again_and_places_the_sdk_sentences_on_the_fields(client: Any) -> None:
    answer = _post(client, "/api/validate", {"connector": "mqtt", "connection": {"port": 0, "password": SECRET},
                                             "operation": {"action": "send", "topic": "a/#"}})
    assert answer.status_code == 422
    errors = {(e["form"], e["path"]): e["message"] for e in answer.json()["errors"]}
    assert errors == {("connection", "port"): "must be at least 1, not 0",
                      ("operation", "topic"): "a Send topic names one topic: the wildcards '+' and '#' are for Listen"}
    missing_topic = _post(client, "/api/validate", {"connector": "mqtt", "operation": {"action": "listen"}}).json()
    assert [(e["form"], e["path"]) for e in missing_topic["errors"]] == [("operation", "topic")]
    listed = _post(client, "/api/validate", {"connector": "mqtt", "operation": {
        "action": "listen", "topic": ["a/#", "$share//x"], "retained": True}}).json()["errors"]
    assert {(e["form"], e["path"]) for e in listed} == {("operation", "topic/1"), ("operation", "retained")}
    assert _post(client, "/api/validate", {"connector": "mqtt", "operation": {"action": "send", "topic": "a"}}).json() \
        == {"ok": True}
    assert SECRET not in answer.text
    assert _post(client, "/api/validate", {"connector": "nope"}).status_code == 400
    assert client.post("/api/validate", content=b"{").status_code == 400


def test_check_says_ok_or_the_one_line_reason(client: Any, connection: dict) -> None:
    answer = _post(client, "/api/check", {"connector": "mqtt", "connection": connection}).json()
    assert answer["ok"] is True and str(connection["port"]) in answer["line"]
    from brokers import listen_port

    closed = {**connection, "port": listen_port(), "password": SECRET, "username": "u"}
    failed = _post(client, "/api/check", {"connector": "mqtt", "connection": closed})
    assert failed.status_code == 502 and failed.json()["ok"] is False
    assert "\n" not in failed.json()["error"] and SECRET not in failed.text


def test_send_gives_one_result_per_document(client: Any, connection: dict, runtime: Runtime,
                                            unique: str) -> None:
    operation = {"action": "send", "topic": f"{unique}/in", "qos": 1}
    with runtime.listen_in_background(connection, {"action": "listen", "topic": f"{unique}/in", "qos": 1},
                                      count=4) as listening:
        listening.wait_ready()
        answer = _post(client, "/api/send", {"connector": "mqtt", "connection": connection, "operation": operation,
                                             "documents": [{"text": "typed"}, {"lines": "one\ntwo\n"},
                                                           {"name": "b.bin", "base64": base64.b64encode(b"\x00\xff").decode()}]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(r["index"], r["name"], r["status"]) for r in body["results"]] == [
        (0, "the text", "SUCCESS"), (1, "line 1", "SUCCESS"), (2, "line 2", "SUCCESS"), (3, "file 'b.bin'", "SUCCESS")]
    assert body["summary"].startswith("sent 4 of 4 documents to ")
    assert [d.payload for d in listening.documents] == [b"typed", b"one", b"two", b"\x00\xff"]
    for bad, says in (([], "at least one document"), ([{"base64": "!!"}], "not valid base64"),
                      ([{"lines": ""}], "no documents"), ([{"text": "\ud800"}], "lone surrogate")):
        refused = _post(client, "/api/send", {"connector": "mqtt", "connection": connection, "operation": operation,
                                              "documents": bad})
        assert refused.status_code == 400 and says in refused.json()["error"], refused.text


def test_a_listen_streams_its_rows_and_keeps_the_last_ones(client: Any, connection: dict, runtime: Runtime,
                                                           unique: str) -> None:
    started = _post(client, "/api/listen", {"connector": "mqtt", "connection": connection,
                                           "operation": {"action": "listen", "topic": f"{unique}/#", "qos": 1}})
    assert started.status_code == 200 and started.json()["line"] == f"listening on '{unique}/#' (QoS 1)"
    again = _post(client, "/api/listen", {"connector": "mqtt", "connection": connection,
                                         "operation": {"action": "listen", "topic": "x"}})
    assert again.status_code == 400 and "stop it first" in again.json()["error"]
    documents = [f"m{i}".encode() for i in range(KEEP + 4)] + [b"\x01\x02binary\xff"]
    results = list(runtime.send(connection, {"action": "send", "topic": f"{unique}/a", "qos": 1}, documents))
    assert all(r.ok for r in results)
    assert _console_listen(client).wait_rows(len(documents), 30)
    assert client.post("/api/listen/stop").json() == {"ok": True, "was_running": True, "line": "stopped"}
    events = _events(client.get("/api/listen/events").text)
    rows = [data for event, data in events if event == "row"]
    assert len(rows) == KEEP  # only the last ones
    assert rows[0]["seq"] == len(documents) - KEEP + 1 and rows[-1]["seq"] == len(documents)
    assert rows[-2]["preview"] == f"m{KEEP + 3}" and rows[-2]["encoding"] == "text"
    assert rows[-1]["preview"] == "01 02 62 69 6e 61 72 79 ff" and rows[-1]["encoding"] == "hex"
    assert rows[-1]["properties"]["topic"] == f"{unique}/a" and rows[-1]["acknowledged"] is True
    assert events[-1] == ("end", {"reason": "stopped", "accepted": len(documents), "error": None,
                                  "dead_lettered": 0, "skipped": {}})


def test_a_refusing_listen_shows_its_rows_unacknowledged(client: Any, connection: dict, runtime: Runtime,
                                                         unique: str) -> None:
    operation = {"action": "listen", "topic": f"{unique}/#", "qos": 1, "max_attempts": 2, "retry_delay": 0,
                 "dead_letter_topic": f"{unique}-dead"}
    started = _post(client, "/api/listen", {"connector": "mqtt", "connection": connection, "operation": operation,
                                           "refuse": True})
    assert started.status_code == 200, started.text
    with runtime.listen_in_background(connection, {"action": "listen", "topic": f"{unique}-dead", "qos": 1},
                                      count=1) as dead:
        dead.wait_ready()
        assert all(r.ok for r in runtime.send(connection, {"action": "send", "topic": f"{unique}/a", "qos": 1}, ["x"]))
    assert json.loads(dead.documents[0].payload)["attempts"] == 2  # moved after its last attempt
    client.post("/api/listen/stop")
    events = _events(client.get("/api/listen/events").text)
    assert [data["acknowledged"] for event, data in events if event == "row"] == [False, False]


def _console_listen(client: Any) -> Any:
    """The console's running Listen."""
    return client.app.app.state.console.listen  # type: ignore[attr-defined]


def test_the_form_dialect_keeps_the_rules() -> None:
    from connector.console.forms import form_schema

    schema = {"type": "object", "properties": {
        "a": {"$ref": "#/$defs/name"}, "n": {"type": ["integer", "null"], "default": None, "exclusiveMinimum": 0},
        "p": {"type": "array", "prefixItems": [{"type": "string"}], "items": False},
        "f": {"type": ["integer", "null"], "enum": [0, 1, None], "default": None}, "b": {"type": "boolean"}},
        "required": ["a"], "$defs": {"name": {"type": "string", "minLength": 1, "errorMessage": {"minLength": "empty!"}}}}
    form = form_schema(schema)
    a, n, p, f = (form["properties"][k] for k in "anpf")
    assert a["type"] == "string" and a["options"]["error_messages"]["en"]["error_notempty"] == "empty!"
    assert n == {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "propertyOrder": 1}
    assert p["items"] == [{"type": "string"}] and p["additionalItems"] is False
    assert f["enum"] == ["", "0", "1"] and f["options"]["enum_titles"] == ["(not set)", "0", "1"]
    assert f["x-choices"] == {"0": 0, "1": 1} and f["type"] == "string"
    assert form["properties"]["b"]["format"] == "checkbox" and form["x-required"] == ["a"]
    with pytest.raises(ValueError, match="recursive"):
        form_schema({"properties": {"x": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"properties": {"y": {"$ref": "#/$defs/x"}}}}})
    with pytest.raises(ValueError, match="not local"):
        form_schema({"properties": {"x": {"$ref": "https://example.com/s.json"}}})


def test_the_command_prints_its_url_and_refuses_without_the_token(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    def status(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    proc = subprocess.Popen([sys.executable, "-m", "connector", "console", "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.fullmatch(r"console at (http://127\.0\.0\.1:(\d+)/)\?token=([A-Za-z0-9_-]{43}) \(Ctrl-C to stop\)\n", line)
        assert match, line
        base, token = match.group(1), match.group(3)
        assert status(base) == 403
        assert status(base + "api/connectors") == 403
        assert status(f"{base}api/connectors?token={token}") == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err == "console stopped\n"


def test_the_command_warns_beyond_loopback_and_says_why_it_cannot_start() -> None:
    taken = subprocess.Popen([sys.executable, "-m", "connector", "console", "--port", "0", "--no-browser",
                              "--host", "0.0.0.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = taken.stdout.readline()  # type: ignore[union-attr]
        port = re.search(r":(\d+)/", line).group(1)  # type: ignore[union-attr]
        again = run_cli("console", "--port", port, "--no-browser", "--host", "0.0.0.0")
        assert again.returncode == 3
        assert again.stderr.decode().splitlines()[-1] == (f"error: port {port} on 0.0.0.0 is already taken: stop what "
                                                         "uses it or choose another with --port")
    finally:
        taken.send_signal(signal.SIGTERM)
        _, err = taken.communicate(timeout=30)
    assert err.startswith("warning: the console listens on 0.0.0.0, beyond this machine")
    assert taken.returncode == 0
    bad = run_cli("console", "--port", "70000")
    assert bad.returncode == 2 and b"must be a port number from 0 (a free one) to 65535" in bad.stderr
    unknown = run_cli("console", "--connector", "nope", "--no-browser")
    assert unknown.returncode == 2 and b"nope" in unknown.stderr
