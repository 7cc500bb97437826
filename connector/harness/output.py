"""Writing what a user relies on (a Listen's JSON lines, a Send's report): every byte, or an
error that says how many bytes went out.

``sys.stdout`` cannot promise that. With ``PYTHONUNBUFFERED=1`` its text layer writes straight to
the file descriptor and ignores a short write (a nearly full disk), so the rest is lost without an
error; with ``PYTHONIOENCODING=ascii`` it cannot write "café"; and a write to a pipe whose reader
stopped reading blocks for good, deaf to Ctrl-C. An :class:`FdOutput` writes bytes to the file
descriptor itself and loops until all of them went out; the caller encodes (UTF-8).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import select
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: How often a write blocked on a slow reader looks whether the Listen was asked to stop.
POLL_SECONDS = 0.1
#: Once asked to stop, how long a blocked output may still take the rest of a write.
STOP_GRACE = 0.25

#: Errors that mean the reader is gone (a closed pipe or socket), not that something broke.
_CLOSED = (errno.EPIPE, errno.ECONNRESET)


class OutputError(Exception):
    """A write went out only in part: ``written`` bytes of it, then the output failed.

    ``kind`` is "closed" (the reader went away: a closed pipe), "stopped" (the output was blocked
    and the caller was asked to stop) or "failed" (full disk, I/O error...). ``documents`` is set
    by a sink: how many whole documents of its batch went out before the failure.
    """

    def __init__(self, message: str, written: int, kind: str) -> None:
        super().__init__(message)
        self.written = written
        self.kind = kind
        self.documents = 0

    @classmethod
    def of(cls, exc: OSError, written: int) -> OutputError:
        kind = "closed" if exc.errno in _CLOSED else "failed"
        return cls(exc.strerror or str(exc), written, kind)


class FdOutput:
    """Writes bytes to a file descriptor, all of them or :class:`OutputError`.

    A pipe, a socket or a terminal can block (a reader that does not read): there each write is
    made non-blocking and waits with ``poll``, so that it gives up once ``stopping`` is set (and
    ``STOP_GRACE`` passed). The descriptor's flags are put back after each write, since the open
    file may be shared with other processes (the shell).
    """

    def __init__(self, fd: int, stopping: threading.Event | None = None) -> None:
        self.fd = fd
        self.stopping = stopping
        mode = os.fstat(fd).st_mode
        self.pipe = stat.S_ISFIFO(mode)
        self.may_block = self.pipe or stat.S_ISSOCK(mode) or os.isatty(fd)
        self._watching = False

    def write(self, data: bytes) -> None:
        total = len(data)
        if not total:
            return
        view, done = memoryview(data), 0
        # Only a writer that may be asked to stop needs to wait in poll(): the rest block as usual.
        flags = self._nonblocking() if self.may_block and self.stopping is not None else None
        give_up_at: list[float] = []  # when the caller was seen stopping, plus the grace
        try:
            while done < total:
                try:
                    n = os.write(self.fd, view[done:])
                except BlockingIOError:
                    self._wait(done, give_up_at)
                    continue
                except OSError as exc:
                    raise OutputError.of(exc, done) from None
                if n <= 0:  # never for a file or a pipe; a device that takes nothing must not spin
                    raise OutputError("the output took no bytes", done, "failed")
                done += n
        finally:
            if flags is not None:
                _set_flags(self.fd, flags)

    def _nonblocking(self) -> int | None:
        try:
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            if not flags & os.O_NONBLOCK:
                _set_flags(self.fd, flags | os.O_NONBLOCK)
                return flags
        except OSError:
            pass  # then the write blocks as it would have anyway
        return None

    def _wait(self, written: int, give_up_at: list[float]) -> None:
        """Until the descriptor takes more (or reports an error, which the next write raises)."""
        poll = select.poll()
        poll.register(self.fd, select.POLLOUT)
        while not poll.poll(POLL_SECONDS * 1000):
            if self.stopping is not None and self.stopping.is_set():
                now = time.monotonic()
                if not give_up_at:
                    give_up_at.append(now + STOP_GRACE)
                elif now >= give_up_at[0]:
                    raise OutputError("stopped while the output was not read", written, "stopped")

    def watch_reader(self, gone: Callable[[], None], until: threading.Event) -> None:
        """For a pipe: call ``gone()`` once its reader closed it (``listen | head -1``), even while
        nothing is being written; the watch ends when ``until`` is set."""
        if not self.pipe or self._watching:
            return
        self._watching = True

        def watch() -> None:
            poll = select.poll()
            poll.register(self.fd, 0)  # no event asked: poll returns only for POLLERR / POLLHUP
            while not until.is_set():
                if poll.poll(200):
                    gone()
                    return

        threading.Thread(target=watch, name="output-reader", daemon=True).start()


class StreamOutput:
    """An in-memory or otherwise file-less stream (``io.StringIO``, a test's capture): written and
    flushed; on failure nothing of the write is counted as written."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.text = isinstance(stream, io.TextIOBase)

    def write(self, data: bytes) -> None:
        if self.stream is None:
            raise OutputError("the output is closed", 0, "closed")
        try:
            self.stream.write(data.decode("utf-8") if self.text else data)
            self.stream.flush()
        except OSError as exc:
            raise OutputError.of(exc, 0) from None


def as_output(target: Any, stopping: threading.Event | None = None) -> FdOutput | StreamOutput:
    """An output for a file descriptor, a stream with one (``sys.stdout``; what Python buffered for
    it is flushed first), or a stream without one."""
    if isinstance(target, int):
        return FdOutput(target, stopping)
    if target is None:  # Python found the descriptor closed at start (``listen >&-``)
        return StreamOutput(None)
    try:
        fd = target.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return StreamOutput(target)
    try:
        target.flush()
    except (OSError, ValueError):
        pass
    try:
        return FdOutput(fd, stopping)
    except OSError:  # the descriptor was closed under the stream
        return StreamOutput(None)


def write_text(target: Any, text: str) -> bool:
    """Write ``text`` in UTF-8, whole, to ``target`` (e.g. ``sys.stderr``); False when it could not."""
    try:
        as_output(target).write(text.encode("utf-8", "backslashreplace"))
    except (OutputError, OSError):
        return False
    return True


def print_out(text: str) -> None:
    """A command's answer and a newline on standard output (``describe``, ``connectors``,
    ``check``), in UTF-8 and whole: a full disk raises :class:`OutputError`, where ``print`` would
    raise a bare OSError or, with ``PYTHONUNBUFFERED=1``, lose the end of a short write."""
    as_output(sys.stdout).write((text + "\n").encode("utf-8", "backslashreplace"))


def output_failed(exc: OutputError, fail: Callable[[int, str], int]) -> int:
    """The exit of a command whose standard output failed: a reader gone ends it quietly (141,
    standard output then goes nowhere); anything else is ``fail(1, message)`` (the caller's way
    of saying ``error: message``)."""
    from connector.harness.exits import EXIT_CLOSED, EXIT_FAILED

    if exc.kind == "closed":  # as for a BrokenPipeError
        silence(1)
        return EXIT_CLOSED
    return fail(EXIT_FAILED, f"cannot write the output ({exc})")


class AnswerStream(io.TextIOBase):
    """``sys.stdout`` while a connector's own command runs (:func:`answering`): each write goes
    out at once, whole and in UTF-8, as :func:`print_out` writes; a full disk or a reader gone
    raises :class:`OutputError`, which the command line reports in one line."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.output = as_output(real)

    def write(self, text: str) -> int:
        self.output.write(text.encode("utf-8", "backslashreplace"))
        return len(text)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.real is not None and self.real.isatty()

    def fileno(self) -> int:
        if self.real is None:
            raise io.UnsupportedOperation("standard output is closed")
        return self.real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


@contextmanager
def answering() -> Iterator[AnswerStream]:
    """``with answering():`` standard output is an :class:`AnswerStream` (then what it was)."""
    real = sys.stdout
    sys.stdout = stream = AnswerStream(real)
    try:
        yield stream
    finally:
        sys.stdout = real


def silence(fd: int) -> None:
    """Point ``fd`` at /dev/null: once its reader is gone, nothing written later (Python flushing
    ``sys.stdout`` at exit) may fail with a BrokenPipeError traceback."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def _set_flags(fd: int, flags: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    except OSError:
        pass
