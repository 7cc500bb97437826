"""``mqtt-connector demo``: an offline tour on the embedded broker.

Starts the embedded broker on a free port and runs real Sends and Listens through the same
runtime the command line uses, showing retained messages, wildcards, the three QoS levels, a
dead-letter topic for a process that fails, and a shared subscription split between two Listens.
Every step checks what it shows; the demo exits 1 if a promise did not hold.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

from connector.mqtt.broker import BrokerThread
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
            line = document_to_json(doc, self.runtime.manifest("mqtt").byte_properties)
            self.say("     " + json.dumps(line, ensure_ascii=False))
        if len(documents) > limit:
            self.say(f"     ... and {len(documents) - limit} more")

    def listen(self, topic: str | list[str], qos: int = 0, count: int | None = None) -> Any:
        op = {"action": "listen", "topic": topic, "qos": qos}
        bg = self.runtime.listen_in_background(self.connection, op, count=count,
                                               timeout=None if count else QUIET_SECONDS)
        bg.wait_ready(10)
        return bg


def run_demo(out: IO[str]) -> int:
    runtime = Runtime(default_connector="mqtt")
    with BrokerThread() as broker:
        connection = {"host": broker.host, "port": broker.port}
        tour = _Tour(out, runtime, connection)
        tour.say(f"Embedded MQTT broker (amqtt) started on {broker.host}:{broker.port}; nothing leaves this machine.")
        _retained(tour)
        _wildcards(tour)
        _qos(tour)
        _dead_letters(tour)
        _shared(tour)
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


def _dead_letters(tour: _Tour) -> None:
    tour.step("A process that fails: the message is retried, then moved to a dead-letter topic")
    taken: list[str] = []

    def process(document: Document) -> None:  # an order system that cannot read one order
        if document.text == "bad order":
            raise ValueError("cannot parse the order")
        taken.append(document.text)

    letters = tour.listen("dead-letter/orders", qos=1, count=1)
    operation = {"action": "listen", "topic": "orders/#", "qos": 1, "max_attempts": 2, "retry_delay": 0.1,
                 "dead_letter_topic": "dead-letter/orders"}
    tour.say("   a Listen on orders/#: 2 attempts, then dead-letter/orders")
    orders = tour.runtime.listen_in_background(tour.connection, operation, process, count=2)
    orders.wait_ready(10)
    tour.send("orders/new", ["order 1", "bad order", "order 2"], qos=1)
    orders.join(30)
    letters.join(10)
    tour.say(f"   the process took: {', '.join(taken)}")
    tour.show("dead-letter/orders received", letters.documents)
    letter = json.loads(letters.documents[0].payload) if letters.documents else {}
    tour.expect("the good orders reach the process, the bad one the dead-letter topic with its error",
                taken == ["order 1", "order 2"] and letter.get("payload") == "bad order"
                and letter.get("attempts") == 2 and "cannot parse" in letter.get("error", ""))


def _shared(tour: _Tour) -> None:
    tour.step("Scale-out: two Listens share $share/workers/jobs/#; when one stops, the other takes all")
    operation = {"action": "listen", "topic": "$share/workers/jobs/#", "qos": 1}
    workers = [tour.runtime.listen_in_background({**tour.connection, "client_id": f"worker-{n}",
                                                  "clean_session": False}, operation)
               for n in (1, 2)]
    for worker in workers:
        worker.wait_ready(10)
    tour.send("jobs/new", [f"job {i}" for i in range(10)], qos=1)
    _settle(workers, 10)
    first = [len(w.documents) for w in workers]
    tour.say(f"   10 jobs: worker-1 took {first[0]}, worker-2 took {first[1]}")
    workers[0].stop()
    workers[0].join(10)
    tour.send("jobs/new", [f"job {i}" for i in range(10, 20)], qos=1)
    _settle(workers[1:], 10 + first[1])
    workers[1].stop()
    workers[1].join(10)
    done = sorted(d.text for w in workers for d in w.documents)
    tour.say(f"   worker-1 stopped; 10 more jobs: worker-2 took {len(workers[1].documents) - first[1]}")
    tour.expect("the workers split the jobs, and each of the 20 was done once",
                min(first) > 0 and done == sorted(f"job {i}" for i in range(20)))


def _settle(workers: list[Any], expected: int, seconds: float = 10.0) -> None:
    """Wait until the workers together hold ``expected`` documents (bounded)."""
    deadline = time.monotonic() + seconds
    while sum(len(w.documents) for w in workers) < expected and time.monotonic() < deadline:
        time.sleep(0.02)


def _clear_retained(tour: _Tour) -> None:
    tour.step("Clearing a retained value: send an empty retained message")
    tour.send("sensors/b/temperature", [""], qos=1, retained=True)
    bg = tour.listen("sensors/+/temperature", qos=1)
    bg.join(10)
    tour.show("a new Listen on sensors/+/temperature received", bg.documents)
    tour.expect("only sensors/a/temperature is still retained",
                [d.properties["topic"] for d in bg.documents] == ["sensors/a/temperature"])
