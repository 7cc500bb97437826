"""A Listen's output: every byte of a line reaches the output before its message is acknowledged,
in UTF-8, whatever PYTHONUNBUFFERED, PYTHONIOENCODING or the locale say; a full disk, short
writes and a reader that goes away lose nothing. Counted by sequence number over a persistent
QoS 1 session on our own Mosquitto, which redelivers whatever was not acknowledged."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokers import MosquittoBroker, stop_process
from connector.harness.runtime import Runtime
from connector.harness.sinks import JsonLinesSink
from connector.sdk.documents import Status

WAIT = 20.0


# -- helpers ---------------------------------------------------------------------------------------

def numbered(n: int) -> list[str]:
    return [f"m{i:04d}" for i in range(1, n + 1)]


def session(mosquitto: MosquittoBroker, client_id: str) -> dict:
    return {"host": mosquitto.host, "port": mosquitto.port, "client_id": client_id, "clean_session": False}


def backlog(runtime: Runtime, mosquitto: MosquittoBroker, client_id: str, topic: str, payloads: list[str]) -> None:
    """Create the persistent session, leave, and publish ``payloads`` (QoS 1) while it is away."""
    with runtime.listen_in_background(session(mosquitto, client_id), {"action": "listen", "topic": topic, "qos": 1},
                                      timeout=0.2) as bg:
        bg.wait_ready()
    publish(runtime, mosquitto, topic, payloads)


def publish(runtime: Runtime, mosquitto: MosquittoBroker, topic: str, payloads: list[str], **operation: object) -> None:
    results = list(runtime.send({"host": mosquitto.host, "port": mosquitto.port},
                                {"action": "send", "topic": topic, "qos": 1, **operation}, payloads))
    assert all(r.status is Status.SUCCESS for r in results), results


def payloads(*texts: bytes) -> list[str]:
    """The payload of every whole JSON line (a line cut by a failed write is not one)."""
    found = []
    for text in texts:
        for line in text.split(b"\n"):
            try:
                found.append(json.loads(line)["payload"])
            except ValueError:
                pass
    return found


def cli(*args: str, env: dict[str, str], **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "connector", *args], env=env, **popen)  # type: ignore[call-overload]


def listen_args(mosquitto: MosquittoBroker, client_id: str, topic: str) -> list[str]:
    return ["listen", "--host", mosquitto.host, "--port", str(mosquitto.port), "--persistent", "--client-id",
            client_id, "--topic", topic, "--qos", "1"]


def environment(unbuffered: bool, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def finished(proc: subprocess.Popen) -> tuple[int, str]:
    """A Listen that ends by itself: its exit code and stderr (stopped by its pid if it does not)."""
    try:
        code = proc.wait(WAIT)
        return code, proc.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        stop_process(proc)


def drain(mosquitto: MosquittoBroker, client_id: str, topic: str, sent: list[str], have: list[str],
          folder: Path, env: dict[str, str]) -> list[str]:
    """A second Listen on the same session, until every number of ``sent`` was seen (or WAIT)."""
    out = folder / "rest.jsonl"
    with open(out, "wb") as f:
        proc = cli(*listen_args(mosquitto, client_id, topic), env=env, stdout=f, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        while set(sent) - set(have + payloads(out.read_bytes())) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        stop_process(proc)
    return payloads(out.read_bytes())


# -- a real full disk ------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs of this test's own (needs root and a kernel that lets it mount: else skipped)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True, capture_output=True)


@pytest.mark.parametrize("unbuffered", [True, False], ids=["PYTHONUNBUFFERED=1", "buffered"])
def test_a_full_disk_loses_nothing(runtime: Runtime, mosquitto: MosquittoBroker, small_disk: Path, tmp_path: Path,
                                   unique: str, unbuffered: bool) -> None:
    """A persistent QoS 1 Listen writing to a 16 KiB disk stops when it is full (exit 1, one line);
    the same session then drained elsewhere has every number: nothing acknowledged was unwritten."""
    client_id, topic, sent = f"{unique}-disk", f"{unique}/disk", numbered(400)  # ~50 KB of lines
    backlog(runtime, mosquitto, client_id, topic, sent)
    env = environment(unbuffered)
    with open(small_disk / "out.jsonl", "wb") as out:
        code, err = finished(cli(*listen_args(mosquitto, client_id, topic), env=env, stdout=out,
                                 stderr=subprocess.PIPE))
    first = payloads((small_disk / "out.jsonl").read_bytes())
    assert 0 < len(first) < len(sent)
    rest = drain(mosquitto, client_id, topic, sent, first, tmp_path, env)
    lost = set(sent) - set(first + rest)
    print(f"\nfull disk ({'PYTHONUNBUFFERED=1' if unbuffered else 'buffered'}): {len(first)} written before it was "
          f"full, {len(rest)} by the second Listen, lost {len(lost)}")
    assert not lost, sorted(lost)
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot write the output (No space left on device)"), err


# -- short writes, in this process ------------------------------------------------------------------

class ShortFile(io.RawIOBase):
    """A raw file that takes at most a few bytes per write, as a nearly full disk or a signal makes it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return os.write(self.fd, bytes(data))  # os.write is the short one (below)


