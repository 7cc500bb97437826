# PYTHON_ARGCOMPLETE_OK (shell completion: argcomplete's global activation looks for this mark)
"""The ``mqtt-connector`` command (console script and ``python -m connector``): the harness's
command line, named for this distribution, with the MQTT connector as its default."""

from __future__ import annotations

from collections.abc import Sequence

#: The connector a command uses when several are installed and ``--connector`` is not given.
DEFAULT_CONNECTOR = "mqtt"
PROG = "mqtt-connector"


def main(argv: Sequence[str] | None = None) -> int:
    from connector.harness.cli import main as harness_main

    return harness_main(argv, default_connector=DEFAULT_CONNECTOR, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
