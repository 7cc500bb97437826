"""Progress on a terminal (counts, rate, ETA, redrawn in place on stderr, ending with the totals),
none into a pipe unless --progress, and the counts a Send or a Listen stopped by a signal reports."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from brokers import MosquittoBroker, stop_process
from faultproxy import FaultProxy
from connector.harness.runtime import Runtime
from connector.mqtt.broker import BrokerThread

WAIT = 30.0
CLEAR = b"\r\x1b[K"
#: The last redraw: the totals, then the line ends.
TOTALS = re.compile(rb"\r\x1b\[Ksent ([\d,]+)  confirmed ([\d,]+)  failed ([\d,]+)  in [\d.]+ s \([\d,]+/s\)\n")


def on_terminal(args: list[str], stdin: object = subprocess.DEVNULL) -> tuple[int, bytes, bytes]:
    """Run the command line with stderr a pseudo-terminal (stdout a pipe): exit code, stdout, terminal."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "connector", *args], stdin=stdin, stdout=subprocess.PIPE,
                                stderr=slave)
    finally:
        os.close(slave)
    terminal = b""
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the process ended, the terminal has no writer left
                break
            if not data:
                break
            terminal += data
        code = proc.wait(WAIT)
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.stdout.close()
    finally:
        stop_process(proc)
        os.close(master)
    return code, out, terminal.replace(b"\r\n", b"\n")  # the terminal's own line ends


def test_a_long_send_on_a_terminal_shows_its_progress_ending_with_the_totals(mosquitto: MosquittoBroker,
                                                                               unique: str, tmp_path: Path) -> None:
    """A 100,000-line Send through a network that stalls for 1.5 s in the middle of its publishing: long
    however fast the machine, it shows its progress (counts, rate, percent of the input read) and ends
    with the totals."""
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"".join(b"%d\n" % i for i in range(100_000)))
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        # The proxy itself stalls at this byte (about the 7,000th publish): the Send is connected and
        # counting by then, and it cannot end (its last packets and its close wait) before the resume.
        proxy.stall_after(200_000)

        def resume_later() -> None:
            deadline = time.monotonic() + WAIT
            while not proxy.stalled and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(1.5)
            proxy.resume()

        resumer = threading.Thread(target=resume_later, daemon=True)
        resumer.start()
        with open(lines, "rb") as stdin:
            code, out, err = on_terminal(["send", "--host", "127.0.0.1", "--port", str(proxy.port), "--topic",
                                          f"{unique}/progress", "--qos", "0", "--lines"], stdin)
        resumer.join(WAIT)
        assert proxy.bytes_up > 200_000, "the Send ended before the stall"
    assert code == 0, err
    assert out == b""
    redraws = re.findall(rb"\r\x1b\[Ksent ([\d,]+)  confirmed ([\d,]+)  failed 0  [\d,]+/s  (\d+)%", err)
    assert redraws, err[:300]
    percents = [int(p) for _, _, p in redraws]
    assert percents == sorted(percents) and percents[-1] <= 100, percents
    totals = TOTALS.search(err)
    assert totals and totals.groups() == (b"100,000", b"100,000", b"0"), err[-300:]
    # the totals end the progress; the summary follows on a line of its own
    assert err[totals.end():] == f"sent 100,000 of 100,000 documents to '{unique}/progress' (QoS 0)\n".encode()


def test_into_a_pipe_a_send_prints_only_its_summary(broker: BrokerThread, unique: str) -> None:
    """A Send long enough to show progress (a second), its stderr a pipe: the summary alone."""
    proc = subprocess.run([sys.executable, "-m", "connector", "send", "--host", broker.host, "--port", str(broker.port),
                           "--topic", f"{unique}/pipe", "--message", "m", "--repeat", "12", "--interval", "0.08"],
                          capture_output=True, timeout=WAIT)
    assert (proc.returncode, proc.stderr) == (0, f"sent 12 of 12 documents to '{unique}/pipe' (QoS 0)\n".encode())


def test_progress_forces_it_into_a_pipe_and_no_progress_keeps_it_off_a_terminal(broker: BrokerThread,
                                                                                 unique: str) -> None:
    send = ["send", "--host", broker.host, "--port", str(broker.port), "--topic", f"{unique}/forced", "--qos", "1",
            "--message", "m", "--repeat", "5", "--interval", "0.1"]
    forced = subprocess.run([sys.executable, "-m", "connector", *send, "--progress"], capture_output=True,
                            timeout=WAIT)
    assert forced.returncode == 0, forced.stderr
    assert re.search(rb"\r\x1b\[Ksent \d  confirmed \d  failed 0  [\d,]+/s  \d+%  ETA 0:0\d", forced.stderr)
    totals = TOTALS.search(forced.stderr)
    assert totals and totals.groups() == (b"5", b"5", b"0")
    assert forced.stderr[totals.end():] == f"sent 5 of 5 documents to '{unique}/forced' (QoS 1)\n".encode()
    code, _, err = on_terminal([*send, "--no-progress"])
    assert (code, err) == (0, f"sent 5 of 5 documents to '{unique}/forced' (QoS 1)\n".encode())


