"""Flags generated from the schemas (connector.harness.flags): one per field, typed, with the
field's description as help; and the way back to a configuration (connector.harness.flagconfig)."""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from connector.harness import cli
from connector.harness.flagconfig import config_from_args, secret_warnings
from connector.harness.flags import HARNESS_FLAGS, Flag, add_connector_flags, add_schema_flags
from connector.sdk.errors import ConfigError, PluginError
from connector.sdk.manifest import Manifest
from handwritten_flags import handwritten_parsers

MANIFEST = Manifest.load("connector.mqtt")
CONNECTION, OPERATION = MANIFEST.connection_schema, MANIFEST.operation_schema
COMMANDS = ("send", "listen", "check")
#: The flags before they were generated: every one must still be there.
HANDWRITTEN = handwritten_parsers()


def build(command: str, connection: dict = CONNECTION, operation: dict = OPERATION
          ) -> tuple[cli.Parser, list[Flag], list[Flag]]:
    """A command's parser as the command line builds it: the connection's flags, and for send and
    listen the operation's for that action."""
    parser = cli.Parser(prog=f"mqtt-connector {command}")
    connection_flags, operation_flags = add_connector_flags(parser, connection, operation,
                                                            None if command == "check" else command)
    return parser, connection_flags, operation_flags


def parse(command: str, *argv: str, base: dict | None = None) -> tuple[dict, dict]:
    parser, connection_flags, operation_flags = build(command)
    if command != "check" and "--topic" not in argv:
        argv = (*argv, "--topic", "a/b")
    args = parser.parse_args(argv)
    return (config_from_args(args, connection_flags, base),
            config_from_args(args, operation_flags, action=command) if operation_flags else {})


