"""A Listen's sink for any ``--format`` and for ``--output FILE``: each document rendered to bytes
(:mod:`connector.harness.formats`), a batch written at once, and, for a file, made durable
(``fsync``) before the batch is acknowledged.

The rule is the standard output's (see :mod:`connector.harness.sinks`): a batch is written,
flushed (for a file: fsynced), then acknowledged. When the output fails part way (a full disk),
only the documents whose every byte went out count, and for a file only once an ``fsync`` of
them succeeded: a document that is not in the file is never acknowledged.
"""

from __future__ import annotations

import bisect
import itertools
import os
import stat
import threading
from collections.abc import Callable
from typing import Any

from connector.harness.exits import UsageError
from connector.harness.output import FdOutput, OutputError, as_output
from connector.sdk.documents import Document

#: A batch's records go to the output once they hold this many bytes, before the flush.
WRITE_THROUGH = 1 << 20


class RecordSink:
    """Writes ``render(document)`` for each document to ``output`` (a file descriptor or a
    stream); ``durable``: fsync a regular file after each write, before anything is acknowledged."""

    def __init__(self, output: Any, render: Callable[[Document], bytes], durable: bool = False) -> None:
        self.output = as_output(output)
        self.render = render
        self.durable = durable and isinstance(self.output, FdOutput) and stat.S_ISREG(os.fstat(self.output.fd).st_mode)
        self._records: list[bytes] = []
        self._pending = 0  # bytes in _records
        self._done = 0  # documents of this batch written already (a batch over WRITE_THROUGH)
        self._reader_gone: Callable[[], None] | None = None

    def attach(self, stopping: threading.Event, closed: Callable[[], None]) -> None:
        """A write blocked on a reader that does not read gives up once ``stopping`` is set;
        ``closed()`` is called once a pipe's reader went away."""
        if isinstance(self.output, FdOutput):
            self.output.stopping = stopping
            self._reader_gone = closed

    def write(self, document: Document) -> None:
        record = self.render(document)
        self._records.append(record)
        self._pending += len(record)
        if self._pending > WRITE_THROUGH:  # large documents: bounded memory
            self._write_records()

    def _write_records(self) -> None:
        records, self._records, self._pending = self._records, [], 0
        try:
            if records:
                self.output.write(b"".join(records))
        except OutputError as exc:
            # the records whose every byte went out
            whole = bisect.bisect_right(list(itertools.accumulate(map(len, records))), exc.written)
            if whole and self._unsynced():  # ... and, for a file, were made durable
                whole = 0
            exc.documents, self._done = self._done + whole, 0
            raise
        problem = self._unsynced()
        if problem:
            failed = OutputError(f"cannot make the output durable: {problem}", 0, "failed")
            failed.documents, self._done = self._done, 0
            raise failed
        self._done += len(records)
        if self._reader_gone is not None and isinstance(self.output, FdOutput):
            self.output.watch_reader(self._reader_gone, self.output.stopping or threading.Event())
            self._reader_gone = None

    def _unsynced(self) -> str | None:
        """For a durable output: fsync it; why that failed, or None."""
        if not self.durable:
            return None
        try:
            os.fsync(self.output.fd)  # type: ignore[union-attr]
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    def flush(self) -> None:
        self._write_records()
        self._done = 0

    def __call__(self, document: Document) -> None:
        self.write(document)
        self.flush()


def open_output(path: str) -> int:
    """``--output FILE`` opened for appending (created when missing); UsageError in words."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise UsageError(f"cannot write the output file {path!r}: {exc.strerror or exc}") from None
    return fd
