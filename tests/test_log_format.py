"""``--log-format json``: every line on stderr one JSON object (time, level, logger, message, the
record's extra fields), never a secret; text stays the default."""

from __future__ import annotations

import datetime
import json
import logging
import socket

from clirun import run_cli
from connector.harness import logs

SECRET = "pa55-word-never-shown"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def json_lines(stderr: bytes) -> list[dict]:
    lines = stderr.decode().splitlines()
    assert lines, "nothing on stderr"
    objects = [json.loads(line) for line in lines]  # each line one object, or this raises
    for line in objects:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert datetime.datetime.fromisoformat(line["time"]).utcoffset() == datetime.timedelta(0)
    return objects


def test_a_failing_listen_logs_json_lines_without_its_password() -> None:
    result = run_cli("listen", "--log-format", "json", "--port", str(closed_port()), "--topic", "a",
                     "--password", SECRET, "--username", "u", "--verbose")
    assert result.returncode == 3
    assert SECRET.encode() not in result.stderr
    lines = json_lines(result.stderr)
    levels = [line["level"] for line in lines]
    assert "debug" in levels  # --verbose: the connector's own log lines too
    assert lines[0]["level"] == "warning" and lines[0]["message"].startswith("--password on the command line")
    assert lines[-1]["level"] == "error" and lines[-1]["message"].startswith("connection refused by 127.0.0.1:")


def test_the_flag_before_the_command_covers_the_parsers_errors() -> None:
    result = run_cli("--log-format", "json", "send", "--topic", "a", "--qos", "3", "--message", "x")
    assert result.returncode == 2
    [line] = json_lines(result.stderr)
    assert line["level"] == "error" and line["message"].startswith("argument --qos: invalid choice: 3")


def test_a_send_summary_is_an_info_line(connection: dict, unique: str) -> None:
    result = run_cli("send", "--log-format=json", "--port", str(connection["port"]), "--topic", unique,
                     "--message", "x")
    assert result.returncode == 0, result.stderr
    [line] = json_lines(result.stderr)
    assert line["logger"] == "connector.harness" and line["level"] == "info"
    assert line["message"] == f"sent 1 of 1 document to {unique!r} (QoS 0)"


def test_text_stays_the_default() -> None:
    result = run_cli("send", "--port", str(closed_port()), "--topic", "a", "--message", "x")
    assert result.returncode == 3
    assert result.stderr.decode().startswith("error: connection refused by 127.0.0.1:")


def test_extra_fields_are_kept_and_masked() -> None:
    logs.remember_secret(SECRET)
    try:
        record = logging.LogRecord("connector.x", logging.WARNING, __file__, 1, "login as %s with %s", ("u", SECRET),
                                   None)
        record.__dict__.update(attempt=2, detail=f"key={SECRET}", rate=float("nan"), pairs=[("k", SECRET)])
        line = json.loads(logs.JsonFormatter().format(record))
    finally:
        logs._redact.secrets.discard(SECRET)
    assert SECRET not in json.dumps(line)
    assert line["message"] == f"login as u with {logs.MASK}" and line["level"] == "warning"
    assert line["attempt"] == 2 and line["detail"] == f"key={logs.MASK}" and line["rate"] == "nan"
    assert line["pairs"] == [["k", logs.MASK]]
