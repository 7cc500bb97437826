"""Bad input the corpus (tests/test_corpus.py) cannot hold in one row: two processes on one outbox,
a damaged outbox, warnings about exposed passwords, a host name that spoils a client ID, and the
rules the Python API applies as the command line does."""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connector.mqtt.broker import BrokerThread, free_port
from connector.harness.outbox import Outbox
from connector.harness.runtime import Runtime
from connector.sdk.documents import Document, Status
from connector.sdk.errors import ConfigError
from brokers import MosquittoBroker
from clirun import run_cli


def _error_line(proc: subprocess.CompletedProcess, code: int) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _address(broker: BrokerThread) -> list[str]:
    return ["--host", broker.host, "--port", str(broker.port)]


# -- the outbox: one Send at a time, and whole ----------------------------------------------------------

def test_a_second_send_on_a_held_outbox_is_refused_at_once_naming_the_holder(
        broker: BrokerThread, unique: str, tmp_path: Path) -> None:
    box = tmp_path / "jobs.outbox"
    topic = f"{unique}/jobs"
    runtime = Runtime(default_connector="mqtt")
    with runtime.listen_in_background({"host": broker.host, "port": broker.port},
                                      {"action": "listen", "topic": topic, "qos": 1}, count=3) as watcher:
        watcher.wait_ready()
        send = ["send", *_address(broker), "--topic", topic, "--qos", "1", "--lines", "--outbox", str(box)]
        first = subprocess.Popen([sys.executable, "-m", "connector", *send], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert first.stdin is not None
            first.stdin.write(b"one\n")
            first.stdin.flush()
            assert watcher.collected.wait_for(1, 10)  # the first Send holds the outbox, waiting for more input
            started = time.monotonic()
            second = run_cli(*send, input=b"one\ntwo\nthree\n", timeout=30)
            elapsed = time.monotonic() - started
            line = _error_line(second, 2)
            assert f"the outbox {str(box)!r} is in use by process {first.pid}" in line
            assert elapsed < 2, f"refused after {elapsed:.1f} s"
            first.stdin.write(b"two\n")
            first.stdin.close()
            assert first.wait(10) == 0, first.stderr.read() if first.stderr else ""
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        again = run_cli(*send, input=b"one\ntwo\nthree\n", timeout=30)  # free again once the first ended
        assert again.returncode == 0, again.stderr
        assert "2 of them confirmed by an earlier run" in again.stderr.decode()
        assert watcher.collected.wait_for(3, 10)
    assert [d.payload for d in watcher.documents] == [b"one", b"two", b"three"]  # nothing from the refused Send


def test_one_process_cannot_open_an_outbox_twice(tmp_path: Path) -> None:
    path = str(tmp_path / "box")
    held = Outbox(path, {"topic": "a"})
    try:
        with pytest.raises(ConfigError, match=f"is in use by process {os.getpid()}"):
            Outbox(path, {"topic": "a"})
    finally:
        held.close()
    Outbox(path, {"topic": "a"}).close()  # released by close


def _damaged_outbox(broker: BrokerThread, path: Path, topic: str) -> None:
    """An outbox of 3,000 confirmed documents, then garbage over its last pages (the table's rows)."""
    connection = {"host": broker.host, "port": broker.port, "connect_timeout": 5}
    results = list(Runtime(default_connector="mqtt").send(connection, {"action": "send", "topic": topic, "qos": 1},
                                  [f"doc {i}" for i in range(3000)], outbox=str(path)))
    assert all(r.ok for r in results)
    size = path.stat().st_size
    assert size > 8 * 4096 and not Path(f"{path}-wal").exists()  # checkpointed into the file on close
    with open(path, "r+b") as f:
        f.seek(size - 4 * 4096)
        f.write(bytes(range(256)) * 64)


def test_a_damaged_outbox_is_bad_input_before_anything_is_sent(broker: BrokerThread, unique: str,
                                                              tmp_path: Path) -> None:
    box = tmp_path / "damaged.outbox"
    topic = f"{unique}/d"
    _damaged_outbox(broker, box, topic)
    lines = "".join(f"doc {i}\n" for i in range(3000)).encode()
    with Runtime(default_connector="mqtt").listen_in_background({"host": broker.host, "port": broker.port},
                                        {"action": "listen", "topic": topic, "qos": 1}, timeout=5) as watcher:
        watcher.wait_ready()
        proc = run_cli("send", *_address(broker), "--topic", topic, "--qos", "1", "--lines", "--outbox", str(box),
                       input=lines)
    line = _error_line(proc, 2)
    assert f"cannot use {str(box)!r} as an outbox" in line and "malformed" in line
    assert watcher.documents == []


# -- exposed passwords: one warning line, never the secret ------------------------------------------------

def test_a_password_on_the_command_line_is_warned_about(tmp_path: Path) -> None:
    secret = "Sup3r-Secret-pw"
    proc = run_cli("check", "--port", str(free_port()), "--username", "u", "--password", secret)
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert "--password on the command line can be seen by other users" in warnings[0]
    assert "MQTT_PASSWORD" in warnings[0] and "--password-file" in warnings[0]
    assert secret not in err
    quiet = run_cli("check", "--port", str(free_port()), "--username", "u", env={"MQTT_PASSWORD": secret})
    assert "warning" not in quiet.stderr.decode(), quiet.stderr


@pytest.mark.parametrize("mode, warned", [(0o644, True), (0o640, True), (0o600, False), (0o400, False)])
def test_a_password_file_others_can_read_is_warned_about(tmp_path: Path, mode: int, warned: bool) -> None:
    secret = "File-Secret-9"
    password_file = tmp_path / "password"
    password_file.write_text(secret + "\n")
    password_file.chmod(mode)
    proc = run_cli("check", "--port", str(free_port()), "--username", "u", "--password-file", str(password_file))
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ([f"warning: the password file {str(password_file)!r} can be read by other users: "
                         f"chmod 600 {password_file}"] if warned else []), err
    assert secret not in err


def test_a_connection_file_holding_a_password_others_can_read_is_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "conn.json"
    config.write_text(json.dumps({"port": free_port(), "username": "u", "password": "Conn-Secret-1"}))
    config.chmod(0o644)
    err = run_cli("check", "--connection", str(config)).stderr.decode()
    assert "holds a secret and can be read by other users: chmod 600" in err
    assert "Conn-Secret-1" not in err
    config.write_text(json.dumps({"port": free_port(), "username": "u"}))  # no secret: nothing to say
    assert "warning" not in run_cli("check", "--connection", str(config)).stderr.decode()


# -- rules the Python API applies too -------------------------------------------------------------------

def test_a_host_name_that_spoils_the_client_id_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "node\x017")
    with pytest.raises(ConfigError, match="connection client_id: the client ID contains U[+]0001"):
        Runtime(default_connector="mqtt").check({"port": free_port(), "client_id": "orders-{hostname}"})


