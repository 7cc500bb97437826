"""Progress on a terminal: a Send's documents sent, confirmed and failed, its rate and, when the
size of its input is known, an ETA; a Listen's count and rate.

One line on stderr (never stdout), redrawn in place (``\\r`` and a cleared line) by a thread of
its own at most :data:`REDRAW_SECONDS` apart, shown once the work has run :data:`DELAY_SECONDS`
(a short command shows none); it ends with the totals. Off when stderr is not a terminal unless
``--progress``; ``--no-progress`` turns it off. While it shows, ``sys.stderr`` and the logging
handlers write through :class:`_ClearingStderr`, which clears the line first (it is redrawn at
the next tick), so failures and warnings are never garbled.

An own renderer rather than rich or tqdm: one line of counts needs no layout engine, and
importing ``rich.progress`` alone takes about 0.4 s, four times the budget of ``--help``.
Only the standard library is imported here (the parser imports :func:`add_progress_flag`).
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

REDRAW_SECONDS = 0.1
DELAY_SECONDS = 0.5
#: The rate shown is over about this many recent seconds (the final line: over the whole run).
RATE_WINDOW = 2.0
CLEAR = "\r\x1b[K"


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show counts, rate and ETA on stderr, redrawn in place (default: when stderr is a terminal)")


def wanted(choice: bool | None) -> bool:
    """``--progress`` / ``--no-progress``, else whether stderr is a terminal."""
    if choice is not None:
        return choice
    try:
        return os.isatty(2)
    except OSError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue
        except OSError:  # stderr gone or full: progress is not worth failing for
            return


class _ClearingStderr(io.TextIOBase):
    """``sys.stderr`` while a progress line shows: each write clears the line first."""

    def __init__(self, progress: Progress, real: Any) -> None:
        self.progress, self.real = progress, real

    def write(self, text: str) -> int:
        with self.progress.lock:
            self.progress.clear()
            _write_all(self.progress.fd, text.encode("utf-8", "backslashreplace"))
        return len(text)

    def isatty(self) -> bool:
        return self.real.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class Progress:
    """The line ``describe(elapsed, final)`` gives, redrawn on ``fd`` (see the module's docstring)."""

    def __init__(self, describe: Callable[[float, bool], str], delay: float = DELAY_SECONDS, fd: int = 2) -> None:
        self.describe, self.delay, self.fd = describe, delay, fd
        self.lock = threading.Lock()
        self.shown = False  # the line is on the screen now
        self.ever_shown = False
        self.started = time.monotonic()
        self._done = threading.Event()
        self._stderr: Any = None
        self._handlers: list[Any] = []  # logging's handlers writing to stderr
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> Progress:
        import logging  # not at import time: the parser imports this module for --help

        real, wrapper = sys.stderr, _ClearingStderr(self, sys.stderr)
        self._stderr, sys.stderr = real, wrapper
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is real:
                handler.setStream(wrapper)  # type: ignore[arg-type]
                self._handlers.append(handler)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._done.wait(REDRAW_SECONDS):
            elapsed = time.monotonic() - self.started
            if elapsed >= self.delay:
                self.draw(self.describe(elapsed, False))

    def draw(self, line: str, end: str = "") -> None:
        try:  # a line longer than the terminal would wrap, and \r would redraw only its last part
            width = os.get_terminal_size(self.fd).columns - 1 or None
        except OSError:
            width = None
        if width is not None and width < 1:  # a terminal that does not say its size
            width = None
        with self.lock:
            _write_all(self.fd, (CLEAR + line[:width] + end).encode("utf-8", "backslashreplace"))
            self.shown = self.ever_shown = True

    def clear(self) -> None:
        """Take the line off the screen (the caller holds the lock)."""
        if self.shown:
            _write_all(self.fd, CLEAR.encode())
            self.shown = False

    def finish(self) -> None:
        """Stop redrawing; a line that was shown ends with the totals. Idempotent."""
        if self._done.is_set():
            return
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        sys.stderr = self._stderr
        for handler in self._handlers:
            handler.setStream(self._stderr)
        if self.ever_shown:
            self.draw(self.describe(time.monotonic() - self.started, True), "\n")
        self.shown = False


class Rate:
    """Documents per second over the last :data:`RATE_WINDOW` seconds."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()

    def __call__(self, count: int) -> float:
        now = time.monotonic()
        samples = self.samples
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        then, before = samples[0]
        return (count - before) / (now - then) if now > then else 0.0


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _totals(elapsed: float, count: int) -> str:
    return f"in {elapsed:.1f} s ({count / elapsed if elapsed > 0 else 0:,.0f}/s)"


# -- a Send ----------------------------------------------------------------------------------

class InputSize:
    """How much of a Send's input is done, when its size is known: the bytes of each document
    to come (``--message``, ``--file`` of regular files, times ``--repeat``), or a regular file
    on standard input read by ``--lines`` (how far it was read)."""

    def __init__(self, sizes: Sequence[int] | None = None, stdin_size: int | None = None) -> None:
        self.cumulative: list[int] = []
        total = 0
        for size in sizes or ():
            total += size + 1  # an empty document is work too
            self.cumulative.append(total)
        self.stdin_size = stdin_size

    @property
    def documents(self) -> int | None:
        return len(self.cumulative) if self.cumulative else None

    def fraction(self, settled: int, stop: Any) -> float | None:
        """The part done once ``settled`` documents have their result (``stop``: the GracefulStop
        counting what was read)."""
        if self.cumulative:
            return self.cumulative[min(settled, len(self.cumulative)) - 1] / self.cumulative[-1] if settled else 0.0
        if self.stdin_size and stop.read:
            # the documents' share of the input read so far (a newline each), times the
            # share of those read that are settled
            return min(1.0, (stop.bytes_read + stop.read) / self.stdin_size) * settled / stop.read
        return 0.0 if self.stdin_size else None


def input_size(files: Sequence[str] | None, lines: bool, messages: Sequence[str] | None = None,
               repeat: int | None = None) -> InputSize:
    """The :class:`InputSize` of a Send's arguments (unknown: standard input that is not a regular file)."""
    try:
        if files:
            if "-" in files:
                return InputSize()
            sizes = [os.stat(path).st_size for path in files]
            if not all(stat.S_ISREG(os.stat(path).st_mode) for path in files):
                return InputSize()
            return InputSize(sizes * (repeat or 1))
        if lines:
            info = os.fstat(0)
            return InputSize(stdin_size=info.st_size if stat.S_ISREG(info.st_mode) else None)
    except OSError:
        return InputSize()
    return InputSize([len(m.encode("utf-8", "surrogateescape")) for m in messages or ()] * (repeat or 1))


class SendCounts:
    """What a Send's progress line shows, counted as the results come."""

    def __init__(self, stop: Any, size: InputSize) -> None:
        self.stop, self.size = stop, size  # stop: the GracefulStop counting documents read
        self.confirmed = self.failed = 0
        self.rate = Rate()

    def line(self, elapsed: float, final: bool) -> str:
        settled = self.confirmed + self.failed
        text = f"sent {self.stop.read:,}  confirmed {self.confirmed:,}  failed {self.failed:,}"
        if final:
            return f"{text}  {_totals(elapsed, settled)}"
        text += f"  {self.rate(settled):,.0f}/s"
        fraction = self.size.fraction(settled, self.stop)
        if fraction is not None:
            text += f"  {fraction:.0%}"
            if 0 < fraction < 1:
                text += f"  ETA {_duration(elapsed * (1 - fraction) / fraction)}"
        return text


def send_progress(choice: bool | None, stop: Any, results: Iterator[Any], size: InputSize) -> Iterator[Any]:
    """``results``, counted on a progress line when it is wanted (see :func:`wanted`)."""
    if not wanted(choice):
        return results
    return _counted(results, SendCounts(stop, size), 0.0 if choice else DELAY_SECONDS)


def _counted(results: Iterator[Any], counts: SendCounts, delay: float) -> Iterator[Any]:
    from connector.sdk.documents import Status

    success = Status.SUCCESS
    progress = Progress(counts.line, delay).start()
    try:
        for result in results:
            if result.status is success:
                counts.confirmed += 1
            else:
                counts.failed += 1
            yield result
    finally:
        progress.finish()


# -- a Listen --------------------------------------------------------------------------------

def listen_progress(choice: bool | None, listener: Any) -> Progress | None:
    """A started progress line of ``listener``'s documents (a ProcessListener), or None when not
    wanted; the caller finishes it when the Listen ends."""
    if not wanted(choice):
        return None
    rate = Rate()

    def line(elapsed: float, final: bool) -> str:
        count = listener.accepted
        if final:
            return f"received {count:,}  {_totals(elapsed, count)}"
        return f"received {count:,}  {rate(count):,.0f}/s"

    return Progress(line, 0.0 if choice else DELAY_SECONDS).start()
