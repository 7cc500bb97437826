"""``mqtt-connector demo``: an offline tour on the embedded broker.

Starts the embedded broker on a free port and runs real Sends and Listens through the same
runtime the command line uses, showing retained messages, wildcards and the three QoS levels.
Every step checks what it shows; the demo exits 1 if a promise did not hold.
"""

from __future__ import annotations

import json
from typing import IO, Any

from connector.harness.broker import BrokerThread
from connector.harness.runtime import Runtime
from connector.harness.sinks import document_to_json
from connector.sdk.documents import Document

QUIET_SECONDS = 1.0  # how long a Listen that should receive nothing waits


class _Tour:
    def __init__(self, out: IO[str], runtime: Runtime, connection: dict[str, Any]) -> None:
        self.out = out
        self.runtime = runtime
        self.connection = connection
        self.failures: list[str] = []

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, title: str) -> None:
        self.say()
        self.say(f"== {title}")

    def expect(self, what: str, ok: bool) -> None:
        self.say(f"   [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            self.failures.append(what)

    def send(self, topic: str, payloads: list[str], qos: int = 0, retained: bool = False) -> None:
        op = {"action": "send", "topic": topic, "qos": qos, "retained": retained}
        results = list(self.runtime.send(self.connection, op, payloads))
        good = sum(r.ok for r in results)
        flag = ", retained" if retained else ""
        shown = ", ".join(json.dumps(p) for p in payloads[:3]) + (" ..." if len(payloads) > 3 else "")
        self.say(f"   send {shown} -> {topic!r} (QoS {qos}{flag}): {good}/{len(results)} SUCCESS")
        if good != len(results):
            self.failures.append(f"send to {topic}")

    def show(self, label: str, documents: list[Document], limit: int = 6) -> None:
        self.say(f"   {label}: {len(documents)} document{'s' if len(documents) != 1 else ''}")
        for doc in documents[:limit]:
            self.say("     " + json.dumps(document_to_json(doc), ensure_ascii=False))
        if len(documents) > limit:
            self.say(f"     ... and {len(documents) - limit} more")

    def listen(self, topic: str | list[str], qos: int = 0, count: int | None = None) -> Any:
        op = {"action": "listen", "topic": topic, "qos": qos}
        bg = self.runtime.listen_in_background(self.connection, op, count=count,
                                               timeout=None if count else QUIET_SECONDS)
        bg.wait_ready(10)
        return bg


def run_demo(out: IO[str]) -> int:
    runtime = Runtime()
    with BrokerThread() as broker:
        connection = {"host": broker.host, "port": broker.port}
        tour = _Tour(out, runtime, connection)
        tour.say(f"Embedded MQTT broker (amqtt) started on {broker.host}:{broker.port}; nothing leaves this machine.")
        _retained(tour)
        _wildcards(tour)
        _qos(tour)
        _clear_retained(tour)
    tour.say()
    if tour.failures:
        tour.say(f"demo finished: {len(tour.failures)} check(s) FAILED: {'; '.join(tour.failures)}")
        return 1
    tour.say("demo finished: every check held. Try it yourself: 'mqtt-connector broker' in one terminal, "
             "'mqtt-connector listen --topic \"sensors/#\"' in another, 'mqtt-connector send' in a third.")
    return 0


def _retained(tour: _Tour) -> None:
    tour.step("Retained messages: the last known good value, handed to every new subscription")
    tour.send("sensors/a/temperature", ["21"], qos=1, retained=True)
    tour.send("sensors/b/temperature", ["19.5"], qos=1, retained=True)
    tour.say("   a Listen that starts only now, on sensors/+/temperature:")
    bg = tour.listen("sensors/+/temperature", qos=1, count=2)
    bg.join(10)
    docs = bg.documents
    tour.show("received", docs)
    tour.expect("both retained values arrive once each, flagged retained",
                sorted(d.properties["topic"] for d in docs) == ["sensors/a/temperature", "sensors/b/temperature"]
                and all(d.properties["retained"] for d in docs))


def _wildcards(tour: _Tour) -> None:
    tour.step("Wildcards: '+' is one whole level, '#' the rest; levels may hold spaces; case matters")
    alarms = tour.listen("sensors/smoke alarms/#", qos=1)
    upper = tour.listen("Sensors/#", qos=1)
    tour.send("sensors/smoke alarms/kitchen", ["smoke!"], qos=1)
    tour.send("sensors/smoke alarms/garage/battery", ["low"], qos=1)
    tour.send("sensors/c/humidity", ["40"], qos=1)
    alarms.join(10)
    upper.join(10)
    tour.show("'sensors/smoke alarms/#' received", alarms.documents)
    tour.expect("'sensors/smoke alarms/#' gets the kitchen and garage alarms, not the humidity",
                sorted(d.text for d in alarms.documents) == ["low", "smoke!"])
    tour.show("'Sensors/#' received", upper.documents)
    tour.expect("'Sensors/#' (capital S) matches nothing under 'sensors/'", not upper.documents)


def _qos(tour: _Tour) -> None:
    tour.step("Quality of Service: 0 at most once, 1 at least once, 2 exactly once")
    tour.say("   a Listen subscribed with QoS 2 gets each message at the QoS it was published with:")
    bg = tour.listen("demo/qos", qos=2, count=3)
    for qos in (0, 1, 2):
        tour.send("demo/qos", [f"published with QoS {qos}"], qos=qos)
    bg.join(10)
    tour.show("received", bg.documents)
    delivered = sorted((d.text, d.properties["qos"]) for d in bg.documents)
    tour.expect("each arrives at the lower of the published and the subscribed QoS (0, 1, 2)",
                delivered == [(f"published with QoS {q}", q) for q in (0, 1, 2)])
    n = 200
    tour.say(f"   {n} documents at QoS 2 (exactly once):")
    bg = tour.listen("demo/exactly-once", qos=2, count=n)
    tour.send("demo/exactly-once", [f"#{i}" for i in range(n)], qos=2)
    bg.join(30)
    texts = [d.text for d in bg.documents]
    tour.say(f"   received {len(texts)}, distinct {len(set(texts))}, duplicates {len(texts) - len(set(texts))}")
    tour.expect(f"each of the {n} QoS 2 documents arrives exactly once",
                sorted(texts) == sorted(f"#{i}" for i in range(n)))


def _clear_retained(tour: _Tour) -> None:
    tour.step("Clearing a retained value: send an empty retained message")
    tour.send("sensors/b/temperature", [""], qos=1, retained=True)
    bg = tour.listen("sensors/+/temperature", qos=1)
    bg.join(10)
    tour.show("a new Listen on sensors/+/temperature received", bg.documents)
    tour.expect("only sensors/a/temperature is still retained",
                [d.properties["topic"] for d in bg.documents] == ["sensors/a/temperature"])