@pytest.mark.parametrize("unbuffered", [True, False], ids=["PYTHONUNBUFFERED=1", "buffered"])
@pytest.mark.parametrize("budget", [None, 6_000], ids=["short-writes", "short-writes-then-full"])
def test_short_writes_lose_nothing(runtime: Runtime, mosquitto: MosquittoBroker, unique: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, unbuffered: bool, budget: int | None) -> None:
    """Every write to the output takes at most 7 bytes (and, with a budget, fails with ENOSPC once it
    is spent): the Listen writes each line whole before acknowledging it, and no number is lost."""
    client_id, topic, sent = f"{unique}-short", f"{unique}/short", numbered(200)
    backlog(runtime, mosquitto, client_id, topic, sent)
    path = tmp_path / "out.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    real_write, taken = os.write, [0]

    def short_write(target: int, data: bytes) -> int:
        if target != fd:
            return real_write(target, data)
        if budget is not None and taken[0] >= budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(target, bytes(memoryview(data)[:min(7, budget - taken[0] if budget else 7)]))
        taken[0] += n
        return n

    monkeypatch.setattr(os, "write", short_write)
    raw = ShortFile(fd)
    # sys.stdout as Python builds it with PYTHONUNBUFFERED=1 (text straight to the raw file), and without
    stream = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding="utf-8", write_through=unbuffered)
    try:
        outcome = runtime.listen(session(mosquitto, client_id), {"action": "listen", "topic": topic, "qos": 1},
                                 JsonLinesSink(stream), count=len(sent), timeout=WAIT)
    finally:
        monkeypatch.undo()
        os.close(fd)
    first = payloads(path.read_bytes())
    assert outcome.accepted == len(first)  # acknowledged: exactly the lines written whole
    if budget is None:
        assert (outcome.reason, first) == ("count", sent)
        return
    assert outcome.reason == "output" and "No space left" in (outcome.error or "")
    rest = rest_of(runtime, mosquitto, client_id, topic, len(sent) - len(first))
    assert not set(sent) - set(first + rest), sorted(set(sent) - set(first + rest))


def rest_of(runtime: Runtime, mosquitto: MosquittoBroker, client_id: str, topic: str, count: int) -> list[str]:
    with runtime.listen_in_background(session(mosquitto, client_id), {"action": "listen", "topic": topic, "qos": 1},
                                      count=count, timeout=WAIT) as bg:
        pass
    return [d.text for d in bg.documents]


# -- a reader that goes away ------------------------------------------------------------------------

def test_a_closed_reader_ends_the_listen_quietly_and_acknowledges_nothing_unwritten(
        runtime: Runtime, mosquitto: MosquittoBroker, unique: str, tmp_path: Path) -> None:
    """``listen | head -1``: head takes the first line and goes; the Listen ends at once by itself,
    exit 141 (128 + SIGPIPE), nothing on stderr; what comes next is not acknowledged, so the next
    Listen on the session gets it."""
    client_id, topic = f"{unique}-head", f"{unique}/head"
    backlog(runtime, mosquitto, client_id, topic, ["m0001"])
    env = environment(True)
    listen = cli(*listen_args(mosquitto, client_id, topic), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=listen.stdout, stdout=subprocess.PIPE)
    listen.stdout.close()  # type: ignore[union-attr]  # head holds the only read end
    try:
        line, _ = head.communicate(timeout=WAIT)
        assert payloads(line) == ["m0001"]
        gone = time.monotonic()
        publish(runtime, mosquitto, topic, numbered(5)[1:])  # while the Listen is ending, or after
        code = listen.wait(WAIT)
        ended = time.monotonic() - gone
        err = listen.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        stop_process(listen)
    assert (code, err) == (141, "")
    assert ended < 2.0, ended
    with runtime.listen_in_background(session(mosquitto, client_id), {"action": "listen", "topic": topic, "qos": 1},
                                      count=4, timeout=WAIT) as bg:
        pass
    assert [d.text for d in bg.documents] == numbered(5)[1:]


