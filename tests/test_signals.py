"""SIGINT / SIGTERM through the real command line: a Send reports every document it read (exit
128 + N), also when it waits for input that does not come and after a second signal; a Listen
whose reader does not read stops within a second and acknowledges nothing it could not write."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from brokers import MosquittoBroker, stop_process
from connector.mqtt.broker import BrokerThread
from connector.harness.runtime import Runtime
from connector.sdk.documents import Status
from faultproxy import FaultProxy
from test_output import environment

WAIT = 20.0
F_SETPIPE_SZ = 1031  # Linux fcntl


def wait_until(condition: Callable[[], bool], what: str, proc: subprocess.Popen, seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"exited {proc.returncode} before {what}"
        assert time.monotonic() < deadline, f"not {what} within {seconds:g} s"
        time.sleep(0.02)


def start_send(connection: list[str], topic: str, results: Path, command: str = "send") -> subprocess.Popen:
    """A QoS 1 Send of the lines of a pipe that the test writes to and keeps open (``send``, or ``run``
    with a connection file and an operation file next to ``results``)."""
    if command == "run":
        folder = results.parent
        host, port = connection[1], connection[3]
        (folder / "c.json").write_text(json.dumps({"host": host, "port": int(port)}))
        (folder / "o.json").write_text(json.dumps({"action": "send", "topic": topic, "qos": 1}))
        args = ["run", "--connection", str(folder / "c.json"), "--operation", str(folder / "o.json")]
    else:
        args = ["send", *connection, "--topic", topic, "--qos", "1"]
    return subprocess.Popen([sys.executable, "-m", "connector", *args, "--lines", "--results", str(results)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def feed(proc: subprocess.Popen, *lines: str) -> None:
    proc.stdin.write("".join(f"{line}\n" for line in lines).encode())  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]


def result_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def ended(proc: subprocess.Popen) -> tuple[int, str]:
    code = proc.wait(WAIT)
    proc.stdin.close()  # type: ignore[union-attr]
    return code, proc.stderr.read().decode()  # type: ignore[union-attr]


@pytest.mark.parametrize("sig, command", [(signal.SIGTERM, "send"), (signal.SIGINT, "send"), (signal.SIGTERM, "run")],
                         ids=["SIGTERM", "SIGINT", "run-SIGTERM"])
def test_a_signal_while_a_send_waits_for_input_reports_every_line_read(broker: BrokerThread, runtime: Runtime,
                                                                       unique: str, tmp_path: Path, sig: int,
                                                                       command: str) -> None:
    """Two lines read and delivered, the pipe still open: the signal ends the wait for input; both
    get their result line (SUCCESS), the summary says so, exit 128 + N."""
    topic, results = f"{unique}/wait", tmp_path / "results.jsonl"
    address = {"host": broker.host, "port": broker.port}
    with runtime.listen_in_background(address, {"action": "listen", "topic": topic, "qos": 1}, count=2,
                                      timeout=WAIT) as seen:
        seen.wait_ready()
        proc = start_send(["--host", broker.host, "--port", str(broker.port)], topic, results, command)
        try:
            feed(proc, "one", "two")
            wait_until(lambda: len(seen.collected) == 2, "both lines delivered", proc)
            proc.send_signal(sig)
            code, err = ended(proc)
        finally:
            stop_process(proc)
    assert code == 128 + sig, err
    assert result_lines(results) == [{"index": 0, "status": "SUCCESS"}, {"index": 1, "status": "SUCCESS"}]
    assert err == f"sent 2 of 2 documents to '{topic}' (QoS 1); stopped by {signal.Signals(sig).name} after document 2 " \
                  "(line 2): 2 sent, 2 confirmed, 0 failed, the rest of the input not sent\n"


@pytest.mark.parametrize("first, second", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGTERM)],
                         ids=["SIGTERM-SIGTERM", "SIGINT-SIGTERM"])
def test_a_second_signal_stops_at_once_and_still_reports_every_document_read(
        broker: BrokerThread, runtime: Runtime, unique: str, tmp_path: Path, first: int, second: int) -> None:
    """Ten documents read and sent into a network that relays nothing (their fate unknown): the first
    signal waits for the broker, the second stops at once; each of the twelve documents read has
    exactly one result line, FAILURE "interrupted" for the ten; the exit code is the first signal's."""
    topic, results = f"{unique}/second", tmp_path / "results.jsonl"
    address = {"host": broker.host, "port": broker.port}
    with FaultProxy(broker.host, broker.port) as proxy:
        connection = tmp_path / "connection.json"
        connection.write_text(json.dumps({"host": "127.0.0.1", "port": proxy.port, "ack_timeout": 120}))
        with runtime.listen_in_background(address, {"action": "listen", "topic": topic, "qos": 1}, count=2,
                                          timeout=WAIT) as seen:
            seen.wait_ready()
            proc = start_send(["--connection", str(connection)], topic, results)
            try:
                feed(proc, "a0", "a1")
                wait_until(lambda: len(seen.collected) == 2, "the first two delivered", proc)
                proxy.stall()
                feed(proc, *(f"b{i}" for i in range(10)))
                publish_size = 2 + 2 + len(topic) + 2 + 2  # fixed header, topic, packet id, payload "bN"
                wait_until(lambda: proxy.waiting() >= 10 * publish_size, "ten more sent into the stall", proc)
                proc.send_signal(first)
                # The same signal twice before the handler ran would count once: let the first land.
                time.sleep(0.5)
                assert proc.poll() is None, "the first signal must wait for the broker"
                stopped = time.monotonic()
                proc.send_signal(second)
                code, err = ended(proc)
                took = time.monotonic() - stopped
            finally:
                stop_process(proc)
    assert code == 128 + first, err
    assert took < 5, took
    lines = result_lines(results)
    assert [line["index"] for line in lines] == list(range(12))
    interrupted = [line for line in lines if line["status"] == Status.FAILURE.value]
    assert len(interrupted) >= 10 and all(line["error"].startswith("interrupted") for line in interrupted)
    assert "Traceback" not in err
    assert f"of 12 documents to '{topic}'" in err, err
    assert f"stopped by {signal.Signals(first).name} after document 12 (line 12): 12 sent, {12 - len(interrupted)} confirmed, " \
           f"{len(interrupted)} failed, the rest of the input not sent\n" in err, err


