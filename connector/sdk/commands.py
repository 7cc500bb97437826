"""What a connector adds to a runtime's command line (:func:`connector_commands`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One subcommand: ``<prog> NAME ...``.

    :param name: the subcommand's name; it must not clash with the runtime's own commands.
    :param help: one line for the runtime's ``--help``.
    :param add_arguments: adds the command's flags to its parser (import nothing heavy here).
    :param run: runs the command with the parsed arguments and returns its exit code; raises
        ConfigError for bad input (exit 2), ConnectError when its endpoint cannot be reached or
        served (exit 3).
    :param connection: the command talks to the connector's endpoint: the runtime adds the
        connection flags (those of ``check``, from the connection schema, with ``--connection
        FILE``) and hands ``run`` the validated connection as ``args.connection_config``.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    connection: bool = False
