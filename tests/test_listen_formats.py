"""A Listen's ``--format`` and ``--output FILE``: ``payload`` and ``topic-payload`` print what
``mosquitto_sub`` and ``mosquitto_sub -v`` print, byte for byte; templates and their escapes; a
file output on a full disk acknowledges nothing that is not in the file."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest

from brokers import MosquittoBroker
from clirun import run_cli
from connector.harness.exits import UsageError
from connector.harness.formats import renderer
from connector.harness.runtime import Runtime
from connector.sdk.documents import Document
from test_output import (WAIT, backlog, cli, drain, environment, finished, listen_args, numbered, payloads, session,
                         small_disk)

__all__ = ["small_disk"]  # the fixture, used by name

#: Text, UTF-8, binary with a newline, NUL and bytes that are not UTF-8, and an empty payload.
MESSAGES = [b"21.5", "café ☕".encode(), b"\x00\x01\n\xff\xfe bin\r", b"", b"last"]
PROPERTIES = ("topic", "qos", "retained", "message_id", "user_properties", "received_at")


def mosquitto_sub(mosquitto: MosquittoBroker, clients: dict, client_id: str, topic: str, *extra: str) -> list[str]:
    return [clients["mosquitto_sub"], "-h", mosquitto.host, "-p", str(mosquitto.port), "-q", "1", "-c",
            "-i", client_id, "-t", topic, *extra]


@pytest.mark.parametrize(("our_format", "their_flags"), [("payload", ()), ("topic-payload", ("-v",))])
def test_payload_formats_print_what_mosquitto_sub_prints(our_format: str, their_flags: tuple[str, ...],
                                                         runtime: Runtime, mosquitto: MosquittoBroker,
                                                         mosquitto_clients: dict, unique: str) -> None:
    """Both take the same QoS 1 messages from a persistent session of their own; both outputs match."""
    topic = f"{unique}/fmt"
    theirs, ours = f"{unique}-sub", f"{unique}-ours"
    made = subprocess.run(mosquitto_sub(mosquitto, mosquitto_clients, theirs, topic, "-E"), capture_output=True,
                          timeout=WAIT)
    assert made.returncode == 0, made.stderr
    with runtime.listen_in_background(session(mosquitto, ours), {"action": "listen", "topic": topic, "qos": 1},
                                      timeout=0.2) as bg:
        bg.wait_ready()
    results = list(runtime.send({"host": mosquitto.host, "port": mosquitto.port},
                                {"action": "send", "topic": topic, "qos": 1}, MESSAGES))
    assert all(r.ok for r in results), results
    expected = subprocess.run(mosquitto_sub(mosquitto, mosquitto_clients, theirs, topic, "-C", str(len(MESSAGES)),
                                            "-W", "20", *their_flags), capture_output=True, timeout=WAIT)
    got = run_cli(*listen_args(mosquitto, ours, topic), "--count", str(len(MESSAGES)), "--timeout", "20",
                  "--format", our_format)
    assert expected.returncode == 0 and got.returncode == 0, (expected.stderr, got.stderr)
    assert b"\xff\xfe bin" in expected.stdout
    assert got.stdout == expected.stdout


DOCUMENT = Document(b"\x00hi", {"topic": "a/b", "qos": 1, "retained": True, "message_id": 7,
                                "user_properties": [["k", "v"], ["k", "w"]],
                                "received_at": "2024-05-01T12:00:00.250000+00:00"})


@pytest.mark.parametrize(("template", "expected"), [
    ("{topic} {payload}", b"a/b \x00hi\n"),
    ("{payload:hex}|{payload:base64}|{payload:length}", b"006869|AGhp|3\n"),
    ("{qos} {retained} {message_id}", b"1 true 7\n"),
    ("{user_properties}", b'[["k","v"],["k","w"]]\n'),
    ("{received_at} {received_at:epoch}", b"2024-05-01T12:00:00.250000+00:00 1714564800.250000\n"),
    ("{topic:json} {topic:hex} {content_type}.", b'"a/b" 612f62 .\n'),
    (r"a\tb\nc \\ {{x}} 100%: {topic}", b"a\tb\nc \\ {x} 100%: a/b\n"),
])
def test_template_placeholders_and_escapes(template: str, expected: bytes) -> None:
    assert renderer(template, (*PROPERTIES, "content_type"), ())(DOCUMENT) == expected


def test_the_json_placeholder_is_the_json_line() -> None:
    line = renderer("json", PROPERTIES, ())(DOCUMENT)
    assert renderer("<{json}>", PROPERTIES, ())(DOCUMENT) == b"<" + line[:-1] + b">\n"
    assert line.startswith(b'{"payload": "\\u0000hi", "encoding": "utf-8", "properties": {"topic": "a/b"')


@pytest.mark.parametrize(("template", "says"), [
    ("plain", "is neither json, payload nor topic-payload"),
    ("{nope}", "unknown placeholder {nope}: use one of {payload}, {json}, {message_id}"),
    ("{payload:oct}", "{payload:oct} is not a form of the payload"),
    ("{qos:oct}", "unknown form 'oct'"),
    (r"{topic}\q", r"unknown escape '\q'"),
    ("{topic", "a lone '{' at character 1"),
    ("{topic}}", "a lone '}' at character 8"),
])
def test_a_bad_template_says_what_is_wrong(template: str, says: str) -> None:
    with pytest.raises(UsageError, match=None) as exc:
        renderer(template, PROPERTIES, ())
    assert says in str(exc.value)


def test_a_bad_format_is_exit_2_before_connecting() -> None:
    done = run_cli("listen", "--port", "1", "--topic", "a", "--format", "{nope}")
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().startswith("error: --format: unknown placeholder {nope}")


def test_the_json_line_says_when_it_was_received(runtime: Runtime, mosquitto: MosquittoBroker, unique: str,
                                                 tmp_path: Path) -> None:
    topic = f"{unique}/when"
    list(runtime.send({"host": mosquitto.host, "port": mosquitto.port},
                      {"action": "send", "topic": topic, "qos": 1, "retained": True}, ["x"]))
    before = datetime.datetime.now(datetime.timezone.utc)
    out = tmp_path / "out.txt"
    out.write_bytes(b"earlier\n")
    done = run_cli("listen", "--host", mosquitto.host, "--port", str(mosquitto.port), "--topic", topic, "--count", "1",
                   "--output", str(out), "--format", "{received_at}|{received_at:epoch}|{payload}")
    assert done.returncode == 0 and done.stdout == b"", done.stderr
    first, line = out.read_text().splitlines()
    iso, epoch, payload = line.split("|")
    when = datetime.datetime.fromisoformat(iso)
    assert first == "earlier" and payload == "x"  # appended
    assert before <= when <= datetime.datetime.now(datetime.timezone.utc)
    assert float(epoch) == pytest.approx(when.timestamp(), abs=1e-6)


def test_an_output_file_that_cannot_be_written_is_exit_2(tmp_path: Path) -> None:
    done = run_cli("listen", "--port", "1", "--topic", "a", "--output", str(tmp_path / "no" / "such.txt"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode() == (f"error: cannot write the output file {str(tmp_path / 'no' / 'such.txt')!r}: "
                                    "No such file or directory\n")


@pytest.mark.parametrize("output_format", ["json", "{json}"])
def test_an_output_file_on_a_full_disk_acknowledges_nothing_not_in_it(
        runtime: Runtime, mosquitto: MosquittoBroker, small_disk: Path, tmp_path: Path, unique: str,
        output_format: str) -> None:
    """A persistent QoS 1 Listen with --output on a 16 KiB disk stops when it is full (exit 1); the
    session drained afterwards holds every number the file lacks."""
    client_id, topic, sent = f"{unique}-file", f"{unique}/file", numbered(400)  # ~70 KB of lines
    backlog(runtime, mosquitto, client_id, topic, sent)
    env = environment(True)
    code, err = finished(cli(*listen_args(mosquitto, client_id, topic), "--output", str(small_disk / "out.jsonl"),
                             "--format", output_format, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    first = payloads((small_disk / "out.jsonl").read_bytes())
    assert 0 < len(first) < len(sent)
    rest = drain(mosquitto, client_id, topic, sent, first, tmp_path, env)
    assert not set(sent) - set(first + rest)
    assert code == 1 and err.startswith("error: cannot write the output (No space left on device)"), err