@pytest.mark.parametrize("field, value, words", [
    ("ack_timeout", math.nan, "connection ack_timeout: must be a finite number, not NaN"),
    ("connect_timeout", math.inf, "connection connect_timeout: must be a finite number, not Infinity"),
    ("wait_for_broker", math.nan, "connection wait_for_broker: must be a finite number"),
    ("port", 10 ** 5000, "connection port: must be a whole number of at most 20 digits"),
    ("keep_alive", -10 ** 30, "connection keep_alive: must be a whole number of at most 20 digits"),
    ("ack_timeout", 1e300, "connection ack_timeout: must be at most 31536000"),
], ids=["ack NaN", "connect inf", "wait NaN", "port 5000 digits", "keep_alive -1e30", "ack 1e300"])
def test_numbers_no_schema_bound_catches_are_refused_by_the_api(field: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        list(Runtime(default_connector="mqtt").send({"port": free_port(), field: value}, {"action": "send", "topic": "a"}, ["x"]))
    assert words in str(caught.value)


@pytest.mark.parametrize("timeout", [math.nan, math.inf, 0, -1, 1e300])
def test_a_listen_timeout_that_never_fires_is_refused_by_the_api(timeout: float) -> None:
    with pytest.raises(ConfigError, match="the timeout must be more than 0 seconds and finite"):
        Runtime(default_connector="mqtt").listen_in_background({"port": free_port()}, {"action": "listen", "topic": "a"}, timeout=timeout)


def test_a_retry_delay_of_nan_is_refused_by_the_api() -> None:
    with pytest.raises(ConfigError, match="operation retry_delay: must be a finite number, not NaN"):
        Runtime(default_connector="mqtt").listen_in_background({"port": free_port()}, {"action": "listen", "topic": "a", "retry_delay": math.nan})


def test_a_document_property_over_65535_bytes_is_that_documents_application_error(
        mosquitto: MosquittoBroker, unique: str) -> None:
    topic = f"{unique}/props"
    connection = {"host": mosquitto.host, "port": mosquitto.port, "protocol": "5", "connect_timeout": 5,
                  "ack_timeout": 5}
    long = "é" * 40_000
    documents = [Document.of("first"), Document.of("key", user_properties=[[long, "v"]]),
                 Document.of("value", user_properties=[["k", long]]), Document.of("type", content_type=long),
                 Document.of("corr", correlation_data=long), Document.of("control", content_type="a\x00b"),
                 Document.of("last")]
    runtime = Runtime(default_connector="mqtt")
    with runtime.listen_in_background(connection, {"action": "listen", "topic": topic, "qos": 1}, count=2,
                                      timeout=10) as watcher:
        watcher.wait_ready()
        results = list(runtime.send(connection, {"action": "send", "topic": topic, "qos": 1}, documents))
    assert [r.status for r in results] == [Status.SUCCESS, *[Status.APPLICATION_ERROR] * 5, Status.SUCCESS], results
    assert all("80,000 bytes long in UTF-8; MQTT allows at most 65,535" in (r.error or "") for r in results[1:5])
    assert "NUL" in (results[5].error or "")
    assert [d.payload for d in watcher.documents] == [b"first", b"last"]  # the connection survived


def test_a_line_longer_than_a_document_can_be_is_refused_without_reading_it_whole(
        broker: BrokerThread, unique: str, tmp_path: Path) -> None:
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"host": broker.host, "port": broker.port, "max_packet_size": 1000}))
    lines = b"first\n" + b"x" * 5_000_000 + b"\nlast\n"
    proc = run_cli("send", "--connection", str(config), "--topic", f"{unique}/l", "--qos", "1", "--lines",
                   "--results", str(tmp_path / "r.jsonl"), input=lines)
    assert proc.returncode == 1, proc.stderr
    results = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results] == ["SUCCESS", "APPLICATION_ERROR", "SUCCESS"]
    assert "at most 1,000 bytes" in results[1]["error"]


def test_a_named_pipe_is_read_when_its_turn_comes(broker: BrokerThread, unique: str, tmp_path: Path) -> None:
    """A FIFO (or ``--file <(cmd)``) has no size to check beforehand: it is read like cat reads it."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    first = tmp_path / "first.txt"
    first.write_text("from a file")
    proc = subprocess.Popen([sys.executable, "-m", "connector", "send", *_address(broker), "--topic", f"{unique}/p",
                             "--qos", "1", "--file", str(first), "--file", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with open(fifo, "wb") as writer:  # blocks until the Send opens it: its turn came
            writer.write(b"from a pipe")
        assert proc.wait(10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"sent 2 of 2 documents" in (proc.stderr.read() if proc.stderr else b"")
