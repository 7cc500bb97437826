"""The command line with several connectors installed: ``--connector`` on every command, the
``connectors`` command, the commands connectors add (and their clashes), and summaries in the
connector's own words. Runs ``mqtt-connector``'s ``main`` in this process with a fake connector
installed beside the MQTT one."""

from __future__ import annotations

import argparse
import json
import logging
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from connector import __version__
from connector.__main__ import main as console_main
from connector.harness import cli
from connector.mqtt.phrases import describe_granted, describe_operation
from connector.sdk import hookimpl, plugins
from connector.sdk.commands import Command
from connector.sdk.plugins import Connectors, create_plugin_manager
from installed import BESIDE_MQTT
from test_plugins import FakeConnector


class Talkative(FakeConnector):
    """A connector with a phrase for its operations and a command of its own."""

    ID = "talk"

    @hookimpl
    def connector_describe_operation(self, operation: Mapping[str, Any]) -> str:
        return f"into the fake ({'shouting' if operation['upper'] else 'quietly'})"

    @hookimpl
    def connector_commands(self) -> list[Command]:
        def add(p: argparse.ArgumentParser) -> None:
            p.add_argument("--name", default="world")

        def run(args: argparse.Namespace) -> int:
            print(f"hello {args.name}")
            return 7

        return [Command("hello", "say hello", add, run)]


class Clash(FakeConnector):
    ID = "clash"

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    @hookimpl
    def connector_commands(self) -> list[Command]:
        return [Command(self.name, "clashes", lambda p: None, lambda args: 0)]


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Install connectors (beside the MQTT one) for ``main``; global state it touches is put back."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)})

    def installing(*connectors: Any, entry_points: bool = True) -> None:
        found = Connectors(create_plugin_manager(plugins=connectors, entry_points=entry_points, block=BESIDE_MQTT))
        monkeypatch.setattr(plugins, "_default", found)

    yield installing
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for sig, handler in saved[2].items():
        signal.signal(sig, handler)


def run(capfd: pytest.CaptureFixture[str], *argv: str, main: Any = console_main) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help, --version, bad flags
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capfd.readouterr()
    return code, out, err


def files(tmp_path: Path, operation: dict[str, Any], connection: dict[str, Any] | None = None) -> list[str]:
    (tmp_path / "c.json").write_text(json.dumps(connection or {}))
    (tmp_path / "o.json").write_text(json.dumps(operation))
    return ["--connection", str(tmp_path / "c.json"), "--operation", str(tmp_path / "o.json")]


# -- connectors --------------------------------------------------------------------------------

def test_connectors_lists_what_is_installed(install: Any, capfd: pytest.CaptureFixture[str]) -> None:
    install()
    assert run(capfd, "connectors") == (0, "mqtt 0.1.0: send, listen (commands: broker, demo, clear-retained, bench)\n", "")
    install(Talkative())
    code, out, err = run(capfd, "connectors", "--connector", "mqtt")  # taken, and ignored
    assert (code, err) == (0, "")
    assert out.splitlines() == ["mqtt 0.1.0: send, listen (commands: broker, demo, clear-retained, bench)",
                                "talk 1: send, listen (commands: hello)"]
    code, out, _ = run(capfd, "connectors", "--json")
    assert code == 0 and json.loads(out) == [
        {"id": "mqtt", "name": "MQTT", "version": "0.1.0", "actions": ["send", "listen"], "commands": ["broker", "demo", "clear-retained", "bench"]},
        {"id": "talk", "name": "Fake", "version": "1", "actions": ["send", "listen"], "commands": ["hello"]},
    ]
    install(entry_points=False)
    assert run(capfd, "connectors") == (0, "", "no connector is installed\n")


# -- --connector on every command --------------------------------------------------------------

@pytest.mark.parametrize("command", ["send", "listen", "run", "check", "describe", "connectors", "broker", "demo",
                                     "hello"])
def test_every_command_takes_connector(install: Any, capfd: pytest.CaptureFixture[str], command: str) -> None:
    install(Talkative())
    code, out, _ = run(capfd, command, "--help")
    assert code == 0 and "--connector ID" in out
    if command != "connectors":
        assert "default: the only installed connector, else mqtt" in " ".join(out.split())


def test_describe_and_check_reach_the_connector_named(install: Any, capfd: pytest.CaptureFixture[str]) -> None:
    install(FakeConnector())
    code, out, _ = run(capfd, "describe", "--connector", "fake", "--json")
    assert code == 0 and json.loads(out)["id"] == "fake"
    assert json.loads(run(capfd, "describe", "--json")[1])["id"] == "mqtt"  # the entry point's default
    assert run(capfd, "check", "--connector", "fake") == (0, "ok: fake at /fake\n", "")