def into_a_closed_pipe(argv: list[str]) -> tuple[int, str]:
    """Run the command line with standard output a pipe whose reader is gone: (exit code, stderr)."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "connector", *argv], stdout=write, stderr=subprocess.PIPE,
                              timeout=WAIT)
    finally:
        os.close(write)
    return proc.returncode, proc.stderr.decode()


def test_a_closed_reader_of_describe_is_quiet() -> None:
    """The rest of the class: any command whose stdout reader goes away ends quietly with 141."""
    assert into_a_closed_pipe(["describe", "--json"]) == (141, "")


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED=1"])
@pytest.mark.parametrize("argv", [["describe"], ["describe", "--json"], ["connectors", "--json"]], ids=" ".join)
def test_a_full_disk_under_a_commands_answer_is_one_line(argv: list[str], unbuffered: bool) -> None:
    """describe > /dev/full: exit 1 and one line that says so, not a traceback or an OSError's repr."""
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "connector", *argv], stdout=full, stderr=subprocess.PIPE,
                              timeout=WAIT, env=environment(unbuffered))
    assert (proc.returncode, proc.stderr.decode()) == (1, "error: cannot write the output (No space left on device)\n")


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED=1"])
@pytest.mark.parametrize("command", ["bench", "clear-retained", "demo"])
def test_a_full_disk_under_a_connector_commands_answer_is_one_line(command: str, unbuffered: bool,
                                                                   mosquitto: MosquittoBroker, unique: str) -> None:
    """The connector's own commands print through the runtime's output too: > /dev/full is exit 1 and one
    line. clear-retained has cleared the message it could not list."""
    address = ["--host", mosquitto.host, "--port", str(mosquitto.port)]
    argv = {"bench": ["bench", *address, "--count", "20"], "demo": ["demo"],
            "clear-retained": ["clear-retained", *address, "--topic", f"{unique}/#"]}[command]
    if command == "clear-retained":
        publish = subprocess.run([sys.executable, "-m", "connector", "send", *address, "--topic", f"{unique}/kept",
                                  "--retained", "--qos", "1", "--message", "kept"], capture_output=True, timeout=WAIT)
        assert publish.returncode == 0, publish.stderr
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "connector", *argv], stdout=full, stderr=subprocess.PIPE,
                              timeout=WAIT, env=environment(unbuffered))
    assert (proc.returncode, proc.stderr.decode()) == (1, "error: cannot write the output (No space left on device)\n")
    if command == "clear-retained":
        listed = subprocess.run([sys.executable, "-m", "connector", "clear-retained", *address, "--topic", f"{unique}/#"],
                                capture_output=True, timeout=WAIT)
        assert (listed.returncode, listed.stdout, listed.stderr) == (0, b"", f"cleared 0 retained messages under "
                                                                           f"'{unique}/#'\n".encode())


def test_a_closed_reader_of_a_connector_command_is_quiet(mosquitto: MosquittoBroker) -> None:
    assert into_a_closed_pipe(["bench", "--host", mosquitto.host, "--port", str(mosquitto.port), "--count", "20"]) \
        == (141, "")


@pytest.mark.parametrize("output, error", [("/dev/full", "/dev/full (No space left on device)"),
                                           ("-", "the output (No space left on device)"),
                                           ("{tmp}/missing/reference.md", "{tmp}/missing/reference.md (No such file or directory)"),
                                           ("{tmp}", "{tmp} (Is a directory)")],
                         ids=["-o /dev/full", "> /dev/full", "-o in a missing folder", "-o a folder"])
