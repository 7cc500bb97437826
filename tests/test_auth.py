"""Authentication and access rules against Mosquitto with a password file and an ACL, and the
connection failures a user meets: each exit 3 with the reason in words, within the connect timeout."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from brokers import MosquittoBroker
from clirun import run_cli
from connector.mqtt.broker import BrokerThread
from connector.harness.runtime import Runtime
from connector.sdk.documents import Document, Status

USER, PASSWORD = "alice", "Alice-Pw-3e8b1d"
ACL = f"user {USER}\ntopic readwrite allowed/#\n"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def secured(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    return mosquitto_factory(passwords={USER: PASSWORD}, acl=ACL)


def port_args(broker: Any) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(broker.port)]


def error_line(proc: Any, code: int) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines, err
    return lines[0]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_wrong_password_exits_3_naming_the_refusal_and_never_shows_it(secured: MosquittoBroker, protocol: str) -> None:
    wrong = "Wrong-Pw-5c0ffee"
    started = time.monotonic()
    proc = run_cli("send", *port_args(secured), "--protocol", protocol, "--username", USER, "--password", wrong,
                   "--topic", "allowed/a", "--message", "m", "--verbose")
    line = error_line(proc, 3)
    assert "refused the connection: Not authorized" in line
    assert "check the user name and password" in line
    assert "sent" not in proc.stderr.decode()  # QoS 0 is no success without a CONNACK
    assert wrong not in (proc.stdout + proc.stderr).decode()
    assert "DEBUG" in proc.stderr.decode()
    assert time.monotonic() - started < 10


def test_no_credentials_exit_3(secured: MosquittoBroker) -> None:
    assert "Not authorized" in error_line(run_cli("check", *port_args(secured)), 3)


def test_right_password_from_flag_file_or_environment_exits_0(secured: MosquittoBroker, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    runs = [
        run_cli("check", *port_args(secured), "--username", USER, "--password", PASSWORD),
        run_cli("check", *port_args(secured), "--username", USER, "--password-file", str(password_file)),
        run_cli("send", *port_args(secured), "--username", USER, "--topic", "allowed/x", "--qos", "1",
                "--message", "m", env={"MQTT_PASSWORD": PASSWORD}),
    ]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr.decode()


def test_missing_password_file_is_bad_input(tmp_path: Path) -> None:
    line = error_line(run_cli("check", "--username", USER, "--password-file", str(tmp_path / "nope")), 2)
    assert "cannot read the password file" in line


@pytest.mark.parametrize("qos", ["1", "2"])
def test_mqtt5_send_to_a_forbidden_topic_is_application_error(secured: MosquittoBroker, qos: str, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    proc = run_cli("send", *port_args(secured), "--protocol", "5", "--username", USER, "--password", PASSWORD,
                   "--topic", "forbidden/x", "--qos", qos, "--message", "a", "--message", "b", "--results", str(results))
    assert proc.returncode == 1, proc.stderr.decode()
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["status"] for r in lines] == ["APPLICATION_ERROR", "APPLICATION_ERROR"]
    assert all("Not authorized" in r["error"] for r in lines)
    assert "error: document 1 (the 1st --message): APPLICATION_ERROR: the broker refused the message: Not authorized" in proc.stderr.decode()


def test_mqtt5_refusal_is_per_document(secured: MosquittoBroker, runtime: Runtime) -> None:
    connection = {"host": "127.0.0.1", "port": secured.port, "username": USER, "password": PASSWORD,
                  "protocol": "5", "connect_timeout": 5, "ack_timeout": 10}
    documents = [Document.of("ok"), Document(b"no", {"topic": "forbidden/y"}), Document.of("ok again")]
    results = list(runtime.send(connection, {"action": "send", "topic": "allowed/y", "qos": 1}, documents))
    assert [r.status for r in results] == [Status.SUCCESS, Status.APPLICATION_ERROR, Status.SUCCESS]
    assert "Not authorized" in (results[1].error or "")


def test_mqtt5_against_a_broker_without_it_exits_3(broker: BrokerThread) -> None:
    proc = run_cli("check", "--host", broker.host, "--port", str(broker.port), "--protocol", "5")
    line = error_line(proc, 3)
    assert "MQTT 5" in line and "3.1.1" in line


def test_unknown_host_exits_3_at_once() -> None:
    started = time.monotonic()
    line = error_line(run_cli("check", "--host", "no-such-host.invalid"), 3)
    assert "cannot find the host 'no-such-host.invalid'" in line
    assert time.monotonic() - started < 15


def test_unreachable_address_exits_3_within_the_connect_timeout(tmp_path: Path) -> None:
    config = tmp_path / "c.json"  # TEST-NET-1 (RFC 5737): never routed
    config.write_text(json.dumps({"host": "192.0.2.1", "port": 1883, "connect_timeout": 1}))
    started = time.monotonic()
    line = error_line(run_cli("send", "--connection", str(config), "--topic", "t", "--message", "m"), 3)
    assert "192.0.2.1:1883" in line
    assert time.monotonic() - started < 10


def test_mqtt5_persistent_session_keeps_what_was_sent_while_away(mosquitto: MosquittoBroker, runtime: Runtime,
                                                                  unique: str) -> None:
    connection = {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "client_id": f"{unique}-p5",
                  "clean_session": False, "connect_timeout": 5}
    operation = {"action": "listen", "topic": f"{unique}/#", "qos": 1}
    with runtime.listen_in_background(connection, operation, timeout=30) as first:
        first.wait_ready(10)
        first.stop()
    sent = list(runtime.send({"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5"},
                             {"action": "send", "topic": f"{unique}/a", "qos": 1}, ["while away"]))
    assert sent[0].ok
    with runtime.listen_in_background(connection, operation, count=1, timeout=10) as back:
        pass
    assert [d.payload for d in back.documents] == [b"while away"]
