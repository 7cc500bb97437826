"""What the command line says to people: the global ``-v``, documents numbered as the user counts
them, errors naming the flag (or file key, or environment variable) the value came from, the
warning for ``$`` topics, and shell completion."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from connector.harness.cli import main
from connector.harness.completion import _words
from connector.harness.inputs import document_namer, ordinal
from connector.harness.parser import build_parser
from connector.harness.reports import report_send
from connector.harness.runtime import Runtime
from connector.mqtt.broker import BrokerThread, free_port
from connector.sdk.documents import Document, Result, Status
from clirun import run_cli

#: What each command needs to parse (its required flags).
REQUIRED = {"send": ["--topic", "t", "--message", "m"], "listen": ["--topic", "t"],
            "run": ["--connection", "c.json", "--operation", "o.json"], "clear-retained": ["--topic", "t"]}


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


# -- documents numbered as the user counts them ------------------------------------------------

#: Packets of at most this many bytes: a longer document is refused (APPLICATION_ERROR), no broker needed for it.
SMALL = ["--max-packet-size", "100"]
LONG = "x" * 300


def _errors(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.decode().splitlines() if line.startswith("error:")]


def test_a_line_is_named_by_its_number_from_1(broker: BrokerThread, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    done = run_cli("send", *_at(broker), "--topic", "numbered/lines", *SMALL, "--lines", "--results", str(results),
                   input=f"a\n{LONG}\nb\n".encode())
    assert done.returncode == 1, done.stderr
    assert [e.split(": APPLICATION_ERROR")[0] for e in _errors(done)] == ["error: document 2 (line 2)"]
    # the results file keeps its 0-based index (CONTRACT.md)
    assert [json.loads(line)["index"] for line in results.read_text().splitlines()] == [0, 1, 2]


def test_a_file_and_a_message_are_named_as_given(broker: BrokerThread, tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("a")
    # a pipe is not measured before it is read: the connector refuses it as too large
    done = run_cli("send", *_at(broker), "--topic", "numbered/files", *SMALL, "--file", str(small), "--file",
                   "/dev/stdin", input=LONG.encode())
    assert [e.split(": APPLICATION_ERROR")[0] for e in _errors(done)] == ["error: document 2 (file '/dev/stdin')"]
    messages = [a for m in ("a", "b", LONG) for a in ("--message", m)]
    done = run_cli("send", *_at(broker), "--topic", "numbered/messages", *SMALL, *messages)
    assert [e.split(": APPLICATION_ERROR")[0] for e in _errors(done)] == ["error: document 3 (the 3rd --message)"]


@pytest.mark.parametrize("n, word", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
                                     (13, "13th"), (21, "21st"), (102, "102nd"), (111, "111th")])
def test_ordinals(n: int, word: str) -> None:
    assert ordinal(n) == word


def test_the_summary_names_the_last_failure(capfd: pytest.CaptureFixture[str]) -> None:
    results = [Result(0, Status.FAILURE, "lost"), Result(1, Status.SUCCESS), Result(2, Status.FAILURE, "timed out"),
               Result(3, Status.SUCCESS)]
    code = report_send(iter(results), None, "to 't'", name=document_namer(None, True))
    assert code == 1
    assert capfd.readouterr().err.splitlines() == [
        "error: document 1 (line 1): FAILURE: lost", "error: document 3 (line 3): FAILURE: timed out",
        "sent 2 of 4 documents to 't'; 0 refused (APPLICATION_ERROR), 2 failed (FAILURE), the last, document 3 "
        "(line 3), because timed out"]


def test_run_names_standard_input_and_its_input_files() -> None:
    assert document_namer(None, False, "standard input")(0) == "document 1 (standard input)"
    assert document_namer(["a", "b"], True)(1) == "document 2 (file 'b')"


def test_a_repeated_input_names_the_round() -> None:
    assert document_namer(None, False, messages=2)(4) == "document 5 (the 1st --message, round 3)"
    assert document_namer(["a", "-"], False)(3) == "document 4 (standard input, round 2)"


def _at(broker: BrokerThread) -> list[str]:
    return ["--host", broker.host, "--port", str(broker.port)]


# -- errors name what the user typed -----------------------------------------------------------

def _error_of(capfd: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one error line of a command that fails with bad input (exit 2), run in-process."""
    code = main(list(argv), default_connector="mqtt", prog="mqtt-connector")
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1, err
    return errors[0]


