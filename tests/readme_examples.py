"""The ``console`` examples of README.md and docs/*.md, read as a reader reads them, and run as a reader
runs them: in a shell, in a working folder of their own, ``mqtt-connector`` being ``python -m connector``.

An example is a line starting with ``$ `` (continued on the next lines while it ends with ``\\``); the
lines after it, up to the next ``$ `` or the end of the block, are what the terminal shows (stdout and
stderr: the summary of a Send and every ``error:`` line are on stderr).
"""

from __future__ import annotations

import functools
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from brokers import stop_process

#: What a terminal shows that legitimately differs from run to run, and the pattern that stands for it.
#: Only the client ID that `check` prints when none was given: it is "mqtt-connector-" and 12 random hex
#: digits, new for every connection (connector/mqtt/connection.py), so no two runs show the same one.
#: What differs from run to run: a generated client ID, the time a Listen received a message.
VARYING_PATTERN = r"(?:'mqtt-connector-[0-9a-f]{12}'|\"received_at\": \"[0-9T:.+-]{32}\")"
VARYING = re.compile(VARYING_PATTERN)

_CONNECTS = re.compile(r"\bmqtt-connector (send|listen|check|clear-retained)\b")
_PROGRAM = re.compile(r"(^|\|\s*)mqtt-connector\b(?!-)")


@dataclass(frozen=True)
class Example:
    document: str  # README.md, docs/sdk.md, ...
    section: str  # the heading the example is under
    line: int  # where its `$ ` line is
    command: str  # as shown, continuation lines joined (each `\` + newline kept, as a shell reads it)
    shown: tuple[str, ...]  # the lines the document shows after it (trailing blank lines dropped)

    def __str__(self) -> str:
        return f"{self.document}:{self.line}: $ {self.command}"


def read_examples(path: Path, root: Path) -> list[Example]:
    """Every `$ ` example of the ```console blocks of one Markdown file, in order."""
    examples: list[Example] = []
    section = ""
    in_console = in_other = False
    command: list[str] | None = None
    start, shown = 0, []
    document = path.relative_to(root).as_posix()

    def finish() -> None:
        nonlocal command
        if command is not None:
            while shown and not shown[-1].strip():
                shown.pop()
            examples.append(Example(document, section, start, "\n".join(command), tuple(shown)))
        command = None

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            if in_console:
                finish()
                in_console = False
            elif in_other:
                in_other = False
            else:
                in_console, in_other = line.strip() == "```console", line.strip() != "```console"
            continue
        if not in_console:
            if not in_other and line.startswith("#"):
                section = line.lstrip("#").strip()
            continue
        if command is not None and command[-1].endswith("\\") and shown == []:
            command.append(line)
        elif line.startswith("$ "):
            finish()
            command, start, shown = [line[2:]], number, []
        elif command is not None:
            shown.append(line)
    return examples


def shell_command(command: str, ports: dict[str, str], port: int | None) -> str:
    """The example as this machine runs it: each port the document names replaced by the one the test
    gave it, ``--port N`` added to every command that connects and names none, ``python -m connector``
    in place of ``mqtt-connector``."""
    for shown, actual in ports.items():
        command = re.sub(rf"\b{shown}\b", actual, command)
    if port is not None and "--port" not in command:
        command = _CONNECTS.sub(lambda m: f"{m.group(0)} --port {port}", command)
    program = f"{shlex.quote(sys.executable)} -m connector"
    return _PROGRAM.sub(lambda m: m.group(1) + program, command)


def with_ports(lines: tuple[str, ...], ports: dict[str, str]) -> tuple[str, ...]:
    out = []
    for line in lines:
        for shown, actual in ports.items():
            line = re.sub(rf"\b{shown}\b", actual, line)
        out.append(line)
    return tuple(out)


def _line_matches(shown: str, actual: str) -> bool:
    pieces = VARYING.split(shown)
    return re.fullmatch(VARYING_PATTERN.join(re.escape(p) for p in pieces), actual) is not None


def interleaves(shown: tuple[str, ...], streams: list[list[str]]) -> bool:
    """Whether the shown lines are exactly the streams' lines merged, each stream's in its own order:
    what a terminal shows of stdout and stderr (and of a process started with `&`), which are written
    independently, so that only the order within each stream is defined."""

    @functools.cache
    def fits(i: int, positions: tuple[int, ...]) -> bool:
        if i == len(shown):
            return all(p == len(s) for p, s in zip(positions, streams))
        for k, stream in enumerate(streams):
            p = positions[k]
            if p < len(stream) and _line_matches(shown[i], stream[p]):
                if fits(i + 1, positions[:k] + (p + 1,) + positions[k + 1:]):
                    return True
        return False

    return fits(0, (0,) * len(streams))


def environment() -> dict[str, str]:
    """The user's environment without the connector's secrets (a password set on this machine would
    change what a command does)."""
    return {k: v for k, v in os.environ.items() if k not in ("MQTT_PASSWORD", "MQTT_KEY_PASSWORD")}


def run_shell(command: str, cwd: Path, stdin: bytes | None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, input=stdin if stdin is not None else b"",
                          capture_output=True, timeout=timeout, env=environment())


class Started:
    """A command that runs until stopped (or until it had what it waits for), started in the background:
    stdout a pipe, stderr a terminal (so that a Listen says "listening on ...", as it does to a user)."""

    def __init__(self, command: str, cwd: Path) -> None:
        self._master, slave = pty.openpty()
        try:
            # `exec`: the pid is the command's own, so that a signal reaches it as Ctrl-C would.
            self.proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=slave, env=environment())
        finally:
            os.close(slave)
        self.stdout = b""
        self.terminal = b""

    def wait_for(self, sign: re.Pattern[bytes], seconds: float = 20) -> bool:
        """Reads stdout and the terminal until ``sign`` shows in either (True), the command ends or
        ``seconds`` pass (False)."""
        deadline = time.monotonic() + seconds
        assert self.proc.stdout is not None
        streams = {self.proc.stdout.fileno(): "stdout", self._master: "terminal"}
        while streams and time.monotonic() < deadline:
            if sign.search(self.stdout) or sign.search(self.terminal):
                return True
            ready, _, _ = select.select(list(streams), [], [], 0.2)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # the terminal of a process that ended
                    data = b""
                if not data:
                    del streams[fd]
                    continue
                setattr(self, streams[fd], getattr(self, streams[fd]) + data)
        return bool(sign.search(self.stdout) or sign.search(self.terminal))

    def stop(self) -> int:
        """Ctrl-C (SIGINT to its own pid); the rest of its stdout; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def finish(self, seconds: float = 20) -> int:
        if self._master < 0:  # finished already
            return self.proc.returncode
        try:
            rest, _ = self.proc.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            rest, _ = self.proc.communicate()
        self.stdout += rest or b""
        os.close(self._master)
        self._master = -1
        return self.proc.returncode
