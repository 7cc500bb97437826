"""Where each field of a command's configuration came from (a flag, its file flag, an environment
variable, a key of a configuration file), so that an error names what the user typed: ``--cert-file``,
not the schema's ``cert_file``.

The SDK and the connectors say each problem as ``"connection FIELD/PATH: sentence"`` or
``"operation FIELD/PATH: sentence"`` (the ``connector_validate`` hook's contract);
:meth:`Origins.rename` rewrites the head, and the fields the sentence names, as they were given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from connector.harness.flags import Flag
from connector.harness.inputs import ordinal

#: A problem's head: the configuration, the field and the path inside its value.
_HEAD = re.compile(r"(connection|operation) (\(top level\)|[^\s:/]+)((?:/[^\s:]*)?): ")
#: A field's name inside a sentence: only names with an underscore, which no English word has.
_NAME = re.compile(r"(?<![\w'\"/-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w-])")
#: Flags that take several values: an index in the path is the how-manieth one.
_LISTS = frozenset({"list", "text-or-list", "pairs"})


class Origins:
    """Where the fields of a command's connection and operation came from."""

    def __init__(self, connection: Iterable[Flag] = (), operation: Iterable[Flag] = ()) -> None:
        self.flags = {("connection", f.field): f for f in connection}
        self.flags.update({("operation", f.field): f for f in operation})
        #: (section, field) -> ("flag" | "file" | "env", what names it)
        self.given: dict[tuple[str, str], tuple[str, str]] = {}
        self.files: dict[str, str] = {}  # section -> the configuration file it was read from
        self.many: set[tuple[str, str]] = set()  # fields a flag given several times gave
        self.lines: dict[tuple[str, str], str] = {}  # fields a file flag's lines gave -> the file

    def from_file(self, section: str, config: Any, path: str) -> None:
        """Every key of ``config`` came from the file ``path`` (``--connection``, ``--operation``)."""
        self.files[section] = path
        if isinstance(config, Mapping):
            for key in config:
                self.given[(section, key)] = ("file", path)

    def from_flag(self, section: str, flag: Flag, how: str, value: Any = None, path: str | None = None) -> None:
        """``flag``'s field was given by ``how`` (``"flag"``, ``"file"``: its file flag ``path``,
        ``"env"``) as ``value``."""
        name = {"flag": flag.option, "env": flag.env or "", "file": flag.file_option or ""}[how]
        self.given[(section, flag.field)] = ("flag" if how == "file" else how, name)
        if isinstance(value, list) and len(value) > 1:
            self.many.add((section, flag.field))
        if how == "file" and flag.file_lines and path is not None:
            self.lines[(section, flag.field)] = path

    def _head(self, section: str, field: str, path: str, told: set[str]) -> tuple[str, bool] | None:
        """The words for ``section``'s ``field`` (and ``path`` in its value) as the user gave it,
        and whether a file gave it (its sentence then keeps the file's keys); None: unknown.
        A file's name is said once: ``told`` holds the sections whose file was named already."""
        how, name = self.given.get((section, field), ("", ""))
        flag = self.flags.get((section, field))
        if field == "(top level)" or how == "file" or (not how and flag is None):  # a file's, or missing from it
            if section not in self.files:
                return None
            where = f"the {section} file" + ("" if section in told else f" {self.files[section]!r}")
            told.add(section)
            return (where, True) if field == "(top level)" else (f"{field + path!r} in {where}", True)
        if how == "env":
            return f"the environment variable {name}", False
        if flag is None:
            return None
        name = name or flag.option  # not given: the flag is how to give it
        index = path[1:].split("/")[0]
        if (section, field) in self.lines:  # one item a line: item N is line N + 1
            line = f"line {int(index) + 1} of " if index.isdigit() else ""
            return f"{line}{name} {self.lines[(section, field)]!r}", False
        if flag.kind in _LISTS and index.isdigit() and (section, field) in self.many:
            return f"the {ordinal(int(index) + 1)} {name}", False
        return name, False

    def _field(self, match: re.Match[str], section: str) -> str:
        """A field a sentence names: its flag when it has one and was not given by a file."""
        word = match.group()
        for key in ((section, word), ("connection", word), ("operation", word)):
            flag = self.flags.get(key)
            if flag is not None and self.given.get(key, ("",))[0] != "file":
                return flag.option
        return word

    def rename(self, problem: str, told: set[str] | None = None) -> str:
        """``problem`` with its field named as the user gave it (unchanged when it names none);
        a configuration file is named in full unless ``told`` (updated) holds its section."""
        match = _HEAD.match(problem)
        if match is None:
            return problem
        section, field, path = match.groups()
        named = self._head(section, field, path, set() if told is None else told)
        if named is None:
            return problem
        head, by_file = named
        sentence = problem[match.end():]
        if not by_file:  # a file's keys stay keys
            sentence = _NAME.sub(lambda m: self._field(m, section), sentence)
        return f"{head}: {sentence}"

    @contextmanager
    def naming(self) -> Iterator[None]:
        """Errors raised inside name their fields as the user gave them."""
        from connector.sdk.errors import ConfigError, ConnectError

        try:
            yield
        except ConfigError as exc:
            problems = [self.rename(p) for p in exc.problems]
            message, told = str(exc), set()
            if not problems:
                message = self.rename(message)
            elif message == "; ".join(exc.problems):  # one line: each file named once
                message = "; ".join(self.rename(p, told) for p in exc.problems)
            else:
                for old, new in zip(exc.problems, problems):
                    message = message.replace(old, new, 1)
            if message == str(exc):
                raise
            raise ConfigError(message, problems) from None
        except ConnectError as exc:
            renamed = self.rename(str(exc))
            if renamed == str(exc):
                raise
            raise ConnectError(renamed) from None
