"""The Send action: each document becomes one file, written atomically.

A file appears under its name whole or not at all: the payload is written to a temporary name
in the same folder (``.NAME.RANDOM.tmp``: a dot-name, which no disk Listen takes), flushed to
disk (fsync), renamed to its name, and the folder is flushed so that the rename survives a power
loss. Only then is the document's Result SUCCESS. Without ``overwrite`` the rename is a hard link
that fails when the name exists (so a file that appeared meanwhile is never replaced either).
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from connector.sdk.documents import Document, Result, Status
from disk_connector.folders import Directory, sync_folder
from disk_connector.naming import Unnamable, render

#: Errors of os.link that mean "this file system has no hard links": then exists-check and rename.
NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


class Exists(Exception):
    """The name is taken and the operation does not overwrite."""


def send(directory: Directory, operation: Mapping[str, Any], documents: Iterable[Document]) -> Iterator[Result]:
    """One Result per document, in order, each after its file is durable (or refused, or failed).

    The folder is looked up now: a missing one raises ConnectError before anything is read."""
    folder = directory.folder(operation["folder"])
    template, overwrite = operation["file_name"], operation["overwrite"]

    def results() -> Iterator[Result]:
        for index, document in enumerate(documents):
            yield write_document(folder, template, overwrite, index, document)

    return results()


def write_document(folder: Path, template: str, overwrite: bool, index: int, document: Document) -> Result:
    """Write one document; its Result."""
    try:
        name = render(template, index, document.properties)
    except Unnamable as exc:
        return Result(index, Status.APPLICATION_ERROR, str(exc))
    try:
        write_file(folder, name, document.payload, overwrite)
    except Exists:
        return Result(index, Status.APPLICATION_ERROR,
                      f"a file named {name!r} exists already in '{folder}'; it was kept (set overwrite to replace it)")
    except OSError as exc:
        return Result(index, Status.FAILURE, f"cannot write {name!r} in '{folder}': {exc.strerror or exc}")
    return Result(index, Status.SUCCESS)


def write_file(folder: Path, name: str, payload: bytes, overwrite: bool) -> None:
    """Write ``payload`` as ``folder/name`` atomically and durably.

    :raises Exists: the name is taken and ``overwrite`` is false (nothing changed).
    :raises OSError: the write failed (full disk, permissions...); nothing is left behind.
    """
    target = folder / name
    if not overwrite and os.path.lexists(target):
        raise Exists(name)
    temporary = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            view = memoryview(payload)
            while view:  # a short write (a full disk) raises on the next call, never loses the rest
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        _rename(temporary, target, overwrite)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    sync_folder(folder)


def _rename(temporary: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)  # fails when the name exists: never replaces a file
    except FileExistsError:
        raise Exists(target.name) from None
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise
        if os.path.lexists(target):  # no hard links here: check, then rename (a small window)
            raise Exists(target.name) from None
        os.rename(temporary, target)
        return
    os.unlink(temporary)
