"""The command line's parser: the harness's own flags and commands, each command's connector
flags generated from the connector's schemas (:mod:`connector.harness.flags`), and the commands
installed connectors add (:mod:`connector.harness.commands`).

Only the standard library is imported here. The connectors are loaded only for a command that
needs them: ``send``, ``listen`` and ``check`` (their flags come from the connector ``--connector``
names, else the default), a connector's own command, and the top-level help.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from connector.harness.exits import EXIT_BAD_INPUT
from connector.harness.progress import add_progress_flag

#: The commands whose flags come from the connector's schemas, and the action of their operation.
SCHEMA_COMMANDS: dict[str, str | None] = {"send": "send", "listen": "listen", "check": None}
#: The longest --timeout: a year (the schema's bound for every number of seconds).
MAX_SECONDS = 31_536_000
#: ``--health-threshold``'s default: longer than a reconnect's longest wait (30 s by default), so that
#: a Listen that reconnects on its own is not restarted for it.
DEFAULT_HEALTH_THRESHOLD = 60.0


#: ``--log-format``'s choices (connector.harness.logs).
LOG_FORMATS = ("text", "json")


def log_format_of(argv: Sequence[str]) -> str:
    """The ``--log-format`` ``argv`` gives, read before it is parsed (its errors are written so too)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg.startswith("--log-format="):
            return arg.partition("=")[2]
        if arg == "--log-format" and i + 1 < len(argv):
            return argv[i + 1]
    return "text"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        from connector.harness.logs import for_people

        sys.stderr.write(for_people(f"error: {message} (see '{self.prog} --help')\n"))
        raise SystemExit(EXIT_BAD_INPUT)


def common(p: argparse.ArgumentParser, top: bool = False) -> None:
    """The flags every command takes, before or after its name: a command's own ``--verbose``
    leaves the one given before the command alone (argparse would reset it to its default)."""
    p.add_argument("--verbose", "-v", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="debug logging on stderr (never shows secrets)")
    p.add_argument("--log-format", choices=LOG_FORMATS, default="text" if top else argparse.SUPPRESS,
                   help="text (the default) or json: each line on stderr one JSON object (time, level, logger, "
                   "message), for log collectors")


def _timeout(text: str, unless: str = "; leave it out for no limit") -> float:
    from connector.harness.flagtypes import number

    value = number(text)
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_SECONDS:,} seconds (a year), "
                                         f"not {text!r}{unless}")
    return value


def _threshold(text: str) -> float:
    return _timeout(text, "")