def _file(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    path.chmod(0o600)
    return str(path)


def test_a_flag_is_named_as_typed(capfd: pytest.CaptureFixture[str]) -> None:
    line = _error_of(capfd, "check", "--cert-file", "/no/such.pem")
    assert line == "error: --cert-file: the client certificate file '/no/such.pem' does not exist"
    assert _error_of(capfd, "check", "--keep-alive", "0") == "error: --keep-alive: must be at least 1, not 0"


def test_the_fields_a_sentence_names_are_flags_too(capfd: pytest.CaptureFixture[str]) -> None:
    line = _error_of(capfd, "check", "--tls", "--key-password", "Kq-7zv2", "--port", "1")
    assert line.startswith("error: --key-password: ") and line.endswith("give --cert-file"), line
    line = _error_of(capfd, "listen", "--topic", "a/#", "--dead-letter-topic", "a/dead")
    assert line.startswith("error: --dead-letter-topic: ") and "set --no-local" in line and "_" not in line, line


def test_the_nth_value_of_a_repeated_flag(capfd: pytest.CaptureFixture[str]) -> None:
    line = _error_of(capfd, "listen", "--topic", "a", "--topic", "b/#/c")
    assert line.startswith("error: the 2nd --topic: '+' and '#' must each be a whole level"), line
    line = _error_of(capfd, "check", "--failover", "b:1", "--failover", "c:x")
    assert line.startswith("error: the 2nd --failover: a failover broker is HOST:PORT"), line


def test_a_key_of_the_connection_file_is_named_with_the_file(capfd: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    path = _file(tmp_path, "connection.json", {"port": 0, "failover": ["b:1", "c"], "key_password": "Kq-7zv2",
                                               "tls": True})
    line = _error_of(capfd, "check", "--connection", path)
    assert line == (f"error: 'failover/1' in the connection file {path!r}: a failover broker is HOST:PORT, e.g. "
                    "broker-2.example:1883; 'port' in the connection file: must be at least 1, not 0")
    # a flag over the file is the flag; the file's keys stay keys in the sentence
    line = _error_of(capfd, "check", "--connection", path, "--port", "70000", "--failover", "b:1")
    assert line == "error: --port: must be at most 65535, not 70000"
    line = _error_of(capfd, "check", "--connection", path, "--port", "1", "--failover", "b:1")
    assert line == (f"error: 'key_password' in the connection file {path!r}: a key passphrase needs a client "
                    "certificate and key: give cert_file")
    path = _file(tmp_path, "typo.json", {"porrt": 1883})
    line = _error_of(capfd, "check", "--connection", path)
    assert line.startswith(f"error: the connection file {path!r}: unknown field 'porrt' (did you mean 'port'?)"), line


def test_run_names_the_keys_of_its_files(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    connection = _file(tmp_path, "connection.json", {"port": 1})
    operation = _file(tmp_path, "operation.json", {"action": "send", "topic": "a/+", "qos": 3})
    line = _error_of(capfd, "run", "--connection", connection, "--operation", operation)
    assert line.startswith(f"error: 'qos' in the operation file {operation!r}: must be one of 0"), line


def test_an_environment_variable_and_a_file_flag_are_named(capfd: pytest.CaptureFixture[str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    long = "p" * 70_000
    monkeypatch.setenv("MQTT_PASSWORD", long)
    line = _error_of(capfd, "check", "--username", "u", "--port", "1")
    assert line.startswith("error: the environment variable MQTT_PASSWORD: the password is 70,000 bytes long"), line
    monkeypatch.delenv("MQTT_PASSWORD")
    path = tmp_path / "password"
    path.write_text(long)
    path.chmod(0o600)
    line = _error_of(capfd, "check", "--username", "u", "--password-file", str(path), "--port", "1")
    assert line.startswith("error: --password-file: the password is 70,000 bytes long"), line


# -- a Send to a '$' topic ---------------------------------------------------------------------

def test_a_send_to_a_dollar_topic_warns_once(broker: BrokerThread) -> None:
    done = run_cli("send", *_at(broker), "--topic", "$SYS/cli-messages", "--message", "a", "--message", "b")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 2 and lines[1].startswith("sent 2 of 2 documents"), lines
    assert lines[0].startswith("warning: the topic '$SYS/cli-messages' starts with '$', which brokers reserve "
                               "($SYS, $share): Mosquitto confirms a message sent to $SYS/... or $share/... and "
                               "drops it silently"), lines
    done = run_cli("send", *_at(broker), "--topic", "cli-messages/plain", "--message", "a")
    assert done.stderr.decode().splitlines() == ["sent 1 of 1 document to 'cli-messages/plain' (QoS 0)"]


def test_a_document_s_own_dollar_topic_warns_once(broker: BrokerThread, caplog: pytest.LogCaptureFixture) -> None:
    documents = [Document(b"a", {"topic": "$own/a"}), Document(b"b", {"topic": "$own/a"}), Document(b"c")]
    with caplog.at_level(logging.WARNING, logger="connector.mqtt"):
        results = list(Runtime(default_connector="mqtt").send({"host": broker.host, "port": broker.port},
                                      {"action": "send", "topic": "cli-messages/own"}, documents))
    assert all(r.ok for r in results), results
    assert [r.getMessage()[:40] for r in caplog.records] == ["the topic '$own/a' starts with '$', whic"]


# -- status lines only a terminal sees ---------------------------------------------------------

def _on_a_terminal(*args: str) -> list[str]:
    """The lines a command writes to stderr when stderr is a terminal (stdout a pipe)."""
    master, slave = pty.openpty()
    try:
        subprocess.run([sys.executable, "-m", "connector", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=slave, timeout=60, check=False)
    finally:
        os.close(slave)
    shown = b""
    try:
        while chunk := os.read(master, 65536):
            shown += chunk
    except OSError:  # EIO: every writer of the terminal is gone
        pass
    finally:
        os.close(master)
    return shown.decode().replace("\r", "").splitlines()


def test_the_status_lines_of_a_terminal_are_documented(broker: BrokerThread) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("Status lines only a terminal sees")[1]
    documented = section.split("```text\n")[1].split("```")[0].splitlines()
    ends = section.split("```")[2].strip().split("\n\n")[0]

    def shape(line: str) -> str:
        return re.sub(r"'[^']*'|\d+", "X", line).split(" (")[0]

    args = ("listen", *_at(broker), "--topic", "status/#", "--timeout", "0.5")
    lines = _on_a_terminal(*args, "--no-progress")  # the progress line is documented with the progress
    assert lines == ["listening on 'status/#' (QoS 0); Ctrl-C to stop", "received 0 documents (timeout)"]
    assert [shape(line) for line in lines] == [shape(line) for line in documented]
    assert "`(timeout)`" in ends and "`(count reached)`" in documented[1] + ends
    # not a terminal: nothing but warnings and errors
    done = run_cli(*args)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


# -- shell completion --------------------------------------------------------------------------

def _completions(line: str) -> list[str]:
    """What the shell is offered for ``line`` (the cursor at its end), by argcomplete's protocol: the
    command runs with _ARGCOMPLETE, COMP_LINE and COMP_POINT set and answers on file descriptor 8."""
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
           "COMP_POINT": str(len(line.encode()))}
    done = subprocess.run(["bash", "-c", 'exec "$0" -m connector 8>&1 9>/dev/null', sys.executable],
                          capture_output=True, env=env, timeout=60)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done
    return sorted(done.stdout.decode().split())


def test_completion_of_commands_flags_and_connector_ids() -> None:
    commands = _completions("mqtt-connector ")
    assert {"send", "listen", "run", "check", "describe", "connectors", "broker", "demo", "--verbose"} <= set(commands)
    assert _completions("mqtt-connector send --res") == ["--response-topic", "--results"]
    assert _completions("mqtt-connector describe --connector ") == ["disk", "mqtt"]
    # the schema flags of the connector the line names
    assert _completions("mqtt-connector -v send --connector disk --fol") == ["--folder"]


def test_completion_reads_the_line_typed_so_far() -> None:
    assert _words("mqtt-connector send --topic 'a b' --mes", "39") == ["send", "--topic", "a b", "--mes"]
    assert _words("mqtt-connector send --topic 'a b", None) == ["send", "--topic", "'a", "b"]  # an open quote
    assert _words("mqtt-connector check --port 1", "20") == ["check"]


def test_an_abbreviated_flag_that_could_be_two_is_one_error_line(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["send", "--conn", "x", "--topic", "t", "--message", "m"], default_connector="mqtt", prog="mqtt-connector")
    assert ended.value.code == 2
    assert capfd.readouterr().err.splitlines() == [
        "error: ambiguous option: --conn could match --connector, --connection, --connect-timeout (see "
        "'mqtt-connector send --help')"]


def test_an_error_raised_later_names_the_flag_too() -> None:
    """A TLS file that changed between the checks and the connection fails at connect (exit 3)."""
    from connector.harness.flags import schema_flags
    from connector.harness.origins import Origins
    from connector.sdk.errors import ConfigError, ConnectError
    from connector.sdk.plugins import installed_connectors

    origins = Origins(schema_flags(installed_connectors().manifest("mqtt").connection_schema))
    with pytest.raises(ConnectError, match="^--ca-file: cannot read 'ca.pem': gone$"), origins.naming():
        raise ConnectError("connection ca_file: cannot read 'ca.pem': gone")
    with pytest.raises(ConfigError, match="^--client-id: bad$"), origins.naming():
        raise ConfigError("connection client_id: bad")
    with pytest.raises(ConfigError, match="^no field named here$"), origins.naming():
        raise ConfigError("no field named here")