def test_a_failure_line_is_never_mixed_into_the_progress_line(broker: BrokerThread, unique: str, tmp_path: Path) -> None:
    """The progress line is cleared before a failure's line, and drawn again after it."""
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"00\nzz\n01\n02\n")
    with open(lines, "rb") as stdin:
        code, _, err = on_terminal(["send", "--host", broker.host, "--port", str(broker.port), "--topic",
                                    f"{unique}/garble", "--payload-encoding", "hex", "--lines", "--progress",
                                    "--interval", "0.25"], stdin)
    assert code == 1, err
    failure = b"error: document 2 (line 2): APPLICATION_ERROR: line 2 is not valid hex"
    assert CLEAR + failure in err, err  # at the start of a cleared line
    after = err[err.index(failure):]
    assert after.index(b"\n") < after.index(CLEAR + b"sent"), err  # the whole line, then the progress again
    totals = TOTALS.search(err)
    assert totals and totals.groups() == (b"4", b"3", b"1"), err


def test_a_listen_shows_its_count_and_rate(broker: BrokerThread, runtime: Runtime, unique: str) -> None:
    topic = f"{unique}/listen"
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "connector", "listen", "--host", broker.host, "--port",
                                 str(broker.port), "--topic", topic, "--count", "5", "--qos", "1"],
                                stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    terminal = b""
    try:
        while b"listening on" not in terminal:
            terminal += os.read(master, 4096)
        for i in range(5):
            assert list(runtime.send({"host": broker.host, "port": broker.port},
                                     {"action": "send", "topic": topic, "qos": 1}, [str(i)]))[0].ok
            time.sleep(0.15)  # a Listen of a second: its progress shows
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            terminal += data
        assert proc.wait(WAIT) == 0
        assert proc.stdout is not None
        assert proc.stdout.read().count(b"\n") == 5
        proc.stdout.close()
    finally:
        stop_process(proc)
        os.close(master)
    assert re.search(rb"\r\x1b\[Kreceived [1-4]  [\d,]+/s", terminal), terminal
    assert re.search(rb"\r\x1b\[Kreceived 5  in [\d.]+ s \([\d,]+/s\)\r\nreceived 5 documents \(count reached\)\r\n$",
                     terminal), terminal


def test_a_send_stopped_by_sigint_reports_what_it_did_not_send(broker: BrokerThread, runtime: Runtime,
                                                               unique: str) -> None:
    topic = f"{unique}/sigint"
    address = {"host": broker.host, "port": broker.port}
    with runtime.listen_in_background(address, {"action": "listen", "topic": topic, "qos": 1}, count=2,
                                      timeout=WAIT) as seen:
        seen.wait_ready()
        proc = subprocess.Popen([sys.executable, "-m", "connector", "send", "--host", broker.host, "--port",
                                 str(broker.port), "--topic", topic, "--qos", "1", "--message", "m", "--repeat", "100",
                                 "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + WAIT
            while len(seen.collected) < 2:  # sending: its signal handlers are in place
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(WAIT)
            assert proc.stderr is not None
            err = proc.stderr.read().decode()
        finally:
            stop_process(proc)
    assert code == 130, err
    match = re.fullmatch(rf"sent (\d+) of \1 documents to '{topic}' \(QoS 1\); stopped by SIGINT after document \1 "
                         r"\(the 1st --message, round \1\): \1 sent, \1 confirmed, 0 failed, (\d+) not sent\n", err)
    assert match, err
    assert 2 <= int(match[1]) < 100 and int(match[1]) + int(match[2]) == 100


def test_a_listen_stopped_by_sigint_reports_received_and_written(broker: BrokerThread, runtime: Runtime,
                                                                 unique: str) -> None:
    topic = f"{unique}/listen-sigint"
    proc = subprocess.Popen([sys.executable, "-m", "connector", "listen", "--host", broker.host, "--port",
                             str(broker.port), "--topic", topic, "--qos", "1", "--verbose"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        while b"listening on" not in proc.stderr.readline():  # --verbose: it says when it listens
            assert proc.poll() is None
        assert all(r.ok for r in runtime.send({"host": broker.host, "port": broker.port},
                                              {"action": "send", "topic": topic, "qos": 1}, ["a", "b"]))
        proc.stdout.readline(), proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(WAIT)
        err = proc.stderr.read().decode()
    finally:
        stop_process(proc)
    assert code == 0, err
    assert err.endswith("stopped by SIGINT: received 2, wrote 2\n"), err
