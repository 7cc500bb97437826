"""The command line's connector-neutral parts: which connector a command uses (``--connector``),
the commands installed connectors add (``connector_commands``), and ``connectors``.

Only the standard library is imported at start-up; the connectors are loaded when a command
needs them (the harness's own commands load them when they run).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

#: The harness's own commands: a connector's command of the same name is refused.
HARNESS_COMMANDS = ("send", "listen", "run", "check", "describe", "connectors", "console")


def connector_arg(p: argparse.ArgumentParser, default: str | None, ignored: bool = False) -> None:
    """``--connector ID`` (every command takes it)."""
    if ignored:
        text = "accepted for uniformity; every installed connector is listed"
    else:
        text = "connector id (default: the only installed connector" + (f", else {default})" if default else ")")
    from connector.harness.completion import connector_ids

    action = p.add_argument("--connector", metavar="ID", default=None, help=text)
    action.completer = connector_ids  # type: ignore[attr-defined]  # read by argcomplete


def runtime(args: argparse.Namespace) -> Any:
    """The Runtime a command runs with (its default connector is the entry point's)."""
    from connector.harness.runtime import Runtime

    return Runtime(default_connector=getattr(args, "default_connector", None))


def needs_connector_commands(argv: list[str]) -> bool:
    """Whether the parser must know the connectors' commands: not for the harness's own commands
    (so that ``send --help`` loads no connector) nor ``--version``; for anything else, top-level
    help included (it lists them)."""
    from connector.harness.parser import command_of

    command = command_of(argv)
    if command is None:
        return "--version" not in argv
    return command not in HARNESS_COMMANDS


def add_connector_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None],
                           default: str | None) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add every installed connector's commands as subcommands; return their runners by name.

    :raises PluginError: a command's name is one of the harness's or another connector's, or its
        flags clash with the ones every command has.
    """
    from connector.sdk.errors import PluginError
    from connector.sdk.plugins import installed_connectors

    connectors = installed_connectors()
    owners: dict[str, str] = {}
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    for connector_id in connectors.manifests:
        for command in connectors.get(connector_id).commands():
            if command.name in HARNESS_COMMANDS:
                raise PluginError(f"the connector {connector_id!r} adds a command {command.name!r}, which is the "
                                  f"harness's own {command.name!r} command: rename it")
            if command.name in owners:
                raise PluginError(f"the connectors {owners[command.name]!r} and {connector_id!r} both add a command "
                                  f"{command.name!r}")
            owners[command.name] = connector_id
            p = sub.add_parser(command.name, help=command.help)
            try:
                command.add_arguments(p)
                common(p)
                connector_arg(p, default)
                if command.connection:
                    _connection_flags(p, connector_id, connectors.manifest(connector_id))
            except argparse.ArgumentError as exc:
                raise PluginError(f"the connector {connector_id!r}'s command {command.name!r} is broken: {exc}") from None
            runners[command.name] = _runner(connector_id, command.name, command.run, command.connection)
    return runners


def _connection_flags(p: argparse.ArgumentParser, connector_id: str, manifest: Any) -> None:
    """A connector command's connection flags, as ``check`` has them."""
    from connector.harness.configs import SchemaFlags
    from connector.harness.flags import add_connector_flags

    p.add_argument("--connection", metavar="FILE", help="connection file (JSON, see 'describe'); the flags "
                   "below override its fields")
    connection, _ = add_connector_flags(p, manifest.connection_schema)
    p.set_defaults(schema_flags=SchemaFlags(connector_id, connection))


def _runner(owner: str, name: str, run: Callable[[argparse.Namespace], int],
            connection: bool = False) -> Callable[[argparse.Namespace], int]:
    def run_for_owner(args: argparse.Namespace) -> int:
        if args.connector is not None and args.connector != owner:
            from connector.sdk.errors import ConfigError

            runtime(args).connectors.manifest(args.connector)  # not installed: says which are
            raise ConfigError(f"the command {name!r} comes from the connector {owner!r}, not {args.connector!r}")
        if connection:
            from connector.harness.configs import connection_from_args

            given = connection_from_args(args, args.schema_flags)
            args.connection_config = runtime(args).validate(given, None, None, owner)[0]
        from connector.harness.output import answering

        with answering():  # what the command prints goes out whole, or fails in one line
            return run(args)

    return run_for_owner


def cmd_connectors(args: argparse.Namespace) -> int:
    """One line per installed connector: id, version, actions (``--json``: a JSON list)."""
    connectors = runtime(args).connectors
    listed = []
    for connector_id, manifest in connectors.manifests.items():
        commands = [c.name for c in connectors.get(connector_id).commands()]
        listed.append({"id": connector_id, "name": manifest.name, "version": manifest.version,
                       "actions": list(manifest.actions), "commands": commands})
    from connector.harness.output import print_out

    if args.json:
        print_out(json.dumps(listed, indent=2, ensure_ascii=False))
        return 0
    if not listed:
        import sys

        sys.stderr.write("no connector is installed\n")
    for entry in listed:
        line = f"{entry['id']} {entry['version']}: {', '.join(entry['actions'])}"
        if entry["commands"]:
            line += f" (commands: {', '.join(entry['commands'])})"
        print_out(line)
    return 0
