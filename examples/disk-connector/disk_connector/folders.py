"""The connection's directory and the folders an operation names inside it.

An operation's folders are relative to the connection's directory and never leave it: no
absolute path, no '..'. Writes are made durable with fsync on the file and on its folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from connector.sdk.errors import ConnectError

#: The operation fields that name a folder, and for which action.
FOLDER_FIELDS = {"folder": ("send", "listen"), "done_folder": ("listen",), "dead_letter_topic": ("listen",)}


def folder_problem(value: str) -> str | None:
    """Why ``value`` cannot name a folder inside the directory, or None."""
    if "\0" in value:
        return "must not hold a NUL character"
    if value.startswith("/") or value.startswith("\\") or PurePosixPath(value).is_absolute() or (
            len(value) > 1 and value[1] == ":"):
        return f"{value!r} must be relative to the connection's directory, not absolute"
    parts = value.replace("\\", "/").split("/")
    if ".." in parts:
        return f"{value!r} must stay inside the connection's directory: '..' is not allowed"
    return None


def normal(value: str) -> str:
    """``value`` as one spelling (``'in/./a/'`` and ``'in/a'`` are one folder)."""
    return str(PurePosixPath(value.replace("\\", "/")))


def folder_problems(operation: Mapping[str, Any]) -> list[str]:
    """The operation's folder fields that are not relative folders inside the directory, and a
    done or failed folder that is the folder itself (its files would be taken again)."""
    problems = []
    action = operation.get("action")
    for name, actions in FOLDER_FIELDS.items():
        value = operation.get(name)
        if action in actions and isinstance(value, str):
            problem = folder_problem(value)
            if problem is not None:
                problems.append(f"operation {name}: {problem}")
    if action == "listen" and not problems:
        folder = normal(operation["folder"])
        for name in ("done_folder", "dead_letter_topic"):
            value = operation.get(name)
            if isinstance(value, str) and normal(value) == folder:
                problems.append(f"operation {name}: must differ from the folder {operation['folder']!r}, "
                                "whose files the Listen takes")
    return problems


class Directory(contextlib.AbstractContextManager):
    """The connection: the directory, checked to exist. Opening it holds nothing open."""

    def __init__(self, connection: Mapping[str, Any]) -> None:
        self.root = Path(connection["directory"]).absolute()
        if not self.root.is_dir():
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise ConnectError(f"the directory '{self.root}' {what}")

    def folder(self, relative: str, create: bool = False) -> Path:
        """The folder ``relative`` inside the directory; ConnectError when it is not a folder
        (with ``create``, a missing one is made)."""
        path = self.root / normal(relative)
        if create and not path.exists():
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConnectError(f"cannot create the folder '{path}': {exc.strerror or exc}") from None
            sync_folder(path.parent)
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise ConnectError(f"the folder '{path}' {what}")
        return path

    def relative(self, path: Path) -> str:
        """``path`` relative to the directory, with '/' between folders."""
        return path.relative_to(self.root).as_posix()

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""

    def __exit__(self, *exc: object) -> None:
        self.close()


def sync_folder(path: Path) -> None:
    """fsync a folder, so that a rename or a new name in it survives a power loss."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check(connection: Mapping[str, Any]) -> str:
    """The directory exists and a file can be created, written and removed in it."""
    directory = Directory(connection)
    root = directory.root
    if not os.access(root, os.R_OK | os.X_OK):
        raise ConnectError(f"the directory '{root}' cannot be read (permission denied)")
    probe = root / f".disk-connector-check-{os.getpid()}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"check")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConnectError(f"cannot write in the directory '{root}': {exc.strerror or exc}") from None
    return f"the directory '{root}' is readable and writable"
