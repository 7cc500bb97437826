"""A command's connection and operation, from its connector's schema flags
(:mod:`connector.harness.flags`) over a ``--connection FILE``; every secret they hold is masked
from then on (:mod:`connector.harness.logs`) and one given where others can see it is warned about."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.harness.exits import UsageError
from connector.harness.flags import Flag

# The parser imports this module for SchemaFlags before any command runs (``--help`` too): what
# only running a command needs (logging, files) is imported by the functions that use it.


@dataclass(frozen=True)
class SchemaFlags:
    """The flags a command (send, listen, check) has from its connector's schemas."""

    connector: str
    connection: Sequence[Flag]
    operation: Sequence[Flag] = ()

    def options(self) -> dict[str, str]:
        """Each flag's option by the attribute it sets (``user_properties``: ``--user-property``)."""
        return {f.dest: f.option for f in (*self.connection, *self.operation)}

    def files(self) -> dict[str, str]:
        """The flags whose value names a file (``x-metavar`` FILE, and every ``x-file-flag``), by attribute."""
        found = {}
        for f in (*self.connection, *self.operation):
            if f.prop.get("x-metavar") == "FILE":
                found[f.dest] = f.option
            if f.file_option and f.file_dest:
                found[f.file_dest] = f.file_option
        return found


def _secrets(flags: Iterable[Flag]) -> set[str]:
    return {f.field for f in flags if f.secret}


def remember_secrets(config: Any, secrets: Iterable[str]) -> None:
    """Mask every secret field of a configuration (the fields its schema marks writeOnly)."""
    from connector.harness.logs import remember_secret

    if isinstance(config, dict):
        for name in secrets:
            remember_secret(config.get(name))


def holds_secret(config: Any, secrets: Iterable[str]) -> bool:
    return isinstance(config, dict) and any(isinstance(config.get(name), str) and config[name] for name in secrets)


def connection_from_args(args: argparse.Namespace, flags: SchemaFlags) -> dict[str, Any]:
    """The ``--connection FILE`` with the connection flags over it (and the environment
    variables the schema names for secrets)."""
    from connector.harness.flagconfig import config_from_args
    from connector.harness.inputs import load_json_file

    config: dict[str, Any] = {}
    if args.connection:
        loaded = load_json_file(args.connection, "connection")
        if not isinstance(loaded, dict):
            raise UsageError(f"the connection file {args.connection!r} must hold a JSON object")
        config.update(loaded)
    secrets = _secrets(flags.connection)
    remember_secrets(config, secrets)  # masked at once, even if the file turns out to be invalid
    file_secret = holds_secret(config, secrets)
    config = config_from_args(args, flags.connection, base=config)
    remember_secrets(config, secrets)
    warn_exposed_secrets(args, config, file_secret, flags.connection)
    return config


def operation_from_args(args: argparse.Namespace, flags: SchemaFlags) -> dict[str, Any]:
    """The operation the operation flags give, for the command's action."""
    from connector.harness.flagconfig import config_from_args

    return config_from_args(args, flags.operation, action=args.command)


def warn_exposed_secrets(args: argparse.Namespace, config: Any, file_secret: bool, flags: Sequence[Flag]) -> None:
    """One warning line per secret others can see, as ssh and mysql clients give (never the
    secret): a secret on the command line is in the process list of every user; a file that
    holds one (a secret's file flag, a connection file, a field marked ``x-secret-file``) should
    be readable by its owner only."""
    import logging

    from connector.harness.flagconfig import secret_warnings

    warn = logging.getLogger("connector.harness").warning
    for line in secret_warnings(args, flags):
        warn(line)
    given = config if isinstance(config, Mapping) else {}
    paths = [(getattr(args, f.file_dest, None), f"{f.title.lower()} file {{!r}}") for f in flags if f.file_dest]
    paths.append((args.connection if file_secret else None, "connection file {!r} holds a secret and"))
    paths += [(given.get(f.field), f"{f.title.lower()} {{!r}}") for f in flags if f.prop.get("x-secret-file")]
    for path, what in paths:
        try:
            readable = bool(path) and os.stat(path).st_mode & 0o044
        except (OSError, TypeError, ValueError):
            continue  # reading it reports the problem
        if readable:
            import shlex

            warn(f"the {what.format(path)} can be read by other users: chmod 600 {shlex.quote(path)}")
