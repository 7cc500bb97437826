"""The harness's command line (see README.md and ../shared/CONTRACT.md): ``main``.

An entry point outside the harness (``connector/__main__.py``) gives it its program name and
default connector. Only the standard library is imported at start-up; each command imports what
it needs, so ``--version`` and ``--help`` answer at once. ``send``, ``listen`` and ``check`` take
their connector's flags, generated from its schemas (:mod:`connector.harness.parser`); installed
connectors add their own commands (:mod:`connector.harness.commands`).

The parts: :mod:`~connector.harness.parser` (flags and commands), :mod:`~connector.harness.runs`
(the commands), :mod:`~connector.harness.configs` (connection and operation from flags and
files), :mod:`~connector.harness.inputs` (files, documents, outputs),
:mod:`~connector.harness.reports` (summaries, results file), :mod:`~connector.harness.logs`
(logging that masks secrets), :mod:`~connector.harness.exits` (exit codes).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from connector.harness.exits import EXIT_BAD_INPUT, EXIT_CLOSED, EXIT_CONNECT, EXIT_FAILED, UsageError
from connector.harness.parser import Parser, build_parser, log_format_of

__all__ = ["Parser", "build_parser", "main"]


def _utf8_streams() -> None:
    """Everything printed is UTF-8, whatever PYTHONIOENCODING or the locale say (the JSON lines of a
    Listen and the reports bypass these streams; this covers help, errors and log lines)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(encoding="utf-8", errors="backslashreplace")
            except (OSError, ValueError):
                pass


def _parse(argv: list[str], default_connector: str | None, prog: str,
           commands: dict[str, Callable[[argparse.Namespace], int]]) -> argparse.Namespace | None:
    """The parsed arguments (the connectors' commands added to ``commands`` when needed); None
    (and the help) when no command is given. argparse exits on --help, --version, a bad flag."""
    from connector.harness.commands import needs_connector_commands

    parser = build_parser(prog, default_connector, argv=argv,
                          connector_commands=commands if needs_connector_commands(argv) else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return None
    args.default_connector = default_connector
    return args


def main(argv: Sequence[str] | None = None, *, default_connector: str | None = None, prog: str = "connector") -> int:
    """Run one command; ``default_connector`` is the connector used when several are installed and
    ``--connector`` is not given, ``prog`` the name the command line goes by."""
    from connector.harness.runs import COMMANDS

    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (connector.harness.completion)
        from connector.harness.completion import complete

        complete(prog, default_connector)
    _utf8_streams()
    argv = list(sys.argv[1:] if argv is None else argv)
    if log_format_of(argv) == "json":  # the parser's own errors too
        from connector.harness.logs import use_json

        use_json()
    commands: dict[str, Callable[[argparse.Namespace], int]] = dict(COMMANDS)
    try:
        args = _parse(argv, default_connector, prog, commands)
    except Exception as exc:  # an installed connector is broken, or not installed (PluginError: exit 2)
        return _fail_known(exc, "--verbose" in argv or "-v" in argv)
    if args is None:
        return EXIT_BAD_INPUT
    from connector.harness.logs import setup_logging

    setup_logging(args.verbose, args.log_format)
    try:
        return _run(commands[args.command], args)
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    except UsageError as exc:
        return _fail(EXIT_BAD_INPUT, str(exc))
    except BrokenPipeError:  # the reader of stdout went away (describe | head -1): quietly, as Unix tools do
        from connector.harness.output import silence

        silence(1)
        return EXIT_CLOSED
    except Exception as exc:
        return _fail_known(exc, args.verbose)


def _run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from connector.harness.inputs import check_text_args

    flags = getattr(args, "schema_flags", None)
    check_text_args(args, flags.options() if flags else None, flags.files() if flags else None)
    return command(args)


def _fail(code: int, message: str) -> int:
    from connector.harness.logs import for_people, mask

    sys.stderr.write(for_people(f"error: {mask(message)}\n"))
    return code


def _fail_known(exc: Exception, verbose: bool) -> int:
    from connector.harness.output import OutputError, output_failed
    from connector.sdk.errors import ConfigError, ConnectError, PluginError

    if isinstance(exc, OutputError):  # a command's answer on standard output (print_out)
        return output_failed(exc, _fail)
    if isinstance(exc, ConfigError | PluginError):
        return _fail(EXIT_BAD_INPUT, str(exc))
    if isinstance(exc, ConnectError):
        return _fail(EXIT_CONNECT, str(exc))
    if verbose:
        import logging

        logging.getLogger("connector").exception("unexpected failure")
    return _fail(EXIT_FAILED, f"unexpected failure: {type(exc).__name__}: {exc} (run with --verbose for details)")