def usage_error(capsys: pytest.CaptureFixture[str], command: str, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        parse(command, *argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def fields_for(command: str) -> dict[str, dict[str, Any]]:
    """The fields a command's flags must cover: every connection field, and the operation's for
    the action (those the schema lets it set: Retained is Send's only)."""
    fields = {f"connection.{name}": prop for name, prop in CONNECTION["properties"].items()}
    if command != "check":
        fields |= {f"operation.{name}": prop for name, prop in OPERATION["properties"].items()
                   if command in prop.get("x-actions", [command]) and name != "action"
                   and not (command == "listen" and name == "retained")}
    return fields


# -- every field has one flag, its help the field's description -------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_every_field_has_exactly_one_flag_whose_help_is_its_description(command: str) -> None:
    parser, connection_flags, operation_flags = build(command)
    by_dest = {a.dest: a for a in parser._actions}
    flags = {f"connection.{f.field}": f for f in connection_flags} | {f"operation.{f.field}": f for f in operation_flags}
    expected = fields_for(command)
    assert sorted(flags) == sorted(expected)
    options = [o for a in parser._actions for o in a.option_strings]
    assert len(options) == len(set(options))
    for name, prop in expected.items():
        action = by_dest[flags[name].dest]
        assert action.option_strings == [flags[name].option], name
        assert action.help == prop["description"], name
    assert parser.format_help()  # every help text formats


def test_the_fields_without_a_flag_until_now_have_one() -> None:
    options = {a.option_strings[0] for a in build("send")[0]._actions}
    assert {"--ack-timeout", "--max-inflight", "--keep-alive", "--connect-timeout", "--max-packet-size",
            "--reconnect-delay", "--reconnect-max-delay"} <= options


def test_help_shows_the_description_as_it_is_with_the_default_after_it() -> None:
    schema = {"properties": {"rate": {"type": "integer", "description": "100% of 5 %(prog)s", "default": 7}}}
    parser = argparse.ArgumentParser(prog="x")
    add_schema_flags(parser, schema)
    (action,) = [a for a in parser._actions if a.dest == "rate"]
    assert action.help == "100% of 5 %(prog)s"
    assert "100% of 5 %(prog)s (default: 7)" in " ".join(parser.format_help().split())


def test_a_secret_flag_names_its_environment_variable_in_the_help() -> None:
    text = " ".join(build("check")[0].format_help().split())
    assert "Password for the user name. Never shown in any output. (or the environment variable MQTT_PASSWORD)" in text
    assert "for this client ID. (this flag turns Clean Session off)" in text  # --persistent


# -- today's command lines keep working -------------------------------------------------------

PROBES = ("1", "2", "1.5", "x", "nan", "a=1", "5")


def _accepts(action: argparse.Action) -> tuple[bool, ...]:
    """Which probe values an action takes (its type, then its choices)."""
    def ok(text: str) -> bool:
        try:
            value = action.type(text) if action.type else text
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            return False
        return action.choices is None or value in action.choices

    return tuple(ok(p) for p in PROBES) if action.nargs != 0 else ()


def _shape(action: argparse.Action, one_of: frozenset[argparse.Action] = frozenset()) -> tuple[Any, ...]:
    """``one_of``: the actions of required groups (one of the group is required: ``--topic`` or ``--topic-file``)."""
    repeats = isinstance(action, argparse._AppendAction)
    choices = list(action.choices) if action.choices is not None else None
    return action.nargs, repeats, choices, action.required or action in one_of, _accepts(action)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_of_todays_command_line_is_generated_with_the_same_type(command: str) -> None:
    today = HANDWRITTEN[command]
    parser = build(command)[0]
    generated = {o: a for a in parser._actions for o in a.option_strings}
    one_of = frozenset(a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions)
    for action in today._actions:
        for option in action.option_strings:
            if option in HARNESS_FLAGS:
                continue
            assert option in generated, f"{command} {option} is gone"
            assert _shape(generated[option], one_of) == _shape(action), f"{command} {option}"



def _readme_commands() -> list[list[str]]:
    """The send, listen and check command lines of README.md, as argument lists."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if not line.startswith("$ "):  # a console line (others may hold a lone quote)
            continue
        words = shlex.split(line.partition("mqtt-connector ")[2], comments=True)
        if words and words[0] in COMMANDS:
            commands.append(list(itertools.takewhile(lambda w: w not in ("&", "<", "|"), words)))
    return commands


def _harness_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags the send and listen commands take beside the schemas' (as the parser has them)."""
    if command == "send":
        for flag in ("--message", "--file"):
            parser.add_argument(flag, action="append")
        parser.add_argument("--lines", action="store_true")
        parser.add_argument("--results")
        parser.add_argument("--outbox")
        # since 0.1.0: how documents given as text are read, and test traffic
        parser.add_argument("--payload-encoding")
        parser.add_argument("--repeat", type=int)
        parser.add_argument("--interval", type=float)
    if command == "listen":
        parser.add_argument("--count", type=int)
        parser.add_argument("--timeout", type=float)
        parser.add_argument("--format")  # since 0.1.0: how documents are written, and where
        parser.add_argument("--output")
        for flag in ("--health-port", "--health-host", "--health-threshold"):  # as a service (docs/deploy.md)
            parser.add_argument(flag)
        parser.add_argument("--metrics", action="store_true")


@pytest.mark.parametrize("argv", _readme_commands(), ids=" ".join)
def test_the_readme_command_lines_give_what_they_gave(argv: list[str]) -> None:
    command, rest = argv[0], argv[1:]
    today = handwritten_parsers(_harness_flags)[command]
    parser, connection_flags, operation_flags = build(command)
    _harness_flags(parser, command)
    before, after = today.parse_args(rest), parser.parse_args(rest)
    generated = {o: a.dest for a in parser._actions for o in a.option_strings}
    for action in today._actions:
        if action.option_strings[0] in HARNESS_FLAGS or getattr(before, action.dest) is None:
            continue
        given, value = getattr(after, generated[action.option_strings[0]]), getattr(before, action.dest)
        assert (given is not None) == value if action.nargs == 0 else given == value, action.dest
    MANIFEST.validate_connection(config_from_args(after, connection_flags))
    if operation_flags:
        MANIFEST.validate_operation(config_from_args(after, operation_flags, action=command))

# -- each kind of field, there and back --------------------------------------------------------

def test_nothing_given_gives_an_empty_configuration_the_schema_fills_in() -> None:
    connection, operation = parse("send")
    assert connection == {}
    assert operation == {"action": "send", "topic": "a/b"}
    assert MANIFEST.validate_connection(connection)["port"] == 1883


@pytest.mark.parametrize(("argv", "connection"), [
    (["--host", "broker.example", "--client-id", "a b"], {"host": "broker.example", "client_id": "a b"}),
    (["--port", "8883", "--keep-alive", "5", "--max-inflight", "7"], {"port": 8883, "keep_alive": 5, "max_inflight": 7}),
    (["--ack-timeout", "2.5", "--wait-for-broker", "0", "--connect-timeout", "1e3"],
     {"ack_timeout": 2.5, "wait_for_broker": 0.0, "connect_timeout": 1000.0}),
    (["--tls", "--will-retained"], {"tls": True, "will_retained": True}),
    (["--persistent", "--client-id", "me"], {"clean_session": False, "client_id": "me"}),
    (["--protocol", "5", "--transport", "websockets", "--will-qos", "2"],
     {"protocol": "5", "transport": "websockets", "will_qos": 2}),
    (["--failover", "b:1", "--failover", "c:2"], {"failover": ["b:1", "c:2"]}),
    (["--failover", "b:1"], {"failover": ["b:1"]}),
])
def test_connection_flags_give_typed_fields(argv: list[str], connection: dict) -> None:
    assert parse("check", *argv)[0] == connection
    MANIFEST.validate_connection(connection)


@pytest.mark.parametrize(("command", "argv", "operation"), [
    ("send", ["--qos", "1", "--retained"], {"qos": 1, "retained": True}),
    ("send", ["--user-property", "k=v", "--user-property", "k=a=b", "--user-property", "e="],
     {"user_properties": [["k", "v"], ["k", "a=b"], ["e", ""]]}),
    ("send", ["--message-expiry", "60", "--payload-format-indicator", "1", "--stamp-id"],
     {"message_expiry_interval": 60, "payload_format_indicator": 1, "stamp_id": True}),
    ("listen", ["--topic", "a/#"], {"topic": "a/#"}),
    ("listen", ["--topic", "a/#", "--topic", "b"], {"topic": ["a/#", "b"]}),
    ("listen", ["--filter-qos", "a/#=2", "--filter-qos", "b=0", "--filter-qos", "a/#=1"],
     {"filter_qos": {"a/#": 1, "b": 0}}),
    ("listen", ["--retry-delay", "0.25", "--max-attempts", "5", "--no-local"],
     {"retry_delay": 0.25, "max_attempts": 5, "no_local": True}),
])
def test_operation_flags_give_typed_fields(command: str, argv: list[str], operation: dict) -> None:
    given = parse(command, *argv)[1]
    assert given == {"action": command, "topic": "a/b", **operation}
    MANIFEST.validate_operation(given)


@pytest.mark.parametrize(("command", "argv", "words"), [
    ("check", ["--port", "x"], "argument --port: invalid int value: 'x'"),
    ("check", ["--port", "1.5"], "argument --port: invalid int value: '1.5'"),
    ("check", ["--ack-timeout", "nan"], "argument --ack-timeout: must be a finite number, not 'nan'"),
    ("check", ["--ack-timeout", "inf"], "argument --ack-timeout: must be a finite number, not 'inf'"),
    ("check", ["--wait-for-broker=-inf"], "argument --wait-for-broker: must be a finite number"),
    ("check", ["--connect-timeout", "1e999"], "argument --connect-timeout: must be a finite number, not '1e999'"),
    ("check", ["--connect-timeout", "soon"], "argument --connect-timeout: invalid float value: 'soon'"),
    ("check", ["--protocol", "4"], "argument --protocol: invalid choice: '4'"),
    ("send", ["--qos", "3"], "argument --qos: invalid choice: 3"),
    ("send", ["--qos", "x"], "argument --qos: invalid int value: 'x'"),
    ("send", ["--user-property", "novalue"], "argument --user-property: 'novalue' is not KEY=VALUE"),
    ("listen", ["--filter-qos", "a/#"], "argument --filter-qos: 'a/#' is not KEY=VALUE"),
    ("listen", ["--filter-qos", "a/#=3"], "'a/#=3': the value after '=' must be one of 0, 1, 2"),
    ("listen", ["--filter-qos", "a/#=x"], "'a/#=x': the value after '=' must be one of 0, 1, 2"),
    ("listen", ["--filter-qos", "a/#=1.0"], "'a/#=1.0': the value after '=' must be one of 0, 1, 2"),
    ("listen", ["--retained"], "unrecognized arguments: --retained"),
    ("send", ["--no-local"], "unrecognized arguments: --no-local"),
    ("check", ["--topic", "a"], "unrecognized arguments: --topic a"),
])
def test_a_bad_value_is_one_usage_line(capsys: pytest.CaptureFixture[str], command: str, argv: list[str],
                                       words: str) -> None:
    assert words in usage_error(capsys, command, *argv)


def test_a_required_field_is_a_required_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build("send")[0]
    with pytest.raises(SystemExit):
        parser.parse_args(["--qos", "1"])
    assert "one of the arguments --topic --topic-file is required" in capsys.readouterr().err


def test_persistent_needs_a_client_id_from_a_flag_or_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^--persistent needs a stable --client-id, so that the broker can find "
                                          r"the session again$"):
        parse("listen", "--persistent")
    assert parse("listen", "--persistent", base={"client_id": "from-file"})[0] == {
        "client_id": "from-file", "clean_session": False}


def test_flags_override_the_connection_file() -> None:
    base = {"host": "file", "port": 1, "tls": True}
    assert parse("check", "--port", "2", base=base)[0] == {"host": "file", "port": 2, "tls": True}
    assert base == {"host": "file", "port": 1, "tls": True}  # not changed


# -- secrets: flag, then file, then environment, then --connection file -----------------------

@pytest.mark.parametrize(("env", "argv", "base", "password"), [
    ({}, [], {"password": "file"}, "file"),
    ({"MQTT_PASSWORD": "env"}, [], {"password": "file"}, "env"),
    ({"MQTT_PASSWORD": ""}, [], {"password": "file"}, "file"),
    ({"MQTT_PASSWORD": "env"}, ["--password", "flag"], {"password": "file"}, "flag"),
    ({"MQTT_PASSWORD": "env"}, ["--password-file", "@pw"], {}, "first line"),
])
def test_a_password_comes_from_the_flag_its_file_the_environment_or_the_connection_file(
        env: dict, argv: list[str], base: dict, password: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any) -> None:
    monkeypatch.delenv("MQTT_PASSWORD", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "pw").write_text("first line\nsecond\n")
    argv = [str(tmp_path / "pw") if a == "@pw" else a for a in argv]
    assert parse("check", *argv, base=base)[0]["password"] == password


def test_the_key_passphrase_comes_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_KEY_PASSWORD", "phrase")
    assert parse("check")[0] == {"key_password": "phrase"}
    assert parse("check", "--key-password", "flag")[0] == {"key_password": "flag"}


def test_password_and_password_file_together_are_refused(tmp_path: Any) -> None:
    (tmp_path / "pw").write_text("x\n")
    with pytest.raises(ConfigError, match="^give --password or --password-file, not both$"):
        parse("check", "--password", "p", "--password-file", str(tmp_path / "pw"))


def test_a_secret_on_the_command_line_is_warned_about_without_showing_it() -> None:
    parser, connection_flags, _ = build("check")
    args = parser.parse_args(["--password", "s3cret", "--key-password", "k3y", "--username", "u"])
    warnings = secret_warnings(args, connection_flags)
    assert warnings == [
        "--password on the command line can be seen by other users (process list, shell history): use the "
        "environment variable MQTT_PASSWORD or --password-file instead",
        "--key-password on the command line can be seen by other users (process list, shell history): use the "
        "environment variable MQTT_KEY_PASSWORD instead"]


# -- a new field needs no code; a flag the harness uses is refused ------------------------------

NEW = {"type": "object", "properties": {
    "batch_size": {"type": "integer", "description": "Documents per batch.", "default": 10},
    "mode": {"description": "How.", "oneOf": [{"const": "fast"}, {"const": "safe"}], "default": "safe"},
    "verify": {"type": "boolean", "description": "Check certificates.", "default": True},
    "weights": {"type": "object", "description": "Weight per key.", "additionalProperties": {"type": "number"}},
    "extra": {"type": "object", "description": "Anything else, as JSON."},
    "root_dir": {"type": "string", "description": "Where.", "x-flag": "--root", "x-metavar": "DIR"},
}}


def test_a_new_field_gets_its_flag_without_code() -> None:
    parser = argparse.ArgumentParser()
    flags = add_schema_flags(parser, NEW)
    assert [f.option for f in flags] == ["--batch-size", "--mode", "--no-verify", "--weights", "--extra", "--root"]
    args = parser.parse_args(["--batch-size", "3", "--mode", "fast", "--no-verify", "--weights", "a=0.5",
                              "--extra", '{"k": [1]}', "--root", "/srv"])
    assert config_from_args(args, flags) == {"batch_size": 3, "mode": "fast", "verify": False, "weights": {"a": 0.5},
                                             "extra": {"k": [1]}, "root_dir": "/srv"}
    assert config_from_args(parser.parse_args([]), flags) == {}
    with pytest.raises(SystemExit):
        parser.parse_args(["--weights", "a=nan"])


@pytest.mark.parametrize("flag", sorted(HARNESS_FLAGS - {"-h", "-v"}))
def test_a_field_taking_a_flag_of_the_harness_is_a_plugin_error_naming_it(flag: str) -> None:
    schema = {"properties": {"my_field": {"type": "string", "description": "d", "x-flag": flag}}}
    with pytest.raises(PluginError, match=f"field 'my_field' would take the flag {flag}, which the command line"):
        add_schema_flags(argparse.ArgumentParser(), schema)


@pytest.mark.parametrize(("schema", "words"), [
    ({"properties": {"timeout": {"type": "number", "description": "d"}}}, "field 'timeout' would take the flag --timeout"),
    ({"properties": {"count": {"type": "integer", "description": "d", "x-flag": "--n"}}},
     "field 'count' is named like the command line's own 'count'"),
    ({"properties": {"a": {"type": "string", "description": "d", "x-flag": "-a"}}}, "field 'a' has the flag '-a'"),
    ({"properties": {"a": {"type": "string", "description": "d"},
                     "b": {"type": "string", "description": "d", "x-flag": "--a"}}}, "field 'b' would take the flag --a"),
])
def test_a_flag_that_collides_or_is_no_flag_is_a_plugin_error(schema: dict, words: str) -> None:
    with pytest.raises(PluginError, match=words):
        add_schema_flags(argparse.ArgumentParser(), schema)


def test_a_connection_and_an_operation_field_with_one_flag_is_a_plugin_error() -> None:
    operation = {"properties": {"action": {"const": "send"},
                                "host": {"type": "string", "description": "Where to send."}}}
    with pytest.raises(PluginError, match="operation field 'host' would take the flag --host, which 'host' has"):
        build("send", operation=operation)



# -- the command line itself ---------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_the_command_line_has_a_flag_for_every_field_with_its_description_as_help(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser("mqtt-connector", "mqtt", argv=[command, "--help"])
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    by_option = {o: a for a in sub._actions for o in a.option_strings}
    _, connection_flags, operation_flags = build(command)
    for flag in connection_flags + operation_flags:
        assert by_option[flag.option].help == flag.prop["description"], flag.option
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    shown = capsys.readouterr().out
    assert all(re.search(rf"^  {re.escape(flag.option)}[ \n]", shown, re.MULTILINE)
               for flag in connection_flags + operation_flags)
    assert {"--ack-timeout", "--max-inflight", "--keep-alive"} <= set(by_option)
