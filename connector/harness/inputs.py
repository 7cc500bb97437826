"""What a command reads and writes, checked before anything is sent: its text arguments, its
configuration files, the documents of a Send (files, lines or the whole of standard input), and
its outputs (``--results``, ``--outbox``), which must not be one of its inputs."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from connector.harness.exits import UsageError

#: The harness's arguments that are file names: bytes the file system accepts, whatever their
#: encoding (a connector's are the flags whose value is a FILE: ``file_options``).
PATH_ARGS = frozenset({"connection", "operation", "file", "inputs", "results", "outbox", "output"})
#: The --file that names standard input (all of it one document).
STDIN = "-"
#: A configuration or password file larger than this is not one (and is not read into memory).
MAX_CONFIG_BYTES = 16 << 20


def check_text_args(args: argparse.Namespace, options: Mapping[str, str] | None = None,
                    paths: Mapping[str, str] | None = None) -> None:
    """Every text argument is UTF-8 (Python hands undecodable bytes over as lone surrogates), all
    checked before anything is sent: a bad second --message must not let the first one go.
    ``options`` names the flag of an attribute where it is not ``--`` and the attribute's name;
    ``paths`` holds more attributes that are file names (by attribute, like ``options``)."""
    for name, value in vars(args).items():
        if name in PATH_ARGS or name in (paths or {}):
            continue
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                stack += item
            elif isinstance(item, str):
                bad = re.search("[\ud800-\udfff]", item)
                if bad is not None:
                    char = bad.group()
                    byte = f"the byte 0x{ord(char) & 0xFF:02X}" if char >= "\udc80" else "a lone surrogate"
                    flag = (options or {}).get(name) or "--" + name.replace("_", "-")
                    raise UsageError(f"{flag} is not valid UTF-8 text ({byte} at character {bad.start() + 1}): "
                                     "give it in UTF-8")


def read_text(path: str, what: str, first_line: bool = False) -> str:
    """A UTF-8 file's text (or its first line, without the newline); UsageError in words."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"the {what} file {path!r} is larger than {MAX_CONFIG_BYTES >> 20} MiB: is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the {what} file {path!r} is not UTF-8 text (byte {exc.start + 1:,})") from None
    return text.split("\n", 1)[0].rstrip("\r") if first_line else text


def load_json_file(path: str, what: str) -> Any:
    """A configuration file, strictly (see :mod:`connector.sdk.jsontext`); UsageError in words."""
    from connector.sdk.jsontext import JsonError, loads

    text = read_text(path, what)
    try:
        return loads(text)
    except JsonError as exc:
        raise UsageError(f"the {what} file {path!r} {exc}") from None


# -- the documents of a Send -----------------------------------------------------------------

def _stdin_lines(stopped: Callable[[], bool], limit: int | None = None) -> Iterator[bytes]:
    from connector.harness.stopping import StdinReader

    return StdinReader(stopped, limit).lines()


def _read_files(paths: Sequence[str], stopped: Callable[[], bool], limit: int | None = None) -> Iterator[bytes]:
    for path in paths:
        if path == STDIN:
            yield from stdin_whole(stopped, limit)
            continue
        with open(path, "rb") as f:  # a stream (pipe, device) is read one byte past the limit at most
            yield f.read() if limit is None else f.read(limit + 1)


def stdin_whole(stopped: Callable[[], bool], limit: int | None = None) -> Iterator[bytes]:
    from connector.harness.stopping import StdinReader

    return StdinReader(stopped, limit).whole()


