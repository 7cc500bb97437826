"""Listen's batches (``Listener.submit_batch``): a document is acknowledged only after the process
wrote *and flushed* it; a failed flush acknowledges nothing of its batch. On Mosquitto, whose
persistent sessions keep unacknowledged messages, so a redelivery shows what was not acknowledged."""

from __future__ import annotations

import io
from collections.abc import Iterable

import paho.mqtt.client as paho
import pytest

from brokers import MosquittoBroker
from connector.harness.runtime import ProcessListener, Runtime
from connector.mqtt.paho_client import PahoClient, Received
from connector.harness.sinks import JsonLinesSink
from connector.sdk.documents import Document, Status
from connector.sdk.listener import Listener

WAIT = 10.0


class RecordingSink:
    """A batching sink (write + flush) that records what happened, in order, with the acks."""

    def __init__(self, events: list[tuple], fail_flush: bool = False) -> None:
        self.events = events
        self.fail_flush = fail_flush
        self.documents: list[Document] = []

    def write(self, document: Document) -> None:
        self.events.append(("write", document.properties["message_id"]))
        self.documents.append(document)

    def flush(self) -> None:
        if self.fail_flush:
            raise OSError("No space left on device")
        self.events.append(("flush",))

    def __call__(self, document: Document) -> None:
        self.write(document)
        self.flush()