def test_send_and_listen_flags_are_the_connector_named(install: Any, capfd: pytest.CaptureFixture[str]) -> None:
    fake = FakeConnector()
    install(fake)
    for argv in (["send", "--topic", "t", "--message", "m"], ["listen", "--topic", "t", "--count", "1"]):
        code, out, err = run(capfd, *argv, "--connector", "fake")
        assert (code, err) == (2, "error: unrecognized arguments: --topic t (see 'mqtt-connector --help')\n")
    assert [c[0] for c in fake.calls] == []  # nothing opened
    code, out, err = run(capfd, "send", "--help", "--connector", "fake")
    assert code == 0 and "--upper" in out and "--path" in out and "--topic" not in out and "--host" not in out
    assert run(capfd, "send", "--connector", "fake", "--upper", "--path", "/p", "--message", "m") == \
        (0, "", "sent 1 of 1 document\n")
    assert ("send", {"action": "send", "upper": True}) in fake.calls
    assert fake.sent == [b"M"]
    code, out, err = run(capfd, "listen", "--connector", "fake", "--count", "1")
    assert code == 0 and json.loads(out)["payload"] == "message 0", err
    assert run(capfd, "check", "--connector", "fake", "--path", "/elsewhere") == (0, "ok: fake at /elsewhere\n", "")


def test_without_a_default_several_connectors_need_connector(install: Any, capfd: pytest.CaptureFixture[str]) -> None:
    install(FakeConnector())
    code, _, err = run(capfd, "describe", main=cli.main)  # the harness alone has no default connector
    assert (code, err) == (2, "error: several connectors are installed (fake, mqtt): say which one to use\n")
    install(FakeConnector(), entry_points=False)
    code, out, _ = run(capfd, "describe", "--json", main=cli.main)  # the only one installed
    assert code == 0 and json.loads(out)["id"] == "fake"
    assert run(capfd, "--version", main=cli.main)[1] == f"connector {__version__}\n"
    assert run(capfd, "--version")[1] == f"mqtt-connector {__version__}\n"


def test_a_connector_s_command_runs_for_its_connector_only(install: Any, capfd: pytest.CaptureFixture[str]) -> None:
    install(Talkative())
    assert run(capfd, "hello", "--name", "you") == (7, "hello you\n", "")
    assert run(capfd, "hello", "--connector", "talk") == (7, "hello world\n", "")
    code, _, err = run(capfd, "hello", "--connector", "mqtt")
    assert (code, err) == (2, "error: the command 'hello' comes from the connector 'talk', not 'mqtt'\n")
    code, _, err = run(capfd, "broker", "--connector", "nope")
    assert (code, err) == (2, "error: no connector 'nope' is installed (installed: mqtt, talk)\n")


@pytest.mark.parametrize(("name", "words"), [
    ("send", "the connector 'clash' adds a command 'send', which is the harness's own 'send' command"),
    ("connectors", "the connector 'clash' adds a command 'connectors', which is the harness's own"),
    ("demo", "the connectors 'clash' and 'mqtt' both add a command 'demo'"),
])
def test_a_command_that_clashes_is_refused(install: Any, capfd: pytest.CaptureFixture[str], name: str,
                                           words: str) -> None:
    install(Clash(name))
    for argv in (["--help"], ["no-such-command"]):
        code, out, err = run(capfd, *argv)
        assert (code, out) == (2, "") and err.startswith(f"error: {words}") and err.count("\n") == 1, err


# -- summaries in the connector's words ----------------------------------------------------------

def test_the_send_summary_is_the_connector_s_phrase(install: Any, capfd: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    install(Talkative())
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    argv = ["run", "--connector", "talk", *files(tmp_path, {"action": "send", "upper": True}),
            str(tmp_path / "a"), str(tmp_path / "b")]
    assert run(capfd, *argv) == (0, "", "sent 2 of 2 documents into the fake (shouting)\n")


def test_a_connector_without_a_phrase_gets_a_neutral_summary(install: Any, capfd: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    fake = FakeConnector()
    install(fake)
    (tmp_path / "a").write_text("a")
    argv = ["run", "--connector", "fake", *files(tmp_path, {"action": "send"}), str(tmp_path / "a")]
    assert run(capfd, *argv) == (0, "", "sent 1 of 1 document\n")
    assert fake.sent == [b"a"]


def test_listening_is_shown_in_the_connector_s_words(install: Any, capfd: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    install(FakeConnector())
    argv = ["run", "--connector", "fake", *files(tmp_path, {"action": "listen"}), "--count", "2", "--verbose"]
    code, out, err = run(capfd, *argv)
    assert code == 0, err
    assert [json.loads(line)["payload"] for line in out.splitlines()] == ["message 0", "message 1"]
    assert "listening on everything the fake makes up; Ctrl-C to stop\n" in err
    assert "received 2 documents (count reached)\n" in err


def test_the_mqtt_phrases() -> None:
    assert describe_operation({"action": "send", "topic": "a/b", "qos": 0, "retained": False}) == "to 'a/b' (QoS 0)"
    assert describe_operation({"action": "send", "topic": "a/b", "qos": 2, "retained": True}) == \
        "to 'a/b' (QoS 2, retained)"
    assert describe_operation({"action": "listen", "topic": "a/#", "qos": 1}) == "on 'a/#' (QoS 1)"
    assert describe_granted([("a/#", 1), ("b", None)]) == "'a/#' (QoS 1), 'b' (refused)"