def input_documents(files: Sequence[str] | None, lines: bool, otherwise: Iterator[bytes],
                    stopped: Callable[[], bool], limit: int | None = None) -> Iterator[bytes]:
    """The documents of a Send: each file (all checked before anything is sent), each line of
    standard input, or ``otherwise``; read lazily as they are sent, until ``stopped()``, never
    much past ``limit`` bytes (the largest the connector could send)."""
    if files:
        _check_files(files, limit)
        return _read_files(files, stopped, limit)
    return _stdin_lines(stopped, limit) if lines else otherwise


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``, ..."""
    end = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{end}"


def document_namer(files: Sequence[str] | None, lines: bool, otherwise: str | None = None,
                   messages: int = 0) -> Callable[[int], str]:
    """How the reports name the document of a (0-based) index, as the user counts: from 1, and
    where it came from: ``document 2 (line 2)`` for ``--lines``, ``document 2 (file 'b.txt')``,
    ``document 2 (the 2nd --message)`` (``messages`` of them), else ``otherwise`` (words such as
    ``"standard input"``). Past the end of the files or messages, the input was repeated
    (``--repeat``): ``document 5 (the 1st --message, round 3)``. The results file keeps the
    0-based index (CONTRACT.md)."""
    def name(index: int) -> str:
        count = len(files) if files else messages
        where, turn = otherwise, index // count + 1 if count else 1
        if files:
            path = files[index % count]
            where = "standard input" if path == "-" else f"file {path!r}"
        elif lines:
            where = f"line {index + 1}"
        elif messages:
            where = f"the {ordinal(index % count + 1)} --message"
        if turn > 1:
            where = f"{where}, round {turn}"
        return f"document {index + 1}" + (f" ({where})" if where else "")

    return name


def _check_files(paths: Sequence[str], limit: int | None = None) -> None:
    """Every input file must be readable, and a regular file no larger than ``limit``, before
    anything is sent. A named pipe, a device or a process substitution (``--file <(cmd)``) is
    read when its turn comes (waiting for its writer, as cat does), no further than ``limit``."""
    import stat

    if list(paths).count(STDIN) > 1:
        raise UsageError(f"--file {STDIN} (standard input) is given more than once: it can be read only once")
    for path in paths:
        if path == STDIN:
            continue
        try:
            info = os.stat(path)
        except OSError as exc:
            missing = isinstance(exc, FileNotFoundError)
            raise UsageError(f"the input file {path!r} does not exist" if missing else
                             f"the input file {path!r} cannot be read: {exc.strerror or exc}") from None
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"the input {path!r} is not a file: it is a directory")
        if stat.S_ISSOCK(info.st_mode):
            raise UsageError(f"the input {path!r} is not a file: it is a socket")
        if not os.access(path, os.R_OK):
            raise UsageError(f"the input file {path!r} cannot be read: permission denied")
        if limit is not None and stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise UsageError(f"the input file {path!r} is {info.st_size:,} bytes: larger than the {limit:,} bytes "
                             "a document can carry here")


# -- outputs ---------------------------------------------------------------------------------

def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)  # links and other names of one file too
    except OSError:  # one does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(args: argparse.Namespace, file_args: Mapping[str, str] | None = None) -> None:
    """Before anything is opened: an output (--results, --outbox) is neither an input nor the
    other output (opening it for writing would destroy it before it is read), and --results can
    be written (so that a Send never sends and then fails to report). ``file_args`` adds the
    flags that name files read (by attribute)."""
    outputs = {flag: path for flag, path in (("--results", args.results), ("--outbox", args.outbox)) if path}
    inputs = [(flag, path) for flag, paths in (("--file", getattr(args, "file", None)),
                                                ("INPUT", getattr(args, "inputs", None)))
              for path in paths or ()]
    named = {"connection": "--connection", "operation": "--operation", **(file_args or {})}
    inputs += [(flag, getattr(args, dest, None)) for dest, flag in named.items()]
    seen: list[tuple[str, str]] = []
    for flag, path in outputs.items():
        # SQLite and the outbox's lock write files next to it too
        written = [path, *(path + end for end in (".lock", "-wal", "-shm") if flag == "--outbox")]
        for other, given in [*inputs, *seen]:
            hit = next((name for name in written if isinstance(given, str) and given and _same_file(name, given)),
                       None)
            if hit is not None:
                raise UsageError(f"{flag} {path!r} {'is' if hit == path else f'writes {hit!r}, which is'} the same "
                                 f"file as {other} {given!r}: give the output another name")
        seen.append((flag, path))
    if args.results:
        _check_writable(args.results)


def _check_writable(path: str) -> None:
    """--results can be written: an existing file (or device) takes a write of nothing, which
    fails as a real one would (/dev/full, a read-only mount); a new one's folder is writable."""
    problem = None
    if os.path.lexists(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)  # no truncation; no wait for a reader
            try:
                os.write(fd, b"")
            finally:
                os.close(fd)
        except OSError as exc:
            problem = exc.strerror or str(exc)
    else:
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            problem = f"{folder!r} is not a folder" if os.path.exists(folder) else f"the folder {folder!r} does not exist"
        elif not os.access(folder, os.W_OK | os.X_OK):
            problem = f"the folder {folder!r} cannot be written"
    if problem is not None:
        raise UsageError(f"cannot write the results file {path!r}: {problem}")
