"""Shell completion of the command line (bash, zsh, fish) with argcomplete: its commands (the
connectors' too), its flags (a command's schema flags too) and connector ids for ``--connector``.

The shell runs the command with ``_ARGCOMPLETE`` set and the line being typed in ``COMP_LINE``;
only then is argcomplete imported (``--help`` stays fast). The parser is built from that line as
for a real run, so that ``send --ce<TAB>`` offers the flags of the connector the line names.
"""

from __future__ import annotations

import os
import shlex


def _words(line: str, point: str | None) -> list[str]:
    """The words typed so far after the program's name (unfinished quotes are taken as closed)."""
    typed = line[:int(point)] if point and point.isdigit() else line
    try:
        words = shlex.split(typed)
    except ValueError:  # an open quote
        words = typed.split()
    return words[1:]


def complete(prog: str, default_connector: str | None) -> None:
    """Answer the shell's completion request and exit (argcomplete writes the answer where the
    shell reads it)."""
    import argcomplete

    from connector.harness.parser import build_parser

    argv = _words(os.environ.get("COMP_LINE", ""), os.environ.get("COMP_POINT"))
    try:
        parser = build_parser(prog, default_connector, argv=argv, connector_commands={})
    except Exception:  # a connector that is not installed (yet typed) or broken: the harness's own flags
        parser = build_parser(prog, default_connector)
    argcomplete.autocomplete(parser)


def connector_ids(**_: object) -> list[str]:
    """The installed connectors' ids: what ``--connector`` completes to."""
    from connector.sdk.plugins import installed_connectors

    return list(installed_connectors().manifests)
