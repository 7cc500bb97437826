"""The SDK's Listen retry policy (connector/sdk/retry.py) with a fake connector: no broker.

Attempts, backoff delays, dead letters confirmed or not, giving up, and a stop during a wait."""

from __future__ import annotations

import ast
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from connector.sdk.documents import Document
from connector.sdk.listener import Listener
from connector.sdk.retry import MAX_RETRY_DELAY, Endpoint, Retries, dead_letter


class FakeListener(Listener):
    """Refuses the first ``refusals`` submissions (each with an error), then accepts."""

    def __init__(self, refusals: int = 0) -> None:
        super().__init__()
        self.refusals = refusals
        self.submitted: list[bytes] = []
        self.events: list[tuple[Any, ...]] = []

    def submit(self, document: Document) -> bool:
        self.submitted.append(document.payload)
        if self.refusals:
            self.refusals -= 1
            self.error = f"ValueError: refused {document.payload[:10].decode()}"
            return False
        return True

    def dead_lettered(self, document: Document, error: str, attempts: int, destination: str) -> None:
        self.events.append(("dead_lettered", document.payload, error, attempts, destination))

    def gave_up(self, document: Document, error: str, attempts: int) -> None:
        self.events.append(("gave_up", document.payload, error, attempts))


class FakeEndpoint:
    """A connector's side: records acknowledgements and dead letters; ``refuse`` fails publishing."""

    def __init__(self, refuse: str | None = None, room: int | None = None) -> None:
        self.acked: list[str] = []
        self.letters: list[tuple[str, bytes]] = []
        self.refuse, self.room = refuse, room
        self.published: list[str] = []  # the messages whose dead letters were published

    def publish(self, destination: str, letter: bytes, message: str) -> str | None:
        self.letters.append((destination, letter))
        self.published.append(message)
        return self.refuse

    def endpoint(self, **extra: Any) -> Endpoint[str]:
        return Endpoint(acknowledge=self.acked.append, publish_dead_letter=self.publish,
                        dead_letter_room=lambda destination: self.room, **extra)