def _port(text: str) -> int:
    """A port to listen on: 0 to 65535, written in ASCII digits, 0 taking a free one."""
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 (a free one) to 65535, not {text!r}")
    return int(text)


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is neither a flag nor a value of
    ``--log-format``, the one flag before the command that takes a value)."""
    after_flag = False
    for arg in argv:
        if not arg.startswith("-") and not after_flag:
            return arg
        after_flag = arg == "--log-format"
    return None


class _Early(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # e.g. an ambiguous --conn: the real parser says it
        raise argparse.ArgumentError(None, message)


def connector_named(argv: Sequence[str]) -> str | None:
    """The ``--connector`` of ``argv``, read before the parser is built (which needs it); None
    when not given (or not given right: the parser then says what is wrong)."""
    early = _Early(add_help=False, exit_on_error=False)
    early.add_argument("--connector")
    early.add_argument("--connection")  # so that a shortened flag is read as the parser reads it
    try:
        return early.parse_known_args(list(argv))[0].connector
    except argparse.ArgumentError:
        return None


def build_parser(prog: str = "connector", default_connector: str | None = None, *, argv: Sequence[str] = (),
                 connector_commands: dict[str, Callable[[argparse.Namespace], int]] | None = None) -> Parser:
    """The parser of the harness's commands. When ``argv`` names ``send``, ``listen`` or
    ``check``, that command gets its connector's flags (``--connector`` in ``argv``, else the only
    installed connector, else ``default_connector``); with ``connector_commands`` (filled in
    here), the parser also has every installed connector's commands. Both load the connectors.

    :raises PluginError: the connector is not installed, or its schemas give a flag that clashes.
    """
    from connector.harness.commands import add_connector_commands, connector_arg

    parser = Parser(prog=prog, description="Connectors and their local runtime harness.")
    common(parser, top=True)
    from connector import __version__

    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _harness_commands(sub, default_connector, argv)
    p = sub.add_parser("connectors", help="list the installed connectors: id, version, actions")
    p.add_argument("--json", action="store_true", help="as JSON")
    connector_arg(p, default_connector, ignored=True)
    common(p)
    if connector_commands is not None:
        connector_commands.update(add_connector_commands(sub, common, default_connector))
    return parser


def _schema_flags(p: argparse.ArgumentParser, command: str, default_connector: str | None,
                  argv: Sequence[str]) -> None:
    """``p``'s flags from the schemas of the connector ``argv`` names, when ``argv`` runs
    ``command`` (else ``p`` is not used, gets none, and no connector is loaded)."""
    p.add_argument("--connection", metavar="FILE", help="connection file (JSON, see 'describe'); the flags "
                   "below override its fields")
    if command_of(argv) != command:
        return
    from connector.harness.configs import SchemaFlags
    from connector.harness.flags import add_connector_flags
    from connector.sdk.plugins import installed_connectors

    connectors = installed_connectors()
    connector_id = connectors.resolve(connector_named(argv), default_connector)
    manifest = connectors.manifest(connector_id)
    connection, operation = add_connector_flags(p, manifest.connection_schema, manifest.operation_schema,
                                                SCHEMA_COMMANDS[command])
    p.set_defaults(schema_flags=SchemaFlags(connector_id, connection, operation))


def _send_parser(sub: Any, default_connector: str | None, argv: Sequence[str]) -> None:
    from connector.harness.commands import connector_arg

    p = sub.add_parser("send", help="the Send action: each document to the connector's endpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--message", action="append", metavar="TEXT", help="a document's text (repeatable)")
    src.add_argument("--file", action="append", metavar="PATH", help="a file sent as one document, bytes exact "
                     "(repeatable); - is standard input, all of it one document")
    src.add_argument("--lines", action="store_true", help="each line of standard input is one document")
    p.add_argument("--payload-encoding", choices=("hex", "base64"), help="each --message or line is binary given as "
                   "hex or base64 text, sent decoded (a --message that is not: exit 2, nothing sent; a line that is "
                   "not: that document's APPLICATION_ERROR)")
    p.add_argument("--repeat", type=int, metavar="N", help="send the --message or --file documents N times over")
    p.add_argument("--interval", type=_timeout, metavar="S", help="wait S seconds between documents")
    p.add_argument("--results", metavar="FILE", help="write one JSON line per document: index, status, error")
    p.add_argument("--outbox", metavar="FILE", help="durable record (SQLite) of what the endpoint confirmed: run the "
                   "same command again after a crash and only the documents not confirmed are sent")
    add_progress_flag(p)
    connector_arg(p, default_connector)
    common(p)
    _schema_flags(p, "send", default_connector, argv)


def _output_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--format", metavar="FORMAT", help=prefix + "how each document is written: json (a JSON line, the "
                   "default), payload (its payload and a newline, as mosquitto_sub), topic-payload (its topic, a space, "
                   "its payload, as mosquitto_sub -v) or a template such as '{topic} {payload:hex}' (see README)")
    p.add_argument("--output", metavar="FILE", help=prefix + "append to FILE instead of standard output; each batch "
                   "is written and fsynced before it is acknowledged")


def _service_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--health-port", type=_port, metavar="PORT", help=prefix + "serve health checks over HTTP on "
                   "PORT (0: a free one, printed): /healthz fails once disconnected longer than --health-threshold, "
                   "/readyz answers 200 once subscribed (see docs/deploy.md)")
    p.add_argument("--health-host", metavar="ADDR", help=prefix + "the address --health-port listens on (default "
                   "127.0.0.1; any other warns: metrics and state are then served to other machines)")
    p.add_argument("--health-threshold", type=_threshold, metavar="S", help=prefix + "/healthz answers 503 once the "
                   f"Listen has had no connection for S seconds (default {DEFAULT_HEALTH_THRESHOLD:g})")
    p.add_argument("--metrics", action="store_true", default=None, help=prefix + "with --health-port, also serve "
                   "/metrics in the Prometheus text format (needs prometheus_client: the 'service' extra)")


def _harness_commands(sub: Any, default_connector: str | None, argv: Sequence[str]) -> None:
    """send, listen, run, describe, check; ``argv`` gives the command run and its connector."""
    from connector.harness.commands import connector_arg

    _send_parser(sub, default_connector, argv)
    p = sub.add_parser("listen", help="the Listen action: write each document received as a JSON line")
    p.add_argument("--count", type=int, metavar="N", help="stop after N documents")
    p.add_argument("--timeout", type=_timeout, metavar="S", help="stop after S seconds")
    _output_args(p)
    _service_args(p)
    add_progress_flag(p)
    connector_arg(p, default_connector)
    common(p)
    _schema_flags(p, "listen", default_connector, argv)

    p = sub.add_parser("run", help="run any installed connector from a connection file and an operation file")
    p.add_argument("--connection", metavar="FILE", required=True, help="connection file (JSON)")
    p.add_argument("--operation", metavar="FILE", required=True, help="operation file (JSON): the Options tab")
    connector_arg(p, default_connector)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="Send: files, one document each (default: standard input)")
    p.add_argument("--lines", action="store_true", help="Send: each line of standard input is one document")
    p.add_argument("--results", metavar="FILE", help="Send: write one JSON line per document")
    p.add_argument("--outbox", metavar="FILE", help="Send: durable record of what the endpoint confirmed (see send)")
    p.add_argument("--count", type=int, metavar="N", help="Listen: stop after N documents")
    p.add_argument("--timeout", type=_timeout, metavar="S", help="Listen: stop after S seconds")
    _output_args(p, "Listen: ")
    _service_args(p, "Listen: ")
    add_progress_flag(p)
    common(p)

    p = sub.add_parser("describe", help="show the connector, its connection fields and the Options tab")
    p.add_argument("--json", action="store_true", help="the manifest with its schemas, as JSON")
    connector_arg(p, default_connector)
    common(p)

    p = sub.add_parser("check", help="test the connection: 'ok' or the reason it fails")
    connector_arg(p, default_connector)
    common(p)
    _schema_flags(p, "check", default_connector, argv)

    p = sub.add_parser("console", help="serve the local web console: each connector's Connection and Options tabs "
                       "from its schemas, and check, Send and Listen, in a browser (needs the extra 'console')")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine "
                   "only; any other prints a warning)")
    p.add_argument("--port", type=_port, default=8765, help="the port (default 8765; 0: a free one)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL; do not open a browser")
    connector_arg(p, default_connector)
    common(p)
