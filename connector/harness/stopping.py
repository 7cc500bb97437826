"""A Send stopped by SIGINT/SIGTERM: read no more input, report every document read, exit 128 + N.

The first signal only sets a flag: the input ends (also a wait for input that may never come, a
pipe that stays open), the documents already read are confirmed or fail as usual and each gets
its result. A second signal stops at once: it interrupts the wait for the broker, and each
document read but not yet settled is reported FAILURE "interrupted". The report is written in
both cases before the process exits.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from connector.sdk.documents import Result, Status

#: How often a wait for input looks whether a signal came (PEP 475 resumes an interrupted read).
POLL_MS = 200
CHUNK = 1 << 16

INTERRUPTED = "interrupted: stopped by a second signal before the broker confirmed it"


class Interrupted(KeyboardInterrupt):
    """A second signal, raised where the Send waits for the broker. A KeyboardInterrupt so that
    nothing on the way (``except Exception``) takes it for a failure of its own."""


class GracefulStop:
    """The signal handlers of one Send and what it read (see the module's docstring)."""

    def __init__(self) -> None:
        #: The first signal's number: it decides the exit code.
        self.signal: int | None = None
        self.second: int | None = None
        #: Documents read from the input (each must get one result).
        self.read = 0
        self.bytes_read = 0  # their payloads (of lines: without the newlines)
        #: Documents the input holds, when known before it is read (for the report).
        self.expected: int | None = None
        self._interruptible = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is None:
            self.signal = signum
            return
        self.second = signum
        if self._interruptible:
            self._interruptible = False
            raise Interrupted

    def stopped(self) -> bool:
        return self.signal is not None

    def documents(self, documents: Iterator[Any]) -> Iterator[Any]:
        """The input, read until it ends or a signal came; counted."""
        while self.signal is None:
            try:
                document = next(documents)
            except StopIteration:
                return
            self.read += 1
            self.bytes_read += len(document)
            yield document

    def results(self, results: Iterator[Result]) -> Iterator[Result]:
        """Every read document's result: the Send's, then, after a second signal (which
        interrupts the Send where it waits), FAILURE "interrupted" for each one it did not settle.
        Results come in input order, one per document, so the missing ones are the last."""
        reported = 0
        try:
            while self.second is None:
                self._interruptible = True
                try:
                    result = next(results)
                except StopIteration:
                    return
                finally:
                    self._interruptible = False
                reported += 1
                yield result
        except Interrupted:
            pass
        close = getattr(results, "close", None)
        if close is not None:  # the connection is closed (if the interruption did not)
            close()
        for index in range(reported, self.read):
            yield Result(index, Status.FAILURE, INTERRUPTED)


def stopped_counts(stop: GracefulStop, confirmed: int, failed: int) -> str:
    """What a Send stopped by a signal did, in words: which signal, documents sent (read),
    confirmed, failed, and not sent (a number when the input's size is known)."""
    assert stop.signal is not None
    rest = ("the rest of the input not sent" if stop.expected is None
            else f"{max(0, stop.expected - stop.read):,} not sent")
    return (f"stopped by {signal.Signals(stop.signal).name}: {stop.read:,} sent, {confirmed:,} confirmed, "
            f"{failed:,} failed, {rest}")


class StdinReader:
    """Standard input in chunks as it comes; a wait for more ends once ``stopped()``.

    With a ``limit`` (the largest document the connector could send) a document is kept to one
    byte past it, so that memory stays bounded and the connector still refuses it as too large.
    """

    def __init__(self, stopped: Callable[[], bool], limit: int | None = None) -> None:
        self.stopped = stopped
        self.keep = None if limit is None else limit + 1
        #: True once the input really ended (not cut short by a signal).
        self.ended = False

    def chunks(self) -> Iterator[bytes]:
        if sys.stdin is None:  # closed when the process started (``<&-``): no input
            self.ended = True
            return
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # replaced by a script or a test: no waiting
            yield from iter(lambda: sys.stdin.buffer.read(CHUNK), b"")
            self.ended = True
            return
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        while True:
            if not poll.poll(POLL_MS):
                if self.stopped():
                    return
                continue
            chunk = os.read(fd, CHUNK)
            if not chunk:
                self.ended = True
                return
            yield chunk

    def lines(self) -> Iterator[bytes]:
        """Each line without its newline ("\\n" or "\\r\\n"); a last line without one counts
        when the input ended, not when a signal cut it short."""
        parts: list[bytes] = []  # the line being read, joined once whole
        kept = 0  # bytes in parts; past self.keep the rest of the line is skipped
        for chunk in self.chunks():
            if b"\n" not in chunk:
                if self.keep is None or kept <= self.keep:
                    parts.append(chunk)
                    kept += len(chunk)
                continue
            lines = chunk.split(b"\n")
            if parts:
                parts.append(lines[0])
                lines[0] = b"".join(parts)
                parts, kept = [], 0
            last = lines.pop()
            if last:
                parts.append(last)
                kept = len(last)
            for line in lines:
                line = line[:-1] if line.endswith(b"\r") else line
                yield line if self.keep is None else line[:self.keep]
        if parts and self.ended:
            line = b"".join(parts)
            yield line if self.keep is None else line[:self.keep]

    def whole(self) -> Iterator[bytes]:
        """All of it as one document, once it ended (nothing when a signal cut it short)."""
        parts: list[bytes] = []
        kept = 0
        for chunk in self.chunks():
            parts.append(chunk)
            kept += len(chunk)
            if self.keep is not None and kept >= self.keep:
                self.ended = True  # enough to refuse it: the rest is not read
                break
        if self.ended:
            data = b"".join(parts)
            yield data if self.keep is None else data[:self.keep]
