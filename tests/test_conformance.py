"""The conformance suite: what the seed and MQTT 3.1.1 promise, through the connector (Send and
Listen via the Runtime API), on every broker of ``any_broker`` (tests/conftest.py): the embedded
broker, Mosquitto (persistence on), NATS (MQTT listener) and RabbitMQ (MQTT plugin).

A broker's documented limit is asserted as such (e.g. NATS and RabbitMQ grant QoS 1 for a QoS 2
subscription: the test checks the grant is 1 and the connector warned); what a broker gets wrong
and cannot be fixed is a strict xfail naming the reason (``KNOWN_LIMITS``), listed in docs/.
The table in docs/conformance.md is generated from a run: ``python tests/conformance_table.py``.

Raw sockets or paho only where the connector cannot express the case (a will message: the
connector has no will option, and it always disconnects cleanly).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from brokers import Endpoint, remaining_length
from connector.harness.runtime import BackgroundListen, Runtime
from connector.sdk.documents import Document
from connector.sdk.errors import ConnectError

TIMEOUT = 30.0
#: After the sentinel arrived, how long a test lets stray duplicates show up (bounded, not a sync).
QUIET = 0.5

#: The highest QoS each broker grants a subscription (documented: NATS 2.9 and RabbitMQ 3.10 have no
#: QoS 2 for subscriptions and grant QoS 1).
MAX_GRANTED = {"embedded": 2, "mosquitto": 2, "nats": 1, "rabbitmq": 1}

#: What a broker without shared subscriptions does with one (seen on each: the Listens get nothing).
NO_SHARED_SUBSCRIPTIONS = ("{} has no shared subscriptions: it grants '$share/GROUP/FILTER' as a plain filter, "
                           "which no topic matches, so the Listens of the group get nothing")

#: broker -> test name -> why it fails (a strict xfail: a fix makes it fail, so the entry goes).
KNOWN_LIMITS: dict[str, dict[str, str]] = {
    "embedded": {},
    "nats": {
        "test_shared_subscription_deals_each_message_to_one_listen":
            NO_SHARED_SUBSCRIPTIONS.format("NATS (2.9.10, and 2.12.8 across the nodes of a cluster)"),
        "test_filter_with_spaces":
            "NATS maps MQTT topics to NATS subjects, which cannot hold spaces: it refuses such a "
            "subscription and drops a client that publishes to such a topic",
        "test_retained_once_per_matching_subscription_never_to_others":
            "the topics have spaces ('smoke alarms'), which NATS cannot map to subjects",
    },
    "rabbitmq": {
        "test_shared_subscription_deals_each_message_to_one_listen":
            NO_SHARED_SUBSCRIPTIONS.format("RabbitMQ 3.10's MQTT plugin"),
        "test_retained_once_per_matching_subscription_never_to_others":
            "RabbitMQ 3.10 sends a retained message only to a subscription to its exact topic, "
            "never to a wildcard filter (documented limit of its MQTT plugin)",
    },
}

#: Brokers that refuse a QoS 2 PUBLISH (documented: NATS 2.9 closes the connection). The connector
#: must then report every such document as FAILURE, never as sent: that is asserted instead.
NO_QOS2_PUBLISH = {"nats": "NATS 2.9 has no QoS 2: a QoS 2 PUBLISH closes the connection"}


#: The connection settings of every Send of a test: a known limit's test fails by waiting out the
#: broker's silence, so there it waits 3 s for a confirmation instead of the broker's default.
_SEND_SETTINGS: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _known_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    callspec = getattr(request.node, "callspec", None)
    reason = None
    if callspec is not None and "any_broker" in callspec.params:
        reason = KNOWN_LIMITS.get(callspec.params["any_broker"], {}).get(request.node.originalname)
    if reason:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
        _SEND_SETTINGS["ack_timeout"] = 3.0
    try:
        yield
    finally:
        _SEND_SETTINGS.clear()


class Recorder:
    """A sink that keeps documents and lets the test wait for a condition on them."""

    def __init__(self, refuse: Callable[[Document], bool] | None = None) -> None:
        self.documents: list[Document] = []
        self._cond = threading.Condition()
        self._refuse = refuse

    def __call__(self, document: Document) -> None:
        if self._refuse is not None and self._refuse(document):
            raise RuntimeError("refused by the test's process")
        with self._cond:
            self.documents.append(document)
            self._cond.notify_all()

    def wait_until(self, predicate: Callable[[list[Document]], bool], timeout: float = TIMEOUT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.documents), timeout)

    def wait_topic(self, topic: str, timeout: float = TIMEOUT) -> None:
        assert self.wait_until(lambda docs: any(topic_of(d) == topic for d in docs), timeout), \
            f"{topic!r} did not arrive within {timeout:g} s; got {self.topics()}"
        time.sleep(QUIET)

    def topics(self) -> list[str]:
        return [topic_of(d) for d in self.documents]

    def of(self, topic: str) -> list[Document]:
        return [d for d in self.documents if topic_of(d) == topic]


def topic_of(document: Document) -> str:
    return str(document.properties["topic"])


def payload(document: Document) -> str:
    return bytes(document.payload).decode("utf-8")


#: NATS 2.9 on a busy machine sometimes times out its own internal JetStream requests (4 s, logged
#: as "timeout for request type ...") and closes a CONNECT: a connection refused this way is tried
#: again (once, on NATS only), so that the suite shows MQTT behaviour rather than the machine's load.
CONNECT_RETRIES = {"nats": 1}


def send(runtime: Runtime, broker: Endpoint, topic: str, *payloads: str | bytes, qos: int = 1,
         retained: bool = False) -> None:
    operation = {"action": "send", "topic": topic, "qos": qos, "retained": retained}
    for attempt in range(CONNECT_RETRIES.get(broker.name, 0) + 1):
        try:
            results = list(runtime.send(broker.connection(**_SEND_SETTINGS), operation, list(payloads)))
            break
        except ConnectError:
            if attempt == CONNECT_RETRIES.get(broker.name, 0):
                raise
    assert [r.status.value for r in results] == ["SUCCESS"] * len(payloads), [r.to_json() for r in results]


def qos2_publish_refused(runtime: Runtime, broker: Endpoint, topic: str,
                         record_property: Callable[[str, object], None]) -> bool:
    """On a broker without QoS 2 publishing, assert that the connector reports the failure (and
    record the limit for the table); False where QoS 2 publishing is expected to work."""
    limit = NO_QOS2_PUBLISH.get(broker.name)
    if limit is None:
        return False
    operation = {"action": "send", "topic": topic, "qos": 2, "retained": False}
    results = list(runtime.send(broker.connection(ack_timeout=5), operation, ["a", "b"]))
    assert [r.status.value for r in results] == ["FAILURE", "FAILURE"], [r.to_json() for r in results]
    record_property("limit", f"{limit} (asserted: each document is reported as FAILURE)")
    return True


@contextmanager
def listening(runtime: Runtime, broker: Endpoint, *filters: str, qos: int = 1, sink: Recorder | None = None,
              count: int | None = None, client_id: str | None = None, ready: bool = True,
              **options: Any) -> Iterator[tuple[BackgroundListen, Recorder]]:
    """A Listen in the background (persistent when ``client_id`` is given), subscribed on entry;
    ``options`` go to the operation."""
    recorder = sink or Recorder()
    extra: dict[str, Any] = {"client_id": client_id, "clean_session": False} if client_id else {}
    operation = {"action": "listen", "topic": list(filters) if len(filters) > 1 else filters[0], "qos": qos,
                 **options}
    bg = runtime.listen_in_background(broker.connection(**extra), operation, recorder, count=count)
    try:
        if ready:
            try:
                bg.wait_ready(TIMEOUT)
            except ConnectError:
                if not CONNECT_RETRIES.get(broker.name):
                    raise
                bg = runtime.listen_in_background(broker.connection(**extra), operation, recorder, count=count)
                bg.wait_ready(TIMEOUT)
        yield bg, recorder
    finally:
        bg.stop()
        bg.join(TIMEOUT)


# -- wildcards, names ------------------------------------------------------------------------------


def test_plus_matches_exactly_one_level(any_broker: Endpoint, runtime: Runtime, unique: str) -> None:
    end = f"{unique}/end"
    with listening(runtime, any_broker, f"{unique}/+/temperature", end) as (_, got):
        for topic in (f"{unique}/a/temperature", f"{unique}/a/b/temperature", f"{unique}/temperature",
                      f"{unique}//temperature", end):
            send(runtime, any_broker, topic, topic)
        got.wait_topic(end)
    assert got.topics() == [f"{unique}/a/temperature", f"{unique}//temperature", end]


def test_hash_matches_the_parent_and_every_level_below(any_broker: Endpoint, runtime: Runtime, unique: str) -> None:
    end = f"{unique}/end"
    with listening(runtime, any_broker, f"{unique}/a/#", end) as (_, got):
        for topic in (f"{unique}/a", f"{unique}/a/b", f"{unique}/a/b/c", f"{unique}/ab", f"{unique}/b/a", end):
            send(runtime, any_broker, topic, topic)
        got.wait_topic(end)
    assert got.topics() == [f"{unique}/a", f"{unique}/a/b", f"{unique}/a/b/c", end]


def test_filter_with_spaces(any_broker: Endpoint, runtime: Runtime, unique: str) -> None:
    base = f"{unique}/sensors/smoke alarms"
    end = f"{unique}/end"
    with listening(runtime, any_broker, f"{base}/#", end) as (_, got):
        for topic in (f"{unique}/sensors/smoke/kitchen", f"{base}/kitchen", f"{base}/garage door/battery",
                      f"{unique}/sensors/smoke alarms2/x", end):
            send(runtime, any_broker, topic, topic)
        got.wait_topic(end)
    assert got.topics() == [f"{base}/kitchen", f"{base}/garage door/battery", end]


def test_leading_slash_is_an_empty_first_level(any_broker: Endpoint, runtime: Runtime, unique: str) -> None:
    end = f"{unique}/end"
    with listening(runtime, any_broker, f"+/{unique}/x", end) as (_, plus), \
            listening(runtime, any_broker, f"/{unique}/#", end) as (_, slash):
        for topic in (f"/{unique}/x", f"{unique}/x", end):
            send(runtime, any_broker, topic, topic)
        plus.wait_topic(end)
        slash.wait_topic(end)
    assert plus.topics() == [f"/{unique}/x", end]
    assert slash.topics() == [f"/{unique}/x", end]


def test_topics_are_case_sensitive(any_broker: Endpoint, runtime: Runtime, unique: str) -> None:
    end = f"{unique}/end"
    with listening(runtime, any_broker, f"{unique}/Room/#", end) as (_, upper), \
            listening(runtime, any_broker, f"{unique}/room/#", end) as (_, lower):
        for topic in (f"{unique}/room/t", f"{unique}/Room/t", f"{unique}/ROOM/t", end):
            send(runtime, any_broker, topic, topic)
        upper.wait_topic(end)
        lower.wait_topic(end)
    assert upper.topics() == [f"{unique}/Room/t", end]
    assert lower.topics() == [f"{unique}/room/t", end]


def test_dollar_topics_not_matched_by_wildcards(any_broker: Endpoint, runtime: Runtime, unique: str) -> None:
    dollar, plain = f"${unique}/d", f"{unique}/d"
    with listening(runtime, any_broker, "#") as (_, hash_all), \
            listening(runtime, any_broker, "+/d") as (_, plus), \
            listening(runtime, any_broker, f"${unique}/#") as (_, named):
        if any_broker.embedded is not None:
            # amqtt refuses PUBLISH to $-topics from clients (a broker's right: $ names are its own),
            # so the broker publishes it itself, as it does for $SYS.
            any_broker.embedded.call(lambda: any_broker.embedded.broker.internal_message_broadcast(dollar, b"dollar", 1))
        else:
            send(runtime, any_broker, dollar, "dollar")
        send(runtime, any_broker, plain, "plain")
        named.wait_topic(dollar)  # the broker took the $-topic: a filter naming it receives it
        hash_all.wait_topic(plain)
        plus.wait_topic(plain)
    assert not [t for t in hash_all.topics() if t.startswith("$")]
    assert not [t for t in plus.topics() if t.startswith("$")]


# -- retained messages -----------------------------------------------------------------------------


def test_retained_last_known_good_value_flagged_on_a_new_subscription(any_broker: Endpoint, runtime: Runtime,
                                                                       unique: str) -> None:
    topic = f"{unique}/r/temperature"
    send(runtime, any_broker, topic, "20", retained=True)
    send(runtime, any_broker, topic, "21", retained=True)
    end = f"{unique}/end"
    with listening(runtime, any_broker, topic, end) as (_, got):
        send(runtime, any_broker, topic, "22")
        send(runtime, any_broker, end, "end")
        got.wait_topic(end)
    assert [(payload(d), d.properties["retained"]) for d in got.of(topic)] == [("21", True), ("22", False)]


def test_retained_once_per_matching_subscription_never_to_others(any_broker: Endpoint, runtime: Runtime,
                                                                 unique: str) -> None:
    base = f"{unique}/r"
    alarm = f"{base}/sensors/smoke alarms/kitchen"
    send(runtime, any_broker, f"{base}/sensors/temperature", "21", retained=True)
    send(runtime, any_broker, alarm, "ok", retained=True)
    end = f"{unique}/end"
    with listening(runtime, any_broker, f"{base}/#", end) as (_, everything), \
            listening(runtime, any_broker, f"{base}/sensors/smoke alarms/#", end) as (_, alarms), \
            listening(runtime, any_broker, f"{unique}/other/#", end) as (_, other):
        send(runtime, any_broker, end, "end")
        for got in (everything, alarms, other):
            got.wait_topic(end)
    assert sorted((topic_of(d), d.properties["retained"]) for d in everything.documents if topic_of(d) != end) == \
        [(f"{base}/sensors/smoke alarms/kitchen", True), (f"{base}/sensors/temperature", True)]
    assert [(topic_of(d), d.properties["retained"]) for d in alarms.documents] == [(alarm, True), (end, False)]
    assert other.topics() == [end]


def test_retained_cleared_by_an_empty_retained_message(any_broker: Endpoint, runtime: Runtime, unique: str) -> None:
    topic = f"{unique}/r/state"
    send(runtime, any_broker, topic, "on", retained=True)
    send(runtime, any_broker, topic, b"", retained=True)
    end = f"{unique}/end"
    with listening(runtime, any_broker, topic, end) as (_, got):
        send(runtime, any_broker, end, "end")
        got.wait_topic(end)
    assert got.topics() == [end]


# -- QoS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("published", [0, 1, 2])
def test_delivered_qos_is_the_lower_of_published_and_granted(published: int, any_broker: Endpoint, runtime: Runtime,
                                                             unique: str, record_property: Any) -> None:
    topic = f"{unique}/q"
    if published == 2 and qos2_publish_refused(runtime, any_broker, topic, record_property):
        return
    with listening(runtime, any_broker, topic, qos=0) as (_, q0), \
            listening(runtime, any_broker, topic, qos=1) as (_, q1), \
            listening(runtime, any_broker, topic, qos=2) as (_, q2):
        send(runtime, any_broker, topic, "x", qos=published)
        for got in (q0, q1, q2):
            got.wait_topic(topic)
    granted = [0, 1, min(2, MAX_GRANTED[any_broker.name])]
    if granted[2] < 2:
        record_property("limit", f"a QoS 2 subscription is granted QoS {granted[2]} (asserted)")
    assert [[d.properties["qos"] for d in got.documents] for got in (q0, q1, q2)] == \
        [[min(published, g)] for g in granted]


def test_qos2_subscription_grant_is_reported(any_broker: Endpoint, runtime: Runtime, unique: str,
                                             caplog: pytest.LogCaptureFixture, record_property: Any) -> None:
    """Where a broker grants less than QoS 2 (a documented limit), the connector says so."""
    caplog.set_level(logging.WARNING, logger="connector.mqtt")
    topic = f"{unique}/q2"
    with listening(runtime, any_broker, topic, qos=2) as (_, got):
        send(runtime, any_broker, topic, "x", qos=1 if any_broker.name in NO_QOS2_PUBLISH else 2)
        got.wait_topic(topic)
    warnings = [r.getMessage() for r in caplog.records if "granted QoS" in r.getMessage()]
    expected = MAX_GRANTED[any_broker.name]
    assert got.documents[0].properties["qos"] == expected
    if expected < 2:
        assert warnings == [f"the broker granted QoS {expected} for {topic!r} where 2 was asked"]
        record_property("limit", f"a QoS 2 subscription is granted QoS {expected} (asserted, with the connector's warning)")
    else:
        assert warnings == []


def test_qos2_exactly_once(any_broker: Endpoint, runtime: Runtime, unique: str, record_property: Any) -> None:
    topic = f"{unique}/once"
    if qos2_publish_refused(runtime, any_broker, topic, record_property):
        return
    # More than the broker's in-flight window (Mosquitto: 20), so that the connector's window is what
    # keeps Mosquitto 2.0 from confirming and then losing QoS 2 messages (its issues 2876, 3056).
    sent = [str(i) for i in range(200)]
    with listening(runtime, any_broker, topic, qos=2) as (_, got):
        send(runtime, any_broker, topic, *sent, qos=2)
        assert got.wait_until(lambda docs: len(docs) >= len(sent)), f"{len(got.documents)} of {len(sent)} arrived"
        time.sleep(QUIET)
    assert [payload(d) for d in got.documents] == sent
    assert {d.properties["qos"] for d in got.documents} == {MAX_GRANTED[any_broker.name]}
    if MAX_GRANTED[any_broker.name] < 2:
        record_property("limit", "delivered at QoS 1: the subscription is granted QoS 1 (asserted)")
    assert not [d for d in got.documents if d.properties["duplicate"]]


# -- persistent sessions -------------------------------------------------------------------------


@pytest.mark.parametrize("qos", [1, 2])
def test_persistent_listen_receives_what_was_sent_while_away(qos: int, any_broker: Endpoint, runtime: Runtime,
                                                            unique: str, record_property: Any) -> None:
    topic, client_id = f"{unique}/away", f"conf-{uuid.uuid4().hex[:10]}"
    if qos == 2 and qos2_publish_refused(runtime, any_broker, topic, record_property):
        return
    with listening(runtime, any_broker, topic, qos=qos, client_id=client_id):
        pass  # the session and its subscription now exist; the Listen goes away
    sent = [f"m{i}" for i in range(5)]
    send(runtime, any_broker, topic, *sent, qos=qos)
    with listening(runtime, any_broker, topic, qos=qos, client_id=client_id, count=5, ready=False) as (bg, got):
        assert got.wait_until(lambda docs: len(docs) >= 5), f"only {got.topics()} came back"
    assert [payload(d) for d in got.documents] == sent
    assert not [d for d in got.documents if d.properties["retained"]]


def test_unacked_message_redelivered_after_reconnect(any_broker: Endpoint, runtime: Runtime, unique: str,
                                                    record_property: Any) -> None:
    """A message the process refused is not acknowledged: the broker sends it again to the session."""
    if any_broker.name == "nats":
        record_property("limit", "NATS resends an unacknowledged message after its ack_wait (set to 5 s by the "
                                 "fixture; default 30 s), not at the reconnect")
    topic, client_id = f"{unique}/unacked", f"conf-{uuid.uuid4().hex[:10]}"
    refusing = Recorder(refuse=lambda d: True)
    with listening(runtime, any_broker, topic, qos=1, client_id=client_id, sink=refusing, retry_delay=0.05) as (bg, _):
        send(runtime, any_broker, topic, "important", qos=1)
        outcome = bg.join(TIMEOUT)
    assert outcome.reason == "refused"
    with listening(runtime, any_broker, topic, qos=1, client_id=client_id, count=1, ready=False) as (_, got):
        assert got.wait_until(lambda docs: len(docs) >= 1), "the unacknowledged message was not redelivered"
    assert payload(got.documents[0]) == "important"


# -- overlapping subscriptions, will -------------------------------------------------------------


def test_overlapping_subscriptions(any_broker: Endpoint, runtime: Runtime, unique: str) -> None:
    """A message matching two filters of one Listen arrives (once per subscription at most: MQTT 3.1.1
    lets the broker send one copy or one per subscription), at the QoS granted."""
    topic, end = f"{unique}/o/x", f"{unique}/end"
    with listening(runtime, any_broker, f"{unique}/o/#", f"{unique}/+/x", end, qos=1) as (_, got):
        send(runtime, any_broker, topic, "both", qos=1)
        send(runtime, any_broker, end, "end")
        got.wait_topic(end)
    copies = got.of(topic)
    assert 1 <= len(copies) <= 2
    assert {(payload(d), d.properties["qos"]) for d in copies} == {("both", 1)}


def test_shared_subscription_deals_each_message_to_one_listen(any_broker: Endpoint, runtime: Runtime,
                                                              unique: str) -> None:
    """Two Listens in one group (``$share/GROUP/FILTER``, MQTT 5 and a common extension of 3.1.1)
    split the messages: each arrives once, at one of them, and both get some. Both also subscribe
    to a plain topic, whose message sent last tells when the group's have come."""
    shared, end, count = f"$share/{unique}-workers/{unique}/jobs/#", f"{unique}/end", 20
    with listening(runtime, any_broker, shared, end) as (_, first), \
            listening(runtime, any_broker, shared, end) as (_, second):
        send(runtime, any_broker, f"{unique}/jobs/new", *(f"job-{i}" for i in range(count)))
        send(runtime, any_broker, end, "end")
        first.wait_topic(end)
        second.wait_topic(end)

        def jobs() -> list[str]:
            return [payload(d) for got in (first, second) for d in got.documents if topic_of(d) != end]
        deadline = time.monotonic() + 2 * QUIET  # the group's messages may come after the plain one
        while len(jobs()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sorted(jobs()) == sorted(f"job-{i}" for i in range(count)), f"not each job once: {sorted(jobs())}"
    assert first.of(f"{unique}/jobs/new") and second.of(f"{unique}/jobs/new"), "one Listen of the group got every job"


def _text(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def test_will_message_on_an_unclean_disconnect(any_broker: Endpoint, runtime: Runtime, unique: str) -> None:
    """The connector has no will option yet: a raw MQTT 3.1.1 client with a will drops its socket."""
    will_topic = f"{unique}/will"
    with listening(runtime, any_broker, will_topic, qos=1) as (_, got):
        flags = 0x02 | 0x04 | 0x08  # clean session, will flag, will QoS 1
        body = (_text(b"MQTT") + b"\x04" + bytes([flags]) + (30).to_bytes(2, "big")
                + _text(f"will-{uuid.uuid4().hex[:8]}".encode()) + _text(will_topic.encode()) + _text(b"gone"))
        with socket.create_connection((any_broker.host, any_broker.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"\x10" + remaining_length(len(body)) + body)
            connack = sock.recv(4)
            assert connack[:1] == b"\x20" and connack[3:4] == b"\x00", connack
        # closed without DISCONNECT: the broker publishes the will
        got.wait_topic(will_topic)
    assert [(payload(d), d.properties["qos"]) for d in got.documents] == [("gone", 1)]


# -- Mosquitto variant: password file + ACL ------------------------------------------------------


def test_mosquitto_password_file_and_acl(mosquitto_factory: Callable[..., Any], runtime: Runtime, unique: str) -> None:
    """Users from a password file, each limited by an ACL: a wrong password is refused at connect,
    a publish outside the user's write rights never reaches a Listen."""
    acl = f"user alice\ntopic readwrite {unique}/#\n\nuser bob\ntopic read {unique}/#\n"
    running = mosquitto_factory(passwords={"alice": "wonderland", "bob": "builder"}, acl=acl)
    broker = Endpoint("mosquitto", running.host, running.port)
    with pytest.raises(ConnectError, match="Not authorized|user name or password"):
        runtime.check(broker.connection(username="alice", password="wrong"))
    end = f"{unique}/end"

    def send_as(user: str, password: str, topic: str, text: str) -> None:
        operation = {"action": "send", "topic": topic, "qos": 1, "retained": False}
        results = list(runtime.send(broker.connection(username=user, password=password), operation, [text]))
        assert [r.status.value for r in results] == ["SUCCESS"]  # MQTT 3.1.1 acks a denied PUBLISH too

    operation = {"action": "listen", "topic": f"{unique}/#", "qos": 1}
    recorder = Recorder()
    bg = runtime.listen_in_background(broker.connection(username="bob", password="builder"), operation, recorder)
    with bg:
        bg.wait_ready(TIMEOUT)
        send_as("alice", "wonderland", f"{unique}/x", "from alice")
        send_as("bob", "builder", f"{unique}/y", "from bob, who may only read")
        send_as("alice", "wonderland", end, "end")
        recorder.wait_topic(end)
    assert [(topic_of(d), payload(d)) for d in recorder.documents] == [(f"{unique}/x", "from alice"), (end, "end")]
