"""What the command line says to people: the global ``-v``, documents numbered as the user counts
them, errors naming the flag (or file key, or environment variable) the value came from, the
warning for ``$`` topics, and shell completion."""

from __future__ import annotations

import pytest

from connector.harness.parser import build_parser
from connector.mqtt.broker import free_port
from clirun import run_cli

#: What each command needs to parse (its required flags).
REQUIRED = {"send": ["--topic", "t", "--message", "m"], "listen": ["--topic", "t"],
            "run": ["--connection", "c.json", "--operation", "o.json"]}


def _commands() -> list[str]:
    parser = build_parser("mqtt-connector", "mqtt", connector_commands={})
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


# -- the global -v -----------------------------------------------------------------------------

def test_every_command_is_listed() -> None:
    assert {"send", "listen", "run", "check", "describe", "connectors", "broker", "demo"} <= set(_commands())


@pytest.mark.parametrize("where", ["before", "after", "absent"])
@pytest.mark.parametrize("flag", ["-v", "--verbose"])
def test_verbose_before_or_after_every_command(where: str, flag: str) -> None:
    for command in _commands():
        argv = [command, *REQUIRED.get(command, [])]
        argv = {"before": [flag, *argv], "after": [*argv, flag], "absent": argv}[where]
        args = build_parser("mqtt-connector", "mqtt", argv=argv, connector_commands={}).parse_args(argv)
        assert args.verbose is (where != "absent"), (command, argv)


def test_verbose_before_the_command_logs_debug() -> None:
    done = run_cli("-v", "check", "--port", str(free_port()), "--connect-timeout", "2")
    err = done.stderr.decode()
    assert done.returncode == 3, err
    assert "DEBUG" in err and "Traceback" not in err
