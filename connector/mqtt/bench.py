"""``bench``: measure a broker with the connector's own settings, the way ``mqttx bench`` and
``emqtt-bench`` are used.

A subscriber (its own connection) listens on a topic no one else uses (``PREFIX/<random>``);
once the broker confirmed the subscription, a publisher (a second connection) sends ``count``
messages of ``size`` bytes at ``qos``, each carrying the time it was made. The publish rate counts
until the broker confirmed the last one (QoS 0: handed to the network), the subscribe rate from
the first message received to the last, the latency from a message's making to its receipt
(both clients in this process: one clock). Nothing is retained, the sessions are clean: nothing
is left on the broker. A small table on standard output; exit 1 when messages were lost or
refused, 3 when the broker cannot be reached.
"""

from __future__ import annotations

import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.sdk.documents import Document
from connector.sdk.errors import ConfigError
from connector.sdk.listener import Listener

STAMP = struct.Struct(">Q")  # time.perf_counter_ns() when the message was made
#: How long the subscriber may lag behind the end of publishing, at least.
GRACE_SECONDS = 10.0


class _Receiver(Listener):
    """Records when each message arrived and how long it took; stops at ``count``."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.latencies_ns: list[int] = []
        self.first = self.last = 0.0
        self.subscribed = threading.Event()

    def submit(self, document: Document) -> bool:
        now = time.perf_counter_ns()
        if not self.latencies_ns:
            self.first = now / 1e9
        self.last = now / 1e9
        self.latencies_ns.append(now - STAMP.unpack_from(document.payload)[0])
        if len(self.latencies_ns) >= self.count:
            self.stop()
        return True

    def listening(self, description: str) -> None:
        self.subscribed.set()


@dataclass
class BenchResult:
    topic: str
    count: int
    published: int = 0
    publish_seconds: float = 0.0
    received: int = 0
    receive_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _payloads(count: int, size: int) -> Iterator[Document]:
    padding = b"x" * (size - STAMP.size)
    for _ in range(count):
        yield Document(STAMP.pack(time.perf_counter_ns()) + padding, {})


def run_bench(connection: Mapping[str, Any], count: int, qos: int, size: int, prefix: str) -> BenchResult:
    """Publish and receive ``count`` messages (see the module's docstring); ConnectError when the
    broker cannot be reached."""
    from connector.mqtt.connection import MqttConnection
    from connector.mqtt.listen import listen
    from connector.mqtt.plugin import connector_manifest
    from connector.mqtt.send import send

    if count < 1:
        raise ConfigError("--count must be 1 or more")
    if size < STAMP.size:
        raise ConfigError(f"--size must be at least {STAMP.size} bytes (each message carries its time)")
    topic = f"{prefix.rstrip('/')}/{uuid.uuid4().hex[:12]}"
    manifest = connector_manifest()
    listening = manifest.validate_operation({"action": "listen", "topic": topic, "qos": qos})
    sending = manifest.validate_operation({"action": "send", "topic": topic, "qos": qos})
    subscriber = dict(connection, clean_session=True)
    subscriber["client_id"] = f"{connection.get('client_id') or 'mqtt-connector'}-bench-{uuid.uuid4().hex[:8]}"
    receiver, failure = _Receiver(count), []
    result = BenchResult(topic, count)
    with MqttConnection(subscriber).open() as sub_conn:
        def receive() -> None:
            try:
                listen(sub_conn, listening, receiver)
            except BaseException as exc:  # said below, in the main thread
                failure.append(exc)
            finally:
                receiver.subscribed.set()

        thread = threading.Thread(target=receive, name="bench-subscriber", daemon=True)
        thread.start()
        receiver.subscribed.wait(GRACE_SECONDS)
        if failure:
            raise failure[0]
        with MqttConnection(dict(connection, clean_session=True)).open() as pub_conn:
            started = time.perf_counter()
            result.published = sum(r.ok for r in send(pub_conn, sending, _payloads(count, size)))
            result.publish_seconds = time.perf_counter() - started
        thread.join(max(GRACE_SECONDS, 2 * result.publish_seconds))
        receiver.stop()
        thread.join(GRACE_SECONDS)
    if failure:
        raise failure[0]
    result.received = len(receiver.latencies_ns)
    result.receive_seconds = receiver.last - receiver.first
    result.latencies_ms = [ns / 1e6 for ns in receiver.latencies_ns]
    return result


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "-"


def _seconds(seconds: float) -> str:
    """Three significant digits (0.0348, 1.62, 12.5), whole seconds from 100 on: a short run's
    time rounded to hundredths would be a fifth off its rate."""
    return f"{seconds:.0f}" if seconds >= 100 else f"{seconds:.3g}"


def table(result: BenchResult, qos: int, size: int) -> str:
    lines = [f"{result.count:,} messages of {size:,} B at QoS {qos} on '{result.topic}'",
             f"{'':<10}{'messages':>10}{'seconds':>10}{'msg/s':>10}",
             f"{'publish':<10}{result.published:>10,}{_seconds(result.publish_seconds):>10}"
             f"{_rate(result.published, result.publish_seconds):>10}",
             f"{'subscribe':<10}{result.received:>10,}{_seconds(result.receive_seconds):>10}"
             f"{_rate(result.received, result.receive_seconds):>10}"]
    if result.latencies_ms:
        lines.append(f"{'latency':<10}" + "".join(f"{name:>10}" for name in ("p50 ms", "p90 ms", "p99 ms", "max ms")))
        lines.append(f"{'':<10}" + "".join(f"{result.percentile(p):>10.2f}" for p in (50, 90, 99))
                     + f"{max(result.latencies_ms):>10.2f}")
    return "\n".join(lines) + "\n"


def bench(connection: Mapping[str, Any], count: int, qos: int, size: int, prefix: str) -> int:
    """Run it and print the table; the exit code (1 when messages were lost or refused)."""
    result = run_bench(connection, count, qos, size, prefix)
    sys.stdout.write(table(result, qos, size))
    sys.stdout.flush()
    if result.published < count or result.received < result.published:
        sys.stderr.write(f"error: {count - result.published:,} of {count:,} messages were not confirmed and "
                         f"{result.published - result.received:,} confirmed ones did not arrive\n")
        return 1
    return 0