@pytest.mark.parametrize("unbuffered", [True, False], ids=["PYTHONUNBUFFERED=1", "buffered"])
def test_a_listen_with_a_blocked_reader_stops_within_a_second(mosquitto_factory: Callable[..., MosquittoBroker],
                                                              runtime: Runtime, unique: str, unbuffered: bool) -> None:
    """The reader of stdout reads nothing (the pipe is full, the Listen's write blocks): SIGTERM stops
    it within about a second (exit 0), and what it could not write comes to the next Listen of the
    persistent session: nothing lost."""
    mosquitto = mosquitto_factory(extra="max_queued_messages 0")
    client_id, topic = f"{unique}-blocked", f"{unique}/blocked"
    sent = [f"m{i:04d}-" + "x" * 300 for i in range(800)]  # ~280 KB of lines: far more than a pipe holds
    session = {"host": mosquitto.host, "port": mosquitto.port, "client_id": client_id, "clean_session": False}
    operation = {"action": "listen", "topic": topic, "qos": 1}
    with runtime.listen_in_background(session, operation, timeout=0.2) as bg:
        bg.wait_ready()
    assert all(r.ok for r in runtime.send({"host": mosquitto.host, "port": mosquitto.port},
                                          {"action": "send", "topic": topic, "qos": 1}, sent))
    read, write = os.pipe()
    fcntl.fcntl(read, F_SETPIPE_SZ, 4096)  # the smallest pipe: one page, full at once
    proc = subprocess.Popen([sys.executable, "-m", "connector", "listen", "--host", mosquitto.host, "--port",
                             str(mosquitto.port), "--persistent", "--client-id", client_id, "--topic", topic,
                             "--qos", "1"], stdout=write, stderr=subprocess.PIPE, env=environment(unbuffered))
    os.close(write)
    try:
        unread = struct.pack("i", 0)
        # Far more lines come than the pipe holds, and nothing reads it: the Listen's write blocks.
        wait_until(lambda: struct.unpack("i", fcntl.ioctl(read, termios.FIONREAD, unread))[0] > 0,
                   "the first line written", proc)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(WAIT)
        took = time.monotonic() - stopped
        err = proc.stderr.read().decode()  # type: ignore[union-attr]
        with open(read, "rb", closefd=False) as pipe:
            written = pipe.read()
    finally:
        stop_process(proc)
        os.close(read)
    assert code == 0, err
    assert took < 1.5, took
    first = []
    for line in written.split(b"\n"):
        try:
            first.append(json.loads(line)["payload"])
        except ValueError:  # the line a stopped write cut: not acknowledged
            pass
    with runtime.listen_in_background(session, operation, count=len(sent) - len(first), timeout=WAIT) as rest:
        pass
    # One line with the counts: what was handed over and what went out (the rest not acknowledged).
    match = re.fullmatch(r"stopped by SIGTERM: received ([\d,]+), wrote ([\d,]+)(, [\d,]+ not written \(not "
                         r"acknowledged: a persistent session gets them again\))?\n", err)
    assert match, err
    assert int(match[2].replace(",", "")) <= len(first) <= int(match[1].replace(",", "")), err
    lost = set(sent) - set(first) - {d.text for d in rest.documents}
    print(f"\nblocked reader: stopped {took:.2f} s after SIGTERM; {len(first)} written, "
          f"{len(rest.documents)} to the next Listen, lost {len(lost)}")
    assert not lost


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_listen_waiting_for_its_broker_stops_at_the_first_signal(sig: signal.Signals) -> None:
    """``--wait-for-broker`` retries sleep in the Listen's main thread: a signal ends the wait at once
    (as systemd's stop of a worker whose broker is down expects), exit 0, nothing received."""
    with socket.socket() as held:  # bound, never listening: every connection is refused, the port stays ours
        held.bind(("127.0.0.1", 0))
        proc = subprocess.Popen([sys.executable, "-m", "connector", "listen", "--port", str(held.getsockname()[1]),
                                 "--topic", "a", "--wait-for-broker", "600"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stderr is not None
            first = proc.stderr.readline().decode()  # the first refusal: the Listen is in its wait
            assert "trying again in" in first, first
            signalled = time.monotonic()
            proc.send_signal(sig)
            code = proc.wait(WAIT)
            took = time.monotonic() - signalled
            err = first + proc.stderr.read().decode()
        finally:
            stop_process(proc)
    assert code == 0, err
    assert err.endswith(f"stopped by {sig.name} while waiting for the broker: nothing received\n"), err
    assert took < 5, f"{took:.1f} s"  # the wait would have gone on for 600 s
    assert proc.stdout is not None and proc.stdout.read() == b""