@pytest.fixture
def acks(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every acknowledgement the connector sends, recorded at its client's ack_all() (ack() too goes there)."""
    events: list[tuple] = []
    real_ack_all = PahoClient.ack_all

    def ack_all(client: PahoClient, messages: Iterable[Received]) -> object:
        messages = list(messages)
        events.extend(("ack", message.mid) for message in messages)
        return real_ack_all(client, messages)

    monkeypatch.setattr(PahoClient, "ack_all", ack_all)
    return events


def _persistent(mosquitto: MosquittoBroker, client_id: str) -> dict:
    return {"host": mosquitto.host, "port": mosquitto.port, "client_id": client_id, "clean_session": False}


def _backlog(runtime: Runtime, mosquitto: MosquittoBroker, session: dict, topic: str, count: int) -> None:
    """Create the persistent session, leave, and publish ``count`` QoS 1 messages while it is away."""
    with runtime.listen_in_background(session, {"action": "listen", "topic": topic, "qos": 1}, timeout=0.2) as bg:
        bg.wait_ready()
    connection = {"host": mosquitto.host, "port": mosquitto.port}
    results = list(runtime.send(connection, {"action": "send", "topic": topic, "qos": 1},
                                [f"m{i}" for i in range(count)]))
    assert all(r.status is Status.SUCCESS for r in results)


def test_every_ack_follows_the_flush_of_its_document(runtime: Runtime, mosquitto: MosquittoBroker, unique: str,
                                                     acks: list[tuple]) -> None:
    session, topic = _persistent(mosquitto, f"{unique}-batch"), f"{unique}/batch"
    _backlog(runtime, mosquitto, session, topic, 300)
    sink = RecordingSink(acks)  # one list: writes, flushes and acks in the order they happened
    outcome = runtime.listen(session, {"action": "listen", "topic": topic, "qos": 1}, sink, count=300, timeout=WAIT)
    assert (outcome.reason, outcome.accepted) == ("count", 300)
    assert [d.payload for d in sink.documents] == [f"m{i}".encode() for i in range(300)]
    written_at: dict[int, int] = {}
    last_flush = -1
    for position, event in enumerate(acks):
        if event[0] == "write":
            written_at[event[1]] = position
        elif event[0] == "flush":
            last_flush = position
        else:
            assert event[1] in written_at and written_at[event[1]] < last_flush, f"{event} before its flush"
    assert sum(1 for e in acks if e[0] == "ack") == 300
    assert sum(1 for e in acks if e[0] == "flush") < 300  # batches did form: fewer flushes than documents


def test_a_failed_flush_acknowledges_nothing_of_its_batch(runtime: Runtime, mosquitto: MosquittoBroker,
                                                          unique: str, acks: list[tuple]) -> None:
    session, topic = _persistent(mosquitto, f"{unique}-fail"), f"{unique}/fail"
    _backlog(runtime, mosquitto, session, topic, 50)
    sink = RecordingSink(acks, fail_flush=True)
    operation = {"action": "listen", "topic": topic, "qos": 1, "max_attempts": 3, "retry_delay": 0.05}
    outcome = runtime.listen(session, operation, sink, timeout=WAIT)
    assert outcome.reason == "refused" and "No space left" in (outcome.error or "")
    assert acks.count(acks[0]) == 3  # the first document was written in each of three attempts
    assert outcome.accepted == 0
    assert sink.documents  # it was written to, never flushed
    assert [e for e in acks if e[0] == "ack"] == []
    # Nothing was acknowledged, so the broker hands the whole backlog over again.
    again = runtime.listen(session, {"action": "listen", "topic": topic, "qos": 1}, RecordingSink([]), count=50,
                           timeout=WAIT)
    assert (again.reason, again.accepted) == ("count", 50)


def test_count_reached_inside_a_batch_acknowledges_only_up_to_the_count(runtime: Runtime, mosquitto: MosquittoBroker,
                                                                        unique: str, acks: list[tuple]) -> None:
    session, topic = _persistent(mosquitto, f"{unique}-count"), f"{unique}/count"
    _backlog(runtime, mosquitto, session, topic, 20)
    stream = io.StringIO()
    outcome = runtime.listen(session, {"action": "listen", "topic": topic, "qos": 1}, JsonLinesSink(stream), count=5,
                             timeout=WAIT)
    assert (outcome.reason, outcome.accepted) == ("count", 5)
    assert len(stream.getvalue().splitlines()) == 5
    assert len([e for e in acks if e[0] == "ack"]) == 5
    rest = RecordingSink([])
    again = runtime.listen(session, {"action": "listen", "topic": topic, "qos": 1}, rest, count=15, timeout=WAIT)
    assert (again.reason, again.accepted) == ("count", 15)
    assert [d.payload for d in rest.documents] == [f"m{i}".encode() for i in range(5, 20)]


# -- the contract without a broker ---------------------------------------------------------------

def _docs(n: int) -> list[Document]:
    return [Document.of(f"d{i}", topic="t", message_id=i) for i in range(n)]


def test_submit_batch_counts_only_flushed_documents() -> None:
    events: list[tuple] = []
    listener = ProcessListener(RecordingSink(events, fail_flush=True))
    assert listener.submit_batch(_docs(3)) == 0
    assert listener.accepted == 0 and "No space left" in (listener.error or "")
    assert not listener.stopping.is_set()  # the connector decides: another attempt, a dead letter, or stop

    listener = ProcessListener(RecordingSink([]), count=2)
    assert listener.submit_batch(_docs(3)) == 2
    assert listener.stopping.is_set() and listener.reason == "count"


def test_a_write_refusal_inside_a_batch_keeps_the_flushed_prefix() -> None:
    class RefuseSecond(RecordingSink):
        def write(self, document: Document) -> None:
            if document.properties["message_id"] == 1:
                raise ValueError("bad document")
            super().write(document)

    events: list[tuple] = []
    listener = ProcessListener(RefuseSecond(events))
    assert listener.submit_batch(_docs(3)) == 1
    assert events == [("write", 0), ("flush",)]
    assert listener.error == "ValueError: bad document"


def test_the_base_listener_batches_through_submit() -> None:
    class Plain(Listener):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[bytes] = []

        def submit(self, document: Document) -> bool:
            self.seen.append(document.payload)
            return len(self.seen) < 2

    plain = Plain()
    assert plain.submit_batch(_docs(3)) == 1  # the second was refused: only the first may be acknowledged
    assert plain.seen == [b"d0", b"d1"]
