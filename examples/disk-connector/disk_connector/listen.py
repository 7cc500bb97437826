"""The Listen action: take the files that appear in a folder, hand each to the process, move it
to the done folder once the process accepted it.

The folder is polled (every ``poll_interval`` seconds while nothing is to be taken): the settle
rule needs a clock, not events, and a poll sees every file system, network shares included (an
inotify watcher does not see a file another machine writes to a share).

A file is taken (:class:`Settle`) once it stopped changing: two looks saw the same size, inode
and modification time, and it was last modified at least ``settle_time`` seconds ago (or the
Listen saw it unchanged that long, whatever its clock says). Names starting with '.' are never
taken: a writer may write under such a name and rename it when done, as a disk Send does.

A file is read whole and handed over; only once the process accepted it (and made it durable) is
it moved to the done folder. A Listen killed between the two hands it over again when it starts
again: at least once, never lost, never half-read. Refusals go through the SDK's retry policy;
after the last attempt the file goes to the failed folder (:mod:`disk_connector.moves`).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connector.sdk.documents import Document
from connector.sdk.errors import ConnectError
from connector.sdk.listener import Listener
from connector.sdk.retry import Retries
from disk_connector.folders import Directory
from disk_connector.moves import Mover, hold_folder

log = logging.getLogger("disk_connector.listen")

#: At most this many files, and about this many bytes, go to the process as one batch (one flush).
BATCH_FILES = 200
BATCH_BYTES = 16 << 20


@dataclass(frozen=True)
class Found:
    """A file the Listen took: where it is and what it was when read (the Listen's message)."""

    path: Path
    inode: int
    size: int
    mtime_ns: int

    def same(self, stat: os.stat_result) -> bool:
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns) == (self.inode, self.size, self.mtime_ns)


class Settle:
    """Which files stopped changing (the rule in the module's docstring)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._seen: dict[str, tuple[tuple[int, int, int], float]] = {}

    def ready(self, folder: Path, pattern: str) -> list[Found]:
        """The files of ``folder`` matching ``pattern`` that may be taken, oldest first."""
        now, wall = time.monotonic(), time.time_ns()
        seen, ready = {}, []
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not fnmatch.fnmatchcase(name, pattern):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                mark = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                before = self._seen.get(name)
                since = before[1] if before is not None and before[0] == mark else now
                seen[name] = (mark, since)
                if self._settled(before is not None and before[0] == mark, stat.st_mtime_ns, wall, now - since):
                    ready.append(Found(Path(entry.path), *mark))
        self._seen = seen
        ready.sort(key=lambda found: (found.mtime_ns, found.path.name))
        return ready

    def _settled(self, unchanged: bool, mtime_ns: int, wall_ns: int, unchanged_for: float) -> bool:
        if self.seconds == 0:
            return True
        return unchanged and ((wall_ns - mtime_ns) / 1e9 >= self.seconds or unchanged_for >= self.seconds)


def read(found: Found, directory: Directory) -> Document | None:
    """The file as a document, read whole; None when it changed or went since it was found (it is
    looked at again, and taken once it settles)."""
    try:
        fd = os.open(found.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as exc:
        log.warning("cannot read '%s' (%s): left in the folder", found.path, exc.strerror or exc)
        return None
    try:
        if not found.same(os.fstat(fd)):
            return None
        chunks, left = [], found.size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left or os.read(fd, 1) or not found.same(os.fstat(fd)):
            return None  # it changed while read: never hand over half a file
    finally:
        os.close(fd)
    modified = datetime.fromtimestamp(found.mtime_ns / 1e9, timezone.utc).isoformat()
    return Document(b"".join(chunks), {"name": found.path.name, "path": directory.relative(found.path),
                                       "size": found.size, "modified": modified})


def batches(found: list[Found]) -> Iterator[list[Found]]:
    """``found`` in batches of at most :data:`BATCH_FILES` files and about :data:`BATCH_BYTES`."""
    batch: list[Found] = []
    size = 0
    for item in found:
        if batch and (len(batch) >= BATCH_FILES or size + item.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


def describe_listen(operation: Mapping[str, Any], folder: str) -> str:
    return f"files matching {operation['pattern']!r} in '{folder}'"


def listen(directory: Directory, operation: Mapping[str, Any], listener: Listener) -> int:
    """Run until ``listener.stopping`` is set; return how many files the process accepted."""
    folder = directory.folder(operation["folder"])
    mover = Mover(directory, folder, operation)
    pattern, pause = operation["pattern"], operation["poll_interval"]
    settle, stopping = Settle(operation["settle_time"]), listener.stopping
    retries = Retries(operation, listener, mover.endpoint())
    accepted = 0
    with hold_folder(folder):
        listener.listening(describe_listen(operation, str(folder)))
        while not stopping.is_set():
            try:
                ready = settle.ready(folder, pattern)
            except OSError as exc:
                raise ConnectError(f"cannot look into the folder '{folder}': {exc.strerror or exc}") from None
            handed = False
            for batch in batches(ready):
                if stopping.is_set():
                    break
                messages, documents = [], []
                for found in batch:
                    document = read(found, directory)
                    if document is not None:
                        messages.append(found)
                        documents.append(document)
                if documents:
                    handed = True
                    accepted += retries.deliver(messages, documents)
                    mover.sync()
            if not handed:  # nothing (settled) to take: look again in a while
                stopping.wait(pause)
    return accepted
