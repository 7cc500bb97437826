"""Configurations that run away: a Listen that dead-letters into its own filters, and dead letters
that outgrow the broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import run_cli

from connector.harness.broker import BrokerThread, free_port
from connector.harness.runtime import Runtime
from connector.mqtt.listen import dead_letter
from connector.mqtt.plugin import connector_validate
from connector.sdk.documents import Document
from connector.sdk.errors import ConfigError

# -- a dead-letter topic that the Listen itself receives -------------------------------------------

LOOPS = [("a/#", "a/dead"), ("+/dead", "a/dead"), ("$share/G/a/#", "a/dead"), ("#", "dead"), ("a/+/x", "a/b/x")]


@pytest.mark.parametrize(("topic_filter", "dead_letters"), LOOPS)
def test_a_dead_letter_topic_inside_the_filters_is_refused(topic_filter: str, dead_letters: str) -> None:
    """Each dead letter came back as a new message, failed, and was wrapped again: 22 nested dead
    letters in 10 s, the payload doubling. Refused before connecting (nothing listens on the port)."""
    started = time.monotonic()
    done = run_cli("listen", "--port", str(free_port()), "--topic", "other/x", "--topic", topic_filter,
                   "--dead-letter-topic", dead_letters)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert repr(topic_filter) in err and repr(dead_letters) in err, err
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("topic_filter", "dead_letters"), LOOPS[:2])
def test_the_python_api_and_run_refuse_the_loop_too(topic_filter: str, dead_letters: str, tmp_path: Path) -> None:
    operation = {"action": "listen", "topic": topic_filter, "dead_letter_topic": dead_letters}
    with pytest.raises(ConfigError, match="dead_letter_topic"):
        Runtime().listen({"port": free_port()}, operation, print, timeout=1)
    problems = connector_validate(connector_id="mqtt", connection={"client_id": ""},
                                  operation={**operation, "qos": 0})
    assert problems and "dead-letter topic" in problems[-1]
    (tmp_path / "conn.json").write_text(json.dumps({"port": free_port()}))
    (tmp_path / "op.json").write_text(json.dumps(operation))
    done = run_cli("run", "--connection", str(tmp_path / "conn.json"), "--operation", str(tmp_path / "op.json"))
    assert done.returncode == 2 and b"dead-letter topic" in done.stderr, done.stderr


@pytest.mark.parametrize(("topic_filter", "dead_letters"), [("a/#", "b/dead"), ("#", "$dead"), ("a/+", "a/b/dead")])
def test_a_dead_letter_topic_outside_the_filters_is_fine(topic_filter: str, dead_letters: str) -> None:
    operation = {"action": "listen", "topic": topic_filter, "qos": 0, "dead_letter_topic": dead_letters}
    assert connector_validate(connector_id="mqtt", connection={"client_id": ""}, operation=operation) == []


def test_a_dead_letter_too_big_for_the_broker_carries_the_start_of_the_payload(broker: BrokerThread) -> None:
    """A payload whose dead letter would not fit the broker's packet limit: the dead letter carries as
    much of it as fits, ``truncated`` and the original ``size``, and the original is acknowledged."""
    runtime = Runtime()
    where = {"host": broker.host, "port": broker.port}
    topic = f"big{time.monotonic_ns()}"
    payload = ("é\"\n" * 4_000).encode()  # 16,000 bytes, longer still once escaped in JSON

    def refuse(document: Document) -> None:
        raise RuntimeError("cannot take it")

    letters = runtime.listen_in_background(where, {"action": "listen", "topic": f"{topic}/dead", "qos": 1}, count=1)
    letters.wait_ready()
    operation = {"action": "listen", "topic": f"{topic}/in", "qos": 1, "max_attempts": 1,
                 "dead_letter_topic": f"{topic}/dead"}
    with runtime.listen_in_background({**where, "max_packet_size": 2_048}, operation, refuse, count=1) as bg:
        bg.wait_ready()
        assert all(r.ok for r in runtime.send(where, {"action": "send", "topic": f"{topic}/in", "qos": 1}, [payload]))
        deadline = time.monotonic() + 20
        while bg.listener.dead_letters < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        bg.stop()
    assert bg.outcome is not None and bg.outcome.dead_lettered == 1, bg.outcome
    letters.join()
    letter = letters.documents[0].payload
    assert len(letter) <= 2_048 - len(f"{topic}/dead") - 9
    body = json.loads(letter)
    assert body["truncated"] is True and body["size"] == len(payload)
    assert payload.decode().startswith(body["payload"]) and len(body["payload"]) > 500
    assert body["error"] == "RuntimeError: cannot take it" and body["properties"]["topic"] == f"{topic}/in"


def test_dead_letters_of_dead_letters_never_outgrow_the_limit() -> None:
    """Nested dead letters (one Listen's dead letters failing in another's) escaped the payload again at
    each level, doubling it; wrapped 30 times it stays within the room, and stays valid JSON."""
    document = Document(b'{"quoted": "\\"x\\""}' * 200, {"topic": "a/b"})
    sizes = []
    for _ in range(30):
        document = Document(dead_letter(document, "RuntimeError: no", 3, 4_000), {"topic": "a/b"})
        sizes.append(len(document.payload))
        json.loads(document.payload)
    assert max(sizes) <= 4_000
    binary = dead_letter(Document(bytes(range(256)) * 100, {"topic": "a/b"}), "E", 1, 3_000)
    assert len(binary) <= 3_000 and json.loads(binary)["encoding"] == "base64"