def test_the_reference_generator_says_in_one_line_what_it_cannot_write(output: str, error: str, tmp_path: Path) -> None:
    output, error = output.format(tmp=tmp_path), error.format(tmp=tmp_path)
    argv = [sys.executable, "-m", "connector.harness.reference", "--default-connector", "mqtt"]
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(argv if output == "-" else [*argv, "-o", output], stdout=full, stderr=subprocess.PIPE,
                              timeout=WAIT)
    assert (proc.returncode, proc.stderr.decode()) == (1, f"error: cannot write {error}\n")


def test_the_reference_generator_names_a_missing_default_connector_in_one_line() -> None:
    """Two connectors installed (this project's), none named the default: exit 2 and what to do."""
    proc = subprocess.run([sys.executable, "-m", "connector.harness.reference"], capture_output=True, timeout=WAIT)
    assert (proc.returncode, proc.stdout) == (2, b"")
    assert proc.stderr.decode() == ("error: several connectors are installed (disk, mqtt): name the command line's own "
                                   "with --default-connector ID\n")


# -- UTF-8 always ------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C"},
                                     {"PYTHONIOENCODING": "ascii", "LC_ALL": "C"}],
                         ids=["PYTHONIOENCODING=ascii", "LC_ALL=C", "both"])
def test_the_output_is_utf8_whatever_the_locale(runtime: Runtime, mosquitto: MosquittoBroker, unique: str,
                                                setting: dict[str, str]) -> None:
    """"café" and an emoji on a topic with an accent: the exact UTF-8 bytes on stdout."""
    topic = f"{unique}/café"
    publish(runtime, mosquitto, topic, ["café"], retained=True)
    publish(runtime, mosquitto, f"{topic}/2", ["🎉 ok"], retained=True)
    proc = subprocess.run([sys.executable, "-m", "connector", "listen", "--host", mosquitto.host, "--port",
                           str(mosquitto.port), "--topic", f"{topic}/#", "--count", "2"],
                          capture_output=True, timeout=WAIT, env=environment(True, **setting))
    assert (proc.returncode, proc.stderr) == (0, b"")
    lines = sorted(proc.stdout.splitlines())
    assert lines[0].startswith('{"payload": "café", "encoding": "utf-8", "properties": {"topic": "'.encode()
                               + topic.encode("utf-8") + b'"')
    assert lines[1].startswith('{"payload": "🎉 ok", "encoding": "utf-8"'.encode("utf-8"))
    assert b"\\u" not in proc.stdout


def test_the_send_report_is_utf8_whatever_the_locale(mosquitto: MosquittoBroker, unique: str) -> None:
    """The rest of the class: the summary a Send writes on stderr names the topic in UTF-8 too."""
    topic = f"{unique}/café"
    proc = subprocess.run([sys.executable, "-m", "connector", "send", "--host", mosquitto.host, "--port",
                           str(mosquitto.port), "--topic", topic, "--qos", "1", "--message", "🎉"],
                          capture_output=True, timeout=WAIT, env=environment(True, PYTHONIOENCODING="ascii"))
    assert (proc.returncode, proc.stderr) == (0, f"sent 1 of 1 document to '{topic}' (QoS 1)\n".encode("utf-8"))
    proc = subprocess.run([sys.executable, "-m", "connector", "send", "--topic", "a", "--file", "café.txt"],
                          capture_output=True, timeout=WAIT, env=environment(True, PYTHONIOENCODING="ascii"))
    assert proc.returncode == 2 and "'café.txt'".encode("utf-8") in proc.stderr, proc.stderr  # errors too


def test_a_results_file_on_a_full_disk_keeps_the_summary(mosquitto: MosquittoBroker, small_disk: Path,
                                                         unique: str) -> None:
    """``--results`` fills the disk part way: every document is still reported in the summary, with
    one line saying the results file could not be written, and exit 1 (not "unexpected failure")."""
    results = small_disk / "results.jsonl"
    lines = "".join(f"d{i}\n" for i in range(3000)).encode()  # ~100 KB of result lines
    proc = subprocess.run([sys.executable, "-m", "connector", "send", "--host", mosquitto.host, "--port",
                           str(mosquitto.port), "--topic", f"{unique}/results", "--lines", "--results", str(results)],
                          input=lines, capture_output=True, timeout=WAIT, env=environment(True))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.decode().splitlines() == [
        f"sent 3,000 of 3,000 documents to '{unique}/results' (QoS 0)",
        f"error: cannot write the results file {str(results)!r}: No space left on device; the summary above "
        "counts every document"]
