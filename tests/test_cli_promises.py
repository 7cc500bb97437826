"""The foundation's promises on the embedded broker, through the command line only: a CLI Listen
(a child process) receives what CLI Sends publish."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from brokers import stop_process
from clirun import run_cli, start_cli
from test_cli import LineReader, assert_ok, conn_args, document_line

from connector.mqtt.broker import BrokerThread

READY_SECONDS = 15


@contextmanager
def cli_listen(broker: BrokerThread, *args: str) -> Iterator[tuple[subprocess.Popen, LineReader]]:
    """``listen ARGS --verbose`` as a child; returns once it said it is subscribed."""
    proc = start_cli("listen", *conn_args(broker), *args, "--verbose")
    try:
        stderr = LineReader(proc.stderr)
        stdout = LineReader(proc.stdout)
        while True:
            line = stderr.get(READY_SECONDS)
            assert line is not None, f"the Listen did not subscribe: {b''.join(stderr.all)!r}"
            if line.startswith(b"listening on"):
                break
        yield proc, stdout
    finally:
        stop_process(proc)


def cli_send(broker: BrokerThread, topic: str, *args: str, input: bytes | None = None) -> None:
    assert_ok(run_cli("send", *conn_args(broker), "--topic", topic, *args, input=input))


def documents(proc: subprocess.Popen, stdout: LineReader) -> list[dict]:
    assert proc.wait(30) == 0
    return [document_line(line) for line in stdout.rest().decode("utf-8").splitlines()]


def test_smoke_alarms_filter_with_spaces(broker: BrokerThread, unique: str) -> None:
    base = f"{unique}/sensors/smoke alarms"
    with cli_listen(broker, "--topic", f"{base}/#", "--qos", "1", "--count", "3") as (proc, out):
        cli_send(broker, f"{unique}/sensors/a/temperature", "--qos", "1", "--message", "not an alarm")
        for topic in (f"{base}/kitchen", f"{base}/garage/battery", base):
            cli_send(broker, topic, "--qos", "1", "--message", topic.rsplit("/", 1)[-1])
        docs = documents(proc, out)
    assert [d["properties"]["topic"] for d in docs] == [f"{base}/kitchen", f"{base}/garage/battery", base]


def test_filters_are_case_sensitive(broker: BrokerThread, unique: str) -> None:
    with cli_listen(broker, "--topic", f"{unique}/Sensors/#", "--timeout", "2") as (upper, upper_out), \
            cli_listen(broker, "--topic", f"{unique}/sensors/#", "--count", "1") as (lower, lower_out):
        cli_send(broker, f"{unique}/sensors/a/temperature", "--message", "21")
        assert [d["payload"] for d in documents(lower, lower_out)] == ["21"]
        assert documents(upper, upper_out) == []


def test_200_qos2_documents_exactly_once(broker: BrokerThread, unique: str) -> None:
    lines = [f"document {i}" for i in range(200)]
    with cli_listen(broker, "--topic", f"{unique}/jobs", "--qos", "2", "--count", "200") as (proc, out):
        cli_send(broker, f"{unique}/jobs", "--qos", "2", "--lines", input=("\n".join(lines) + "\n").encode())
        docs = documents(proc, out)
    payloads = [d["payload"] for d in docs]
    assert len(payloads) == 200 and sorted(payloads) == sorted(lines)
    assert {d["properties"]["qos"] for d in docs} == {2}


def test_retained_then_cleared_by_an_empty_retained_send(broker: BrokerThread, unique: str) -> None:
    topic = f"{unique}/sensors/a/temperature"
    cli_send(broker, topic, "--qos", "1", "--retained", "--message", "21")
    with cli_listen(broker, "--topic", f"{unique}/sensors/+/temperature", "--qos", "1", "--count", "1") as (proc, out):
        docs = documents(proc, out)
    assert [(d["payload"], d["properties"]["retained"], d["properties"]["qos"]) for d in docs] == [("21", True, 1)]

    cli_send(broker, topic, "--qos", "1", "--retained", "--message", "")
    with cli_listen(broker, "--topic", f"{unique}/sensors/+/temperature", "--qos", "1", "--timeout", "1") as (proc, out):
        assert documents(proc, out) == []


def test_results_file_reports_each_document(broker: BrokerThread, unique: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    results = tmp_path / "results.jsonl"
    cli_send(broker, f"{unique}/r", "--qos", "1", "--message", "a", "--message", "b", "--results", str(results))
    assert [json.loads(line) for line in results.read_text().splitlines()] == [
        {"index": 0, "status": "SUCCESS"}, {"index": 1, "status": "SUCCESS"}]
