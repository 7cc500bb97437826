"""The command line as a user runs it (``python -m connector ...``), against the contract in
CONTRACT.md: commands, the JSON-lines document format, exit codes, one-line errors, no secrets."""

from __future__ import annotations

import base64
import datetime
import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from jsonschema import Draft202012Validator

from connector.mqtt.broker import BrokerThread, free_port
from connector.harness.runtime import BackgroundListen, Runtime
from brokers import silent_tcp_server, stop_process
from clirun import run_cli, start_cli

QUIET = 0.5  # bounded wait that shows nothing (more) arrives; never used to synchronise
WAIT = 10.0
PROPERTIES = {"topic", "qos", "retained", "duplicate", "message_id", "received_at"}
SECRET = "s3cr3t-value"


# -- helpers -----------------------------------------------------------------------------------

def conn_args(broker: BrokerThread) -> list[str]:
    return ["--host", broker.host, "--port", str(broker.port)]


def text(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    return proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    out, err = text(proc)
    assert proc.returncode == 0, (out, err)
    assert "Traceback" not in out + err


def assert_error(proc: subprocess.CompletedProcess, code: int, verbose: bool = False) -> str:
    """Exit ``code``, exactly one ``error:`` line on stderr (the only line unless verbose), no traceback."""
    out, err = text(proc)
    assert proc.returncode == code, (out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    if not verbose:
        assert err.splitlines() == errors, err
    return errors[0]


def document_line(line: str) -> dict:
    """One line of a Listen's output, checked against the contract's format."""
    document = json.loads(line)
    assert set(document) == {"payload", "encoding", "properties"}
    assert document["encoding"] in ("utf-8", "base64")
    props = document["properties"]
    assert set(props) == PROPERTIES
    assert isinstance(props["topic"], str) and props["qos"] in (0, 1, 2)
    assert isinstance(props["retained"], bool) and isinstance(props["duplicate"], bool)
    assert isinstance(props["message_id"], int)
    return document


def payload_of(document: dict) -> bytes:
    if document["encoding"] == "base64":
        return base64.b64decode(document["payload"], validate=True)
    return document["payload"].encode("utf-8")


def observe(runtime: Runtime, broker: BrokerThread, topic_filter: str, **kwargs: object) -> BackgroundListen:
    """A Listen through the API that watches what the CLI sends; subscribed when returned."""
    connection = {"host": broker.host, "port": broker.port, "connect_timeout": 5}
    bg = runtime.listen_in_background(connection, {"action": "listen", "topic": topic_filter, "qos": 1}, **kwargs)
    bg.wait_ready()
    return bg


def api_send(runtime: Runtime, broker: BrokerThread, topic: str, payloads: list, retained: bool = False) -> None:
    connection = {"host": broker.host, "port": broker.port, "connect_timeout": 5}
    results = list(runtime.send(connection, {"action": "send", "topic": topic, "qos": 1, "retained": retained},
                                payloads))
    assert all(r.ok for r in results), results


class LineReader:
    """Reads a child's stream in a thread, so that a test can wait for a line with a timeout."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.all: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self.all.append(line)
            self.lines.put(line)

    def get(self, timeout: float) -> bytes | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def rest(self, timeout: float = WAIT) -> bytes:
        self._thread.join(timeout)
        return b"".join(self.all)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word (not an MQTT broker)."""
    with silent_tcp_server() as port:
        yield port


# -- send, then listen -------------------------------------------------------------------------

def test_retained_send_then_listen_prints_one_contract_line(broker: BrokerThread, unique: str) -> None:
    topic = f"{unique}/sensors/a/temperature"
    sent = run_cli("send", "--topic", topic, "--qos", "1", "--retained", "--message", "21", *conn_args(broker))
    assert_ok(sent)

    heard = run_cli("listen", "--topic", f"{unique}/sensors/+/temperature",
                    "--count", "1", "--timeout", "10", *conn_args(broker))
    assert_ok(heard)
    out, _ = text(heard)
    assert out.endswith("\n") and out.count("\n") == 1, out
    # The Listen subscribed at QoS 0 (the default): delivered QoS is the lower of 1 and 0.
    document = document_line(out)
    received = datetime.datetime.fromisoformat(document["properties"].pop("received_at"))
    assert received.tzinfo is not None and abs(time.time() - received.timestamp()) < 60
    assert document == {
        "payload": "21", "encoding": "utf-8",
        "properties": {"topic": topic, "qos": 0, "retained": True, "duplicate": False, "message_id": 0},
    }

    again = run_cli("listen", "--topic", f"{unique}/sensors/+/temperature", "--qos", "1", "--count", "1",
                    "--timeout", "10", *conn_args(broker))
    assert_ok(again)
    (line,) = text(again)[0].splitlines()
    document = document_line(line)
    assert (document["payload"], document["properties"]["qos"], document["properties"]["retained"]) == ("21", 1, True)


def test_send_files_bytes_exact(broker: BrokerThread, runtime: Runtime, unique: str, tmp_path: Path) -> None:
    text_file, binary_file = tmp_path / "note.txt", tmp_path / "blob.bin"
    text_file.write_bytes("héllo wörld\r\n\n".encode())
    binary_file.write_bytes(bytes(range(256)))
    topic = f"{unique}/files"
    with observe(runtime, broker, topic, count=2, timeout=WAIT) as bg:
        sent = run_cli("send", "--topic", topic, "--qos", "1", "--file", str(text_file), "--file", str(binary_file),
                       *conn_args(broker))
        assert_ok(sent)
    assert [d.payload for d in bg.documents] == [text_file.read_bytes(), binary_file.read_bytes()]


def test_listen_prints_binary_payload_as_base64(broker: BrokerThread, unique: str, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    topic = f"{unique}/blob"
    assert_ok(run_cli("send", "--topic", topic, "--qos", "1", "--retained", "--file", str(blob), *conn_args(broker)))
    heard = run_cli("listen", "--topic", topic, "--qos", "1", "--count", "1", "--timeout", "10", *conn_args(broker))
    assert_ok(heard)
    (line,) = text(heard)[0].splitlines()
    document = document_line(line)
    assert document["encoding"] == "base64"
    assert payload_of(document) == bytes(range(256))


def test_send_lines_makes_one_document_per_line(broker: BrokerThread, runtime: Runtime, unique: str) -> None:
    topic = f"{unique}/lines"
    with observe(runtime, broker, topic, count=4, timeout=WAIT) as bg:
        sent = run_cli("send", "--topic", topic, "--qos", "1", "--lines", *conn_args(broker),
                       input="first line\nsecond, with spaces\n\nlast without newline".encode())
        assert_ok(sent)
    assert [d.payload for d in bg.documents] == [b"first line", b"second, with spaces", b"",
                                                 b"last without newline"]


def test_send_results_file_has_one_json_line_per_document(broker: BrokerThread, unique: str, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    sent = run_cli("send", "--topic", f"{unique}/r", "--qos", "1", "--message", "a", "--message", "b",
                   "--message", "c", "--results", str(results), *conn_args(broker))
    assert_ok(sent)
    lines = results.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"index": i, "status": "SUCCESS"} for i in range(3)]


# -- exit 2: bad input, nothing sent -----------------------------------------------------------

BAD_INPUT = {
    "wildcard topic": lambda u, d: ["send", "--topic", f"{u}/+/x", "--message", "m"],
    "qos 3": lambda u, d: ["send", "--topic", f"{u}/x", "--qos", "3", "--message", "m"],
    "missing file": lambda u, d: ["send", "--topic", f"{u}/x", "--qos", "1", "--file", str(d / "here.txt"),
                                  "--file", str(d / "missing.txt")],
    "unknown flag": lambda u, d: ["send", "--topic", f"{u}/x", "--message", "m", "--colour", "blue"],
    "bad connection json": lambda u, d: ["send", "--topic", f"{u}/x", "--message", "m",
                                         "--connection", str(d / "bad.json")],
    "persistent without client id": lambda u, d: ["listen", "--topic", f"{u}/#", "--persistent", "--timeout", "2"],
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_error_line_and_sends_nothing(case: str, broker: BrokerThread, runtime: Runtime,
                                                                 unique: str, tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_text("would be sent")
    (tmp_path / "bad.json").write_text('{"host": "127.0.0.1", "port": }')
    args = BAD_INPUT[case](unique, tmp_path)
    if "--connection" not in args:
        args += conn_args(broker)
    with observe(runtime, broker, f"{unique}/#") as bg:
        proc = run_cli(*args)
        api_send(runtime, broker, f"{unique}/marker", ["marker"])  # everything sent before it arrives first
        assert bg.collected.wait_for(1, WAIT)
    assert_error(proc, 2)
    assert [d.payload for d in bg.documents] == [b"marker"]


def test_bad_connection_file_does_not_show_the_password(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": "1883", "password": SECRET, "pasword": SECRET}))
    proc = run_cli("check", "--connection", str(config), "--verbose")
    line = assert_error(proc, 2, verbose=True)
    assert "port" in line and "pasword" in line  # every problem at once
    assert SECRET not in "".join(text(proc))


TOPIC_RULES = {
    "send topic over 65,535 UTF-8 bytes": (["send", "--message", "m", "--topic", "é" * 40_000], "80,000 bytes"),
    "listen shared subscription without a filter": (["listen", "--topic", "$share/g"], "no filter after the group"),
    "listen shared subscription with an empty group": (["listen", "--topic", "$share//a"], "group name"),
    "second listen filter with '#' inside": (["listen", "--topic", "a/#", "--topic", "b/#/c"], "the 2nd --topic:"),
}


@pytest.mark.parametrize("case", list(TOPIC_RULES))
def test_topic_rules_are_bad_input_even_with_the_broker_down(case: str) -> None:
    """The connector's own rules run with the schemas, before any connection: exit 2, not 3."""
    args, words = TOPIC_RULES[case]
    proc = run_cli(*args, "--host", "127.0.0.1", "--port", str(free_port()))
    line = assert_error(proc, 2)
    assert words in line


# -- exit 3: cannot connect --------------------------------------------------------------------

COMMANDS = {
    "check": ["check"],
    "send": ["send", "--topic", "t", "--qos", "0", "--message", "m"],
    "listen": ["listen", "--topic", "t/#", "--timeout", "5"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_refused_port_exits_3(command: str) -> None:
    proc = run_cli(*COMMANDS[command], "--host", "127.0.0.1", "--port", str(free_port()))
    line = assert_error(proc, 3)
    assert "refused" in line
    assert proc.stdout == b""


@pytest.mark.parametrize("command", list(COMMANDS))
def test_server_that_is_not_mqtt_exits_3(command: str, silent_server: int, tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": silent_server, "connect_timeout": 1}))
    started = time.monotonic()
    proc = run_cli(*COMMANDS[command], "--connection", str(config), timeout=30)
    line = assert_error(proc, 3)
    assert "MQTT" in line
    assert proc.stdout == b""
    assert time.monotonic() - started < 15


def test_password_never_shown(broker: BrokerThread, silent_server: int, tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": silent_server, "connect_timeout": 1}))
    runs = [
        run_cli("send", "--topic", "t", "--message", "m", "--username", "u", "--password", SECRET, "--verbose",
                "--host", "127.0.0.1", "--port", str(free_port())),
        run_cli("check", "--connection", str(config), "--username", "u", "--password", SECRET, "--verbose"),
        run_cli("send", "--topic", "t", "--message", "m", "--username", "u", "--verbose", "--connection", str(config),
                env={"MQTT_PASSWORD": SECRET}),
        run_cli("check", "--username", "u", "--verbose", *conn_args(broker), env={"MQTT_PASSWORD": SECRET}),
    ]
    assert [proc.returncode for proc in runs] == [3, 3, 3, 0]
    for proc in runs:
        out, err = text(proc)
        assert "DEBUG" in err  # verbose really was on
        assert SECRET not in out + err
        assert "Traceback" not in out + err


# -- listen ends on Ctrl-C ---------------------------------------------------------------------

def test_ctrl_c_ends_listen_with_exit_0_and_whole_lines(broker: BrokerThread, runtime: Runtime, unique: str) -> None:
    topic = f"{unique}/ctrl-c"
    proc = start_cli("listen", "--topic", f"{unique}/#", "--qos", "1", *conn_args(broker))
    try:
        out = LineReader(proc.stdout)  # type: ignore[arg-type]
        first = None
        deadline = time.monotonic() + 20
        polls = 0
        while first is None and time.monotonic() < deadline:  # subscribed once a poll comes back
            api_send(runtime, broker, topic, [f"poll {polls}"])
            polls += 1
            first = out.get(0.5)
        assert first is not None, "the Listen never received anything"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(10)
        err = proc.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        stop_process(proc)
    assert code == 0, err
    assert "Traceback" not in err
    lines = out.rest().decode().splitlines()
    assert 1 <= len(lines) <= polls
    for line in lines:
        document = document_line(line)
        assert document["properties"]["topic"] == topic
        assert document["payload"].startswith("poll ")


# -- run: any connector from a connection file and an operation file ------------------------------

def test_run_send_with_input_files(broker: BrokerThread, runtime: Runtime, unique: str, tmp_path: Path) -> None:
    topic = f"{unique}/run-send"
    (tmp_path / "c.json").write_text(json.dumps({"host": broker.host, "port": broker.port}))
    (tmp_path / "o.json").write_text(json.dumps({"action": "send", "topic": topic, "qos": 1}))
    (tmp_path / "a.txt").write_bytes(b"first\n")
    (tmp_path / "b.bin").write_bytes(bytes([0, 255, 10, 13]))
    with observe(runtime, broker, topic, count=2, timeout=WAIT) as bg:
        proc = run_cli("run", "--connection", str(tmp_path / "c.json"), "--operation", str(tmp_path / "o.json"),
                       str(tmp_path / "a.txt"), str(tmp_path / "b.bin"))
        assert_ok(proc)
    assert [d.payload for d in bg.documents] == [b"first\n", bytes([0, 255, 10, 13])]


def test_run_listen(broker: BrokerThread, runtime: Runtime, unique: str, tmp_path: Path) -> None:
    topic = f"{unique}/run-listen"
    api_send(runtime, broker, topic, ["kept"], retained=True)
    (tmp_path / "c.json").write_text(json.dumps({"host": broker.host, "port": broker.port}))
    (tmp_path / "o.json").write_text(json.dumps({"action": "listen", "topic": f"{unique}/#", "qos": 1}))
    proc = run_cli("run", "--connection", str(tmp_path / "c.json"), "--operation", str(tmp_path / "o.json"),
                   "--count", "1", "--timeout", "10")
    assert_ok(proc)
    (line,) = text(proc)[0].splitlines()
    document = document_line(line)
    assert (document["payload"], document["properties"]["topic"]) == ("kept", topic)
    assert (document["properties"]["qos"], document["properties"]["retained"]) == (1, True)


# -- describe, check ---------------------------------------------------------------------------

def test_describe_shows_the_options_tab_with_help_text() -> None:
    proc = run_cli("describe")
    assert_ok(proc)
    shown = " ".join(text(proc)[0].split())
    for word in ("Action", "Listen", "Send", "Topic", "Quality of Service", "At most once", "At least once",
                 "Exactly once", "Retained Message"):
        assert word in shown, word
    # The help text comes from the operation schema, every word of it.
    schema = json.loads(run_cli("describe", "--json").stdout)["operation_schema"]
    for name, prop in schema["properties"].items():
        assert " ".join(prop["description"].split()) in shown, name


def test_describe_json_is_a_manifest_with_valid_schemas() -> None:
    proc = run_cli("describe", "--json")
    assert_ok(proc)
    manifest = json.loads(proc.stdout)
    assert manifest["id"] == "mqtt"
    assert set(manifest["actions"]) == {"send", "listen"}
    for key in ("connection_schema", "operation_schema"):
        Draft202012Validator.check_schema(manifest[key])
    operation = Draft202012Validator(manifest["operation_schema"])
    assert operation.is_valid({"action": "send", "topic": "sensors/a/temperature", "qos": 1, "retained": True})
    assert not operation.is_valid({"action": "send", "topic": "sensors/+/temperature"})
    assert not operation.is_valid({"action": "listen", "topic": "sensors/#", "qos": 3})


def test_check(broker: BrokerThread) -> None:
    ok = run_cli("check", *conn_args(broker))
    assert_ok(ok)
    (line,) = text(ok)[0].splitlines()
    assert line.startswith("ok")
    assert_error(run_cli("check", "--host", "127.0.0.1", "--port", str(free_port())), 3)


# -- broker ------------------------------------------------------------------------------------

def test_broker_command_serves_and_refuses_a_taken_port(tmp_path: Path) -> None:
    port = free_port()
    proc = start_cli("broker", "--port", str(port))
    try:
        out = LineReader(proc.stdout)  # type: ignore[arg-type]
        line = out.get(20)
        assert line is not None, "the broker printed nothing"
        assert f"127.0.0.1:{port}" in line.decode()
        assert_ok(run_cli("check", "--host", "127.0.0.1", "--port", str(port)))  # it accepts connections

        second = run_cli("broker", "--port", str(port), timeout=30)
        message = assert_error(second, 3)
        assert str(port) in message and "taken" in message
        assert proc.poll() is None  # the first broker still runs
    finally:
        stop_process(proc)
    assert proc.returncode == 0
    assert out.rest() == line  # exactly one line on stdout


# -- demo --------------------------------------------------------------------------------------

def test_demo_runs_offline() -> None:
    proc = run_cli("demo", timeout=120)
    assert_ok(proc)
    out = proc.stdout.decode()
    assert out.count("[ok]") == 8 and "FAILED" not in out  # every step's checks
    assert "demo finished: every check held" in out