class RecordingEvent(threading.Event):
    """``stopping`` whose waits return at once, recording how long they were asked to be."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


def _batch(*names: str) -> tuple[list[str], list[Document]]:
    return list(names), [Document.of(name, name=name) for name in names]


def _retries(operation: dict[str, Any], listener: Listener, endpoint: Endpoint[str]) -> Retries[str]:
    listener.stopping = RecordingEvent()
    return Retries(operation, listener, endpoint)


def test_accepted_documents_are_acknowledged_in_order() -> None:
    listener, fake = FakeListener(), FakeEndpoint()
    messages, documents = _batch("a", "b", "c")
    assert _retries({}, listener, fake.endpoint()).deliver(messages, documents) == 3
    assert fake.acked == ["a", "b", "c"] and listener.events == [] and not listener.stopping.is_set()


def test_a_refused_document_is_handed_over_again_with_doubling_waits() -> None:
    listener, fake = FakeListener(refusals=2), FakeEndpoint()
    messages, documents = _batch("a", "b")
    retries = _retries({"max_attempts": 3, "retry_delay": 0.5}, listener, fake.endpoint())
    assert retries.deliver(messages, documents) == 2
    assert listener.submitted == [b"a", b"a", b"a", b"b"]  # a refused twice, accepted the third time
    assert listener.stopping.waits == [0.5, 1.0]
    assert fake.acked == ["a", "b"] and fake.letters == []


def test_backoff_is_bounded() -> None:
    retries = Retries({"retry_delay": 7}, FakeListener(), FakeEndpoint().endpoint())
    assert [retries.wait(n) for n in (1, 2, 3, 4, 5)] == [7, 14, 28, 56, MAX_RETRY_DELAY]
    assert retries.wait(10_000) == MAX_RETRY_DELAY  # no overflow however many attempts
    assert Retries({"retry_delay": 0}, FakeListener(), FakeEndpoint().endpoint()).wait(5) == 0


def test_without_a_dead_letter_topic_the_policy_gives_up_unacknowledged() -> None:
    listener, fake = FakeListener(refusals=99), FakeEndpoint()
    messages, documents = _batch("ok?", "next")
    retries = _retries({"max_attempts": 2, "retry_delay": 0, "dead_letter_topic": None}, listener, fake.endpoint())
    assert retries.deliver(messages, documents) == 0
    assert listener.submitted == [b"ok?", b"ok?"]  # two attempts, then nothing more
    assert listener.events == [("gave_up", b"ok?", "ValueError: refused ok?", 2)]
    assert listener.stopping.is_set() and fake.acked == [] and fake.letters == []


def test_a_confirmed_dead_letter_acknowledges_the_message_and_goes_on() -> None:
    listener, fake = FakeListener(refusals=3), FakeEndpoint()
    messages, documents = _batch("bad", "good")
    retries = _retries({"max_attempts": 3, "retry_delay": 0, "dead_letter_topic": "dead"}, listener, fake.endpoint())
    assert retries.deliver(messages, documents) == 1  # "good"; "bad" was moved, not accepted
    assert listener.events == [("dead_lettered", b"bad", "ValueError: refused bad", 3, "dead")]
    assert fake.acked == ["bad", "good"]  # acknowledged once the dead letter was confirmed
    assert fake.published == ["bad"]  # the connector is told whose dead letter it publishes
    destination, letter = fake.letters[0]
    assert destination == "dead" and json.loads(letter) == {
        "payload": "bad", "encoding": "utf-8", "properties": {"name": "bad"},
        "error": "ValueError: refused bad", "attempts": 3}


def test_a_failed_dead_letter_leaves_the_message_unacknowledged_and_gives_up() -> None:
    listener, fake = FakeListener(refusals=1), FakeEndpoint(refuse="FAILURE: the destination is down")
    messages, documents = _batch("bad", "good")
    retries = _retries({"max_attempts": 1, "dead_letter_topic": "dead"}, listener, fake.endpoint())
    assert retries.deliver(messages, documents) == 0
    assert listener.events == [("gave_up", b"bad", "ValueError: refused bad; dead-letter topic: FAILURE: the "
                                "destination is down", 1)]
    assert fake.acked == [] and listener.stopping.is_set() and len(fake.letters) == 1


def test_a_dead_letter_fits_the_room_and_encodes_the_declared_byte_properties() -> None:
    listener, fake = FakeListener(refusals=1), FakeEndpoint(room=600)
    document = Document(b"x" * 5_000, {"fingerprint": b"\xff\x00", "label": "plain"})
    endpoint = fake.endpoint(byte_properties={"fingerprint"})
    retries = _retries({"max_attempts": 1, "dead_letter_topic": "dead"}, listener, endpoint)
    assert retries.deliver(["m"], [document]) == 0
    letter = json.loads(fake.letters[0][1])
    assert len(fake.letters[0][1]) <= 600 and letter["truncated"] is True and letter["size"] == 5_000
    assert letter["properties"] == {"fingerprint": "/wA=", "label": "plain"} and fake.acked == ["m"]


def test_the_operation_fields_default_when_a_connector_does_not_declare_them() -> None:
    retries = Retries({"action": "listen"}, FakeListener(), FakeEndpoint().endpoint())
    assert (retries.max_attempts, retries.delay, retries.dead_letter_topic) == (3, 1.0, None)


def test_log_lines_describe_the_document_in_the_connector_words(caplog: pytest.LogCaptureFixture) -> None:
    listener, fake = FakeListener(refusals=2), FakeEndpoint()
    endpoint = fake.endpoint(describe=lambda d: f"the file {d.properties['name']!r}")
    _retries({"max_attempts": 2, "retry_delay": 0.25}, listener, endpoint).deliver(*_batch("f.csv"))
    assert [r.getMessage() for r in caplog.records] == [
        "the process failed for the file 'f.csv' (attempt 1 of 2: ValueError: refused f.csv); trying again in 0.25 s",
        "the process failed 2 times for the file 'f.csv' (ValueError: refused f.csv); it was not acknowledged: "
        "stopping"]


def test_a_stop_during_a_backoff_wait_ends_the_delivery_at_once() -> None:
    listener, fake = FakeListener(refusals=1), FakeEndpoint()
    retries = Retries({"max_attempts": 5, "retry_delay": 30}, listener, fake.endpoint())
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(retries.deliver(*_batch("slow"))))
    worker.start()
    time.sleep(0.2)  # in its 30 s wait
    started = time.monotonic()
    listener.stop()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 1
    assert done == [0] and fake.acked == [] and listener.submitted == [b"slow"]  # not handed over again


def test_dead_letters_without_a_room_are_whole() -> None:
    letter = dead_letter(Document(b"\xff" * 3_000, {}), "E" * 10_000, 2)
    body = json.loads(letter)
    assert body["encoding"] == "base64" and "truncated" not in body and len(body["error"]) == 4_096 + 3


def test_the_policy_is_connector_neutral() -> None:
    """No connector's name in the code of the SDK's policy (docstrings may give examples)."""
    source = (Path(__file__).parents[1] / "connector" / "sdk" / "retry.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node):
            node.body = node.body[1:]
    code = ast.unparse(tree)
    assert "mqtt" not in code.lower() and "paho" not in code.lower()


def test_an_endpoint_that_acknowledges_many_at_once_gets_each_accepted_run_together() -> None:
    listener, fake = FakeListener(refusals=1), FakeEndpoint()
    together: list[list[str]] = []
    messages, documents = _batch("a", "b", "c")
    retries = _retries({"max_attempts": 2, "retry_delay": 0}, listener,
                       fake.endpoint(acknowledge_all=lambda batch: together.append(list(batch))))
    assert retries.deliver(messages, documents) == 3
    assert together == [["a", "b", "c"]] and fake.acked == []  # a refused once, then all three accepted at once
