"""MQTT 5 message properties both ways, on Mosquitto (the embedded broker has no MQTT 5)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from brokers import MosquittoBroker
from clirun import run_cli, start_cli
from test_cli import LineReader

from connector.mqtt.broker import BrokerThread
from connector.harness.runtime import Runtime
from connector.mqtt import send as send_module
from connector.mqtt.paho_client import PahoClient
from connector.sdk.documents import Document, Status

WAIT = 15.0


def v5(broker: MosquittoBroker) -> dict:
    return {"host": broker.host, "port": broker.port, "protocol": "5"}


def cli_listen(broker: MosquittoBroker, *args: str) -> tuple[subprocess.Popen, LineReader]:
    proc = start_cli("listen", "--host", broker.host, "--port", str(broker.port), "--protocol", "5", *args,
                     "--verbose")
    stderr = LineReader(proc.stderr)
    while True:
        line = stderr.get(WAIT)
        assert line is not None, f"the Listen did not subscribe: {b''.join(stderr.all)!r}"
        if line.startswith(b"listening on"):
            return proc, LineReader(proc.stdout)


def test_properties_round_trip_through_the_cli(mosquitto: MosquittoBroker, unique: str) -> None:
    """Must show: user properties with a repeated key, content type, response topic, correlation data
    and a 60 s expiry reach a Listen intact in its JSON line, order and repeats kept."""
    topic = f"{unique}/v5"
    proc, out = cli_listen(mosquitto, "--topic", topic, "--qos", "1", "--count", "1")
    try:
        sent = run_cli("send", "--host", mosquitto.host, "--port", str(mosquitto.port), "--protocol", "5",
                       "--topic", topic, "--qos", "1", "--message", "21.5",
                       "--user-property", "unit=celsius", "--user-property", "site=plant 7",
                       "--user-property", "unit=kelvin", "--content-type", "text/plain",
                       "--response-topic", f"{unique}/replies", "--correlation-data", "request-42",
                       "--message-expiry", "60")
        assert sent.returncode == 0, sent.stderr
        line = out.get(WAIT)
        assert line is not None
        assert proc.wait(WAIT) == 0
    finally:
        proc.kill()
    properties = json.loads(line)["properties"]
    assert properties["user_properties"] == [["unit", "celsius"], ["site", "plant 7"], ["unit", "kelvin"]]
    assert properties["content_type"] == "text/plain"
    assert properties["response_topic"] == f"{unique}/replies"
    assert properties["correlation_data"] == "request-42"
    assert 0 < properties["message_expiry_interval"] <= 60


def test_request_reply_with_two_harness_operations(mosquitto: MosquittoBroker, unique: str) -> None:
    """The requester sends with a response topic and correlation data; the responder's Listen reads
    them and its Send replies there with the same correlation data (a document's own topic)."""
    runtime, conn = Runtime(default_connector="mqtt"), v5(mosquitto)
    requests, replies = f"{unique}/requests", f"{unique}/replies/requester-1"
    with runtime.listen_in_background(conn, {"action": "listen", "topic": replies, "qos": 1}, count=1) as requester, \
            runtime.listen_in_background(conn, {"action": "listen", "topic": requests, "qos": 1}, count=1) as responder:
        requester.wait_ready()
        responder.wait_ready()
        correlation = b"\x00\xffid-7"  # not UTF-8: bytes both ways
        asked = list(runtime.send(conn, {"action": "send", "topic": requests, "qos": 1, "response_topic": replies},
                                  [Document(b"2+2", {"correlation_data": correlation})]))
        assert asked[0].ok, asked
        responder.join(WAIT)
        request = responder.documents[0]
        assert request.properties["response_topic"] == replies
        reply = Document(str(eval(request.payload.decode(), {})).encode(),  # the process: a calculator
                         {"topic": request.properties["response_topic"],
                          "correlation_data": request.properties["correlation_data"]})
        answered = list(runtime.send(conn, {"action": "send", "topic": f"{unique}/unused", "qos": 1}, [reply]))
        assert answered[0].ok, answered
    got = requester.documents[0]
    assert (got.payload, got.properties["correlation_data"]) == (b"4", correlation)


def test_document_properties_add_to_and_override_the_operations(mosquitto: MosquittoBroker, unique: str) -> None:
    runtime, conn = Runtime(default_connector="mqtt"), v5(mosquitto)
    topic = f"{unique}/mix"
    operation = {"action": "send", "topic": topic, "qos": 1, "user_properties": [["source", "op"]],
                 "content_type": "text/plain"}
    documents = [
        Document(b"a"),
        Document(b"b", {"user_properties": [["source", "doc"]], "content_type": "application/json"}),
        Document(b"c", {"user_properties": [["bad"]]}),                    # not a pair: refused
        Document(b"d", {"response_topic": "replies/#"}),                   # a wildcard: refused
        Document(b"e", {"message_expiry_interval": -1}),                   # refused
    ]
    with runtime.listen_in_background(conn, {"action": "listen", "topic": topic, "qos": 1}, count=2) as bg:
        bg.wait_ready()
        results = list(runtime.send(conn, operation, documents))
    assert [r.status for r in results] == [Status.SUCCESS, Status.SUCCESS] + [Status.APPLICATION_ERROR] * 3
    assert "pair" in results[2].error and "wildcard" in results[3].error and "4294967295" in results[4].error
    first, second = (d.properties for d in bg.documents)
    assert (first["user_properties"], first["content_type"]) == ([["source", "op"]], "text/plain")
    assert (second["user_properties"], second["content_type"]) == ([["source", "op"], ["source", "doc"]],
                                                                   "application/json")


def test_messages_without_properties_have_none(mosquitto: MosquittoBroker, unique: str) -> None:
    runtime, conn = Runtime(default_connector="mqtt"), v5(mosquitto)
    topic = f"{unique}/plain"
    with runtime.listen_in_background(conn, {"action": "listen", "topic": topic, "qos": 1}, count=1) as bg:
        bg.wait_ready()
        assert all(r.ok for r in runtime.send(conn, {"action": "send", "topic": topic, "qos": 1}, ["x"]))
    assert set(bg.documents[0].properties) == {"topic", "qos", "retained", "duplicate", "message_id", "received_at"}


@pytest.mark.parametrize("flag", [["--user-property", "k=v"], ["--content-type", "text/plain"],
                                  ["--message-expiry", "60"], ["--response-topic", "r"], ["--correlation-data", "c"]])
def test_mqtt5_properties_over_mqtt_311_are_bad_input(flag: list[str], mosquitto: MosquittoBroker) -> None:
    done = run_cli("send", "--host", mosquitto.host, "--port", str(mosquitto.port), "--topic", "t", "--message", "x",
                   *flag)
    assert done.returncode == 2
    assert done.stderr.decode().strip().endswith("connect with protocol 5 (--protocol 5)")


def test_document_properties_of_mqtt5_over_mqtt_311_are_left_out_with_a_warning(
        mosquitto: MosquittoBroker, unique: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(send_module, "_warned", [])  # once per process: this test sees its own
    runtime = Runtime(default_connector="mqtt")
    conn = {"host": mosquitto.host, "port": mosquitto.port}
    results = list(runtime.send(conn, {"action": "send", "topic": f"{unique}/old", "qos": 1},
                                [Document(b"x", {"content_type": "text/plain"})] * 3))
    assert all(r.ok for r in results)
    assert sum("MQTT 3.1.1 cannot send" in r.message for r in caplog.records) == 1


def test_the_embedded_broker_says_it_has_no_mqtt5() -> None:
    with BrokerThread() as broker:
        done = run_cli("send", "--host", broker.host, "--port", str(broker.port), "--protocol", "5", "--topic", "t",
                       "--message", "x")
    assert done.returncode == 3
    assert "does not speak MQTT 5: use protocol 3.1.1" in done.stderr.decode()


# -- subscriptions: QoS per filter, MQTT 5 subscription options ------------------------------------

def test_each_filter_gets_its_own_qos(mosquitto: MosquittoBroker, unique: str) -> None:
    runtime, conn = Runtime(default_connector="mqtt"), v5(mosquitto)
    alarms, readings = f"{unique}/alarms", f"{unique}/readings"
    operation = {"action": "listen", "topic": [f"{alarms}/#", f"{readings}/#"], "qos": 0,
                 "filter_qos": {f"{alarms}/#": 2}}
    with runtime.listen_in_background(conn, operation, count=2) as bg:
        bg.wait_ready()
        for topic in (f"{alarms}/fire", f"{readings}/t"):
            assert all(r.ok for r in runtime.send(conn, {"action": "send", "topic": topic, "qos": 2}, ["x"]))
    assert sorted((d.properties["topic"], d.properties["qos"]) for d in bg.documents) == [
        (f"{alarms}/fire", 2), (f"{readings}/t", 0)]


def test_filter_qos_for_an_unknown_filter_is_bad_input(mosquitto: MosquittoBroker) -> None:
    done = run_cli("listen", "--port", str(mosquitto.port), "--topic", "a/#", "--filter-qos", "b/#=2", "--count", "1")
    assert done.returncode == 2
    assert "'b/#' is not one of the Listen's filters" in done.stderr.decode()


def test_no_local_keeps_a_listens_own_dead_letters_away(mosquitto: MosquittoBroker, unique: str) -> None:
    """A Listen of orders/# whose dead-letter topic is orders/dead would get its own dead letters back
    (and fail for them again) without no_local."""
    runtime, conn = Runtime(default_connector="mqtt"), v5(mosquitto)
    seen: list[bytes] = []

    def process(document: Document) -> None:
        seen.append(document.payload)
        raise RuntimeError("cannot take it")

    operation = {"action": "listen", "topic": f"{unique}/orders/#", "qos": 1, "max_attempts": 1,
                 "dead_letter_topic": f"{unique}/orders/dead", "no_local": True}
    with runtime.listen_in_background({**conn, "client_id": f"{unique}-own"}, operation, process,
                                      timeout=1.5) as bg, \
            runtime.listen_in_background(conn, {"action": "listen", "topic": f"{unique}/orders/dead", "qos": 1},
                                         count=1) as letters:
        bg.wait_ready()
        letters.wait_ready()
        assert all(r.ok for r in runtime.send(conn, {"action": "send", "topic": f"{unique}/orders/1", "qos": 1},
                                              ["order"]))
    assert seen == [b"order"]  # not its own dead letter too
    assert bg.outcome is not None and bg.outcome.dead_lettered == 1
    assert json.loads(letters.documents[0].payload)["payload"] == "order"


def test_retain_as_published_and_retain_handling(mosquitto: MosquittoBroker, unique: str) -> None:
    runtime, conn = Runtime(default_connector="mqtt"), v5(mosquitto)
    topic = f"{unique}/status"
    assert all(r.ok for r in runtime.send(conn, {"action": "send", "topic": topic, "qos": 1, "retained": True},
                                          ["stored"]))
    never = {"action": "listen", "topic": topic, "qos": 1, "retain_handling": 2, "retain_as_published": True}
    with runtime.listen_in_background(conn, never, count=1) as bg:
        bg.wait_ready()
        assert all(r.ok for r in runtime.send(conn, {"action": "send", "topic": topic, "qos": 1, "retained": True},
                                              ["live"]))
    # Retain handling 2: the stored message was not sent; retain as published: the live one says retained.
    assert [(d.payload, d.properties["retained"]) for d in bg.documents] == [(b"live", True)]
    runtime.send(conn, {"action": "send", "topic": topic, "qos": 1, "retained": True}, [""])  # clear it


# -- duplicate suppression ---------------------------------------------------------------------------

def test_a_duplicate_window_drops_repeats_and_counts_them(mosquitto: MosquittoBroker, unique: str) -> None:
    runtime, conn = Runtime(default_connector="mqtt"), v5(mosquitto)
    topic = f"{unique}/dedupe"
    stamped = [Document(b"a", {"user_properties": [["msg-id", "run-0"]]}),
               Document(b"a", {"user_properties": [["msg-id", "run-0"]]}),  # a repeat, as QoS 1 allows
               Document(b"b", {"user_properties": [["msg-id", "run-1"]]}),
               Document(b"c")]                                               # no id: always handed over
    operation = {"action": "listen", "topic": topic, "qos": 1, "dedupe_window": 100}
    with runtime.listen_in_background(conn, operation, count=3) as bg:
        bg.wait_ready()
        assert all(r.ok for r in runtime.send(conn, {"action": "send", "topic": topic, "qos": 1}, stamped))
    assert [d.payload for d in bg.documents] == [b"a", b"b", b"c"]
    assert bg.outcome is not None and bg.outcome.repeats_dropped == 1


def test_send_stamps_a_unique_id_per_document(mosquitto: MosquittoBroker, unique: str) -> None:
    runtime, conn = Runtime(default_connector="mqtt"), v5(mosquitto)
    topic = f"{unique}/stamped"
    with runtime.listen_in_background(conn, {"action": "listen", "topic": topic, "qos": 1}, count=3) as bg:
        bg.wait_ready()
        assert all(r.ok for r in runtime.send(conn, {"action": "send", "topic": topic, "qos": 1, "stamp_id": True},
                                              ["a", "b", "c"]))
    ids = [dict(map(tuple, d.properties["user_properties"]))["msg-id"] for d in bg.documents]
    assert len(set(ids)) == 3 and len({i.rsplit("-", 1)[0] for i in ids}) == 1  # one run, three documents


def test_receive_maximum_slows_what_the_broker_sends_unacknowledged(mosquitto: MosquittoBroker, unique: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow process: with receive_maximum 2 the broker holds messages back until the earlier ones are
    acknowledged; without it, it sends all 30 at once. (Mosquitto 2.0.11 keeps the limit loosely: up to
    15 unacknowledged were seen with 2; the connector only asks.)"""
    unacknowledged: list[int] = []
    receive = PahoClient._receive  # every PUBLISH read

    def counting(client: PahoClient, command: int, body: bytes) -> object:
        done = receive(client, command, body)
        unacknowledged.append(len(client._received))  # received by the Listen, not yet acknowledged
        return done

    monkeypatch.setattr(PahoClient, "_receive", counting)
    runtime, most = Runtime(default_connector="mqtt"), {}
    for limit in (None, 2):
        topic = f"{unique}/slow-{limit}"
        unacknowledged.clear()
        with runtime.listen_in_background({**v5(mosquitto), "receive_maximum": limit},
                                          {"action": "listen", "topic": topic, "qos": 1},
                                          lambda document: time.sleep(0.01), count=30) as bg:
            bg.wait_ready()
            assert all(r.ok for r in runtime.send(v5(mosquitto), {"action": "send", "topic": topic, "qos": 1},
                                                  [str(i) for i in range(30)]))
        assert bg.outcome is not None and bg.outcome.accepted == 30
        most[limit] = max(unacknowledged)
    assert most[2] < most[None], most
