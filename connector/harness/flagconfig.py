"""From the parsed schema flags (:mod:`connector.harness.flags`) back to a configuration.

A configuration holds only what was given (the schema fills in the defaults when it is
validated), over what a ``--connection FILE`` held: a flag wins over its ``x-file-flag``'s file
(both at once are a usage error), which wins over its ``x-env`` variable, which wins over the
configuration file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connector.harness.flags import Flag
from connector.sdk.errors import ConfigError

if TYPE_CHECKING:
    from connector.harness.origins import Origins


def _read_first_line(path: str, what: str) -> str:
    from connector.harness.inputs import read_text  # one reader of files for the whole command line

    return read_text(path, what, first_line=True)


def _read_lines(path: str, what: str) -> list[str]:
    """Each line of a UTF-8 file, without its line end (the last line's is optional); UsageError when
    it holds none."""
    from connector.harness.exits import UsageError
    from connector.harness.inputs import read_text

    text = read_text(path, what).removeprefix("\ufeff")  # the byte-order mark some editors write first
    if not text:
        raise UsageError(f"the {what} file {path!r} is empty: give one a line")
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]


def flag_value(flag: Flag, value: Any) -> Any:
    """A parsed flag's value as the configuration holds it."""
    if flag.kind == "text-or-list":
        return value[0] if len(value) == 1 else list(value)
    if flag.kind == "map":
        return dict(value)
    if flag.kind in ("list", "pairs"):
        return [list(v) if isinstance(v, (list, tuple)) else v for v in value]
    return value


def _given(args: argparse.Namespace, flag: Flag) -> tuple[str | None, Any]:
    """How ``flag`` gives a value (``"flag"``, ``"file"``: its file flag, ``"env"``: its
    environment variable; None: it does not), and which."""
    value = getattr(args, flag.dest, None)
    path = getattr(args, flag.file_dest, None) if flag.file_dest else None
    if value is not None and path:
        raise ConfigError(f"give {flag.option} or {flag.file_option}, not both")
    if value is not None:
        return "flag", flag_value(flag, value)
    if path:
        if flag.file_lines:
            return "file", flag_value(flag, _read_lines(path, flag.title.lower()))
        return "file", _read_first_line(path, flag.title.lower())
    if flag.env and os.environ.get(flag.env):
        return "env", os.environ[flag.env]
    return None, None


def config_from_args(args: argparse.Namespace, flags: Sequence[Flag], base: Mapping[str, Any] | None = None,
                     action: str | None = None, origins: Origins | None = None) -> dict[str, Any]:
    """The configuration the flags give, over ``base`` (a ``--connection`` file's), with
    ``action`` when the flags are an operation's; ``origins`` learns which flag gave each field.
    A flag whose ``x-flag-needs`` field stays empty is a :class:`ConfigError` with the schema's message."""
    config = dict(base or {})
    for flag in flags:
        how, value = _given(args, flag)
        if how is not None:
            config[flag.field] = value
            if origins is not None:
                origins.from_flag("operation" if action else "connection", flag, how, value,
                                  getattr(args, flag.file_dest) if how == "file" and flag.file_dest else None)
    if action is not None:
        config["action"] = action
    for flag in flags:
        if getattr(args, flag.dest, None) is not None:
            for needed, message in flag.needs.items():
                if not config.get(needed):
                    raise ConfigError(message)
    return config


def secret_warnings(args: argparse.Namespace, flags: Sequence[Flag]) -> list[str]:
    """One warning per secret given on the command line, where every user can see it, saying
    what to use instead (never the secret)."""
    warnings = []
    for flag in flags:
        if flag.secret and getattr(args, flag.dest, None):
            better = " or ".join(filter(None, (flag.env and f"the environment variable {flag.env}",
                                                flag.file_option))) or "a --connection file"
            warnings.append(f"{flag.option} on the command line can be seen by other users (process list, shell "
                            f"history): use {better} instead")
    return warnings
