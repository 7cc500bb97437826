"""Where a Listen's files go: the done folder once the process accepted one, the failed folder
after its last failed attempt (the SDK's dead-letter destination), never over another file.

A file is moved only if it is still the one that was read (same inode, size and modification
time): a file replaced meanwhile stays, and is taken as the new file it is. A move never
replaces a file of the same name: ``NAME`` becomes ``STEM.1.SUFFIX``, ``STEM.2.SUFFIX``...
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.sdk.errors import ConnectError
from connector.sdk.retry import Endpoint
from disk_connector.folders import Directory, sync_folder
from disk_connector.send import NO_LINKS, Exists, write_file

if TYPE_CHECKING:
    from disk_connector.listen import Found

log = logging.getLogger("disk_connector.listen")

#: The file a Listen holds locked in its folder, so that two Listens never take the same files.
LOCK_NAME = ".disk-listen.lock"


def candidates(name: str) -> Iterator[str]:
    """``name``, then ``stem.1.suffix``, ``stem.2.suffix``..."""
    yield name
    stem, dot, suffix = name.rpartition(".")
    if not stem:
        stem, dot, suffix = name, "", ""
    number = 1
    while True:
        yield f"{stem}.{number}{dot}{suffix}"
        number += 1


def move(source: Path, folder: Path, name: str) -> Path:
    """Move ``source`` into ``folder`` under ``name`` or the first free candidate; the new path.

    A hard link then an unlink, so that no file is ever replaced (rename where links are not). A
    Listen killed between the two leaves the file under both names, one file: it is handed over
    again, and this move then finds its own link and completes (no second copy in the folder)."""
    for candidate in candidates(name):
        target = folder / candidate
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            if os.path.samefile(source, target):  # the move a killed Listen began
                os.unlink(source)
                return target
            continue
        except OSError as exc:
            if exc.errno not in NO_LINKS:
                raise
            if os.path.lexists(target):
                continue
            os.rename(source, target)
            return target
        os.unlink(source)
        return target
    raise AssertionError("unreachable")


class Mover:
    """Acknowledges (moves to done) and dead-letters (moves to failed) the files of one folder."""

    def __init__(self, directory: Directory, folder: Path, operation: Mapping[str, Any]) -> None:
        self.directory, self.folder = directory, folder
        self.done = directory.folder(operation["done_folder"], create=True)
        failed = operation.get("dead_letter_topic")
        self.failed = directory.folder(failed, create=True) if failed else None
        device = folder.stat().st_dev
        for other in (self.done, self.failed):
            if other is not None and other.stat().st_dev != device:
                raise ConnectError(f"the folder '{other}' is on another file system than '{folder}': files "
                                   "could not be moved there at once")
        self._moved: set[Path] = set()  # folders to fsync
        self._dead: set[Path] = set()  # files already moved to failed: their acknowledgement is done

    def endpoint(self) -> Endpoint[Found]:
        return Endpoint(acknowledge=self.acknowledge, publish_dead_letter=self.dead_letter,
                        describe=lambda document: f"the file {document.properties['path']!r}")

    def _still(self, found: Found) -> bool:
        """Whether ``found.path`` is still the file that was read."""
        try:
            return found.same(os.lstat(found.path))
        except FileNotFoundError:
            return False

    def acknowledge(self, found: Found) -> None:
        """The process accepted the file: move it to the done folder."""
        if found.path in self._dead:
            self._dead.discard(found.path)
            return
        if not self._still(found):
            log.warning("'%s' changed or went after it was read; it was not moved (a new file there is taken "
                        "again)", found.path)
            return
        try:
            move(found.path, self.done, found.path.name)
        except OSError as exc:
            raise ConnectError(f"cannot move '{found.path}' to '{self.done}' ({exc.strerror or exc}): it was "
                               "accepted and stays, so it will be handed over again") from None
        self._moved.update((self.folder, self.done))

    def dead_letter(self, destination: str, letter: bytes, found: Found) -> str | None:
        """After the last failed attempt: the file goes to the failed folder with ``NAME.error.json``
        beside it (the dead letter without the payload, which is the file itself)."""
        assert self.failed is not None
        envelope = json.loads(letter)
        source = found.path
        if not self._still(found):
            log.warning("'%s' changed or went after it was read; it was not moved (a new file there is taken "
                        "again)", source)
            self._dead.add(source)
            return None
        for key in ("payload", "encoding"):
            envelope.pop(key, None)
        note = (json.dumps(envelope, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        try:
            for candidate in candidates(source.name):
                try:
                    write_file(self.failed, candidate + ".error.json", note, overwrite=False)
                except Exists:
                    continue
                try:
                    moved = move(source, self.failed, candidate)
                except OSError:
                    os.unlink(self.failed / (candidate + ".error.json"))
                    raise
                break
        except OSError as exc:
            return f"cannot move it to '{self.failed}': {exc.strerror or exc}"
        log.info("moved '%s' to '%s'", source, moved)
        self._dead.add(source)
        self._moved.update((self.folder, self.failed))
        return None

    def sync(self) -> None:
        """Make the moves so far durable (fsync their folders)."""
        for folder in self._moved:
            sync_folder(folder)
        self._moved.clear()


@contextlib.contextmanager
def hold_folder(folder: Path) -> Iterator[None]:
    """Hold the folder's lock file for the Listen; ConnectError when another Listen holds it."""
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): one Listen per folder is the user's rule
        yield
        return
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise ConnectError(f"cannot create the lock file '{path}': {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConnectError(f"another Listen takes the files of '{folder}' already (it holds '{LOCK_NAME}')") from None
        yield
    finally:
        os.close(fd)
