"""Benchmark workers, each run as its own process by bench/run.py (``python -m bench.workers MODE ...``).

Every connector workload has a raw paho-mqtt twin written as a competent user writes it, with the
same settings: the same QoS, TCP_NODELAY, the same in-flight window; publishes queued without
waiting on each one; a Listen that writes to a buffered stdout and acknowledges (manually) after
each flush of a batch.
A worker prints one JSON line with its measurements on file descriptor 3 when ``--report`` is given,
else on stderr; stdout is the workload's own output (Listen's JSON lines).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

#: The connector's documented default in-flight window (connection schema ``max_inflight``).
DEFAULT_WINDOW = 20


def payloads(count: int, size: int) -> Iterator[bytes]:
    """``count`` distinct ASCII payloads of ``size`` bytes (no newline: usable as --lines input)."""
    body = (b"x" * size)
    for i in range(count):
        head = b"%010d " % i
        yield head + body[len(head):] if size > len(head) else head[:size]


def stdin_lines() -> Iterator[bytes]:
    for line in sys.stdin.buffer:
        yield line.rstrip(b"\r\n")


def report(args: argparse.Namespace, data: dict) -> None:
    text = json.dumps(data) + "\n"
    if args.report:
        with open(args.report, "a", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stderr.write(text)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# -- raw paho ---------------------------------------------------------------------------------

def _nodelay(client, userdata, sock) -> None:  # type: ignore[no-untyped-def]
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def raw_client(client_id: str = "", clean: bool = True, window: int = DEFAULT_WINDOW,
               manual_ack: bool = False) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                         protocol=paho.MQTTv311, manual_ack=manual_ack)
    client.max_inflight_messages_set(window)
    client.on_socket_open = _nodelay
    return client


def raw_connect(client: paho.Client, host: str, port: int) -> None:
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect(host, port, keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("raw paho: no CONNACK")


def raw_send(host: str, port: int, topic: str, qos: int, source: Iterator[bytes], window: int,
             spread: int = 1) -> tuple[int, int]:
    """Publish every payload the way a competent paho user does; (sent, failed). With ``spread``
    above 1, message I goes to ``topic.format(I % spread)``.

    Nothing waits on one message in order. QoS 0: every publish is handed to paho at once (its
    network thread writes them) and the script waits only for the last one to be written. QoS 1/2:
    a slot of the in-flight window is taken per publish and given back in ``on_publish`` (when
    the broker confirmed it), whatever the order; at the end the script waits for every slot.
    (paho's own queueing past ``max_inflight_messages`` does the same, but walks all the queued
    messages at every acknowledgement: 20,000 queued halve the rate.)"""
    client = raw_client(window=window)
    raw_connect(client, host, port)
    if not qos:
        infos = [client.publish(topic, payload, qos=0) for payload in source]
        if infos:
            infos[-1].wait_for_publish(60)
        ok = not infos or infos[-1].is_published()
        client.disconnect()
        client.loop_stop()
        return (len(infos), 0) if ok else (0, len(infos))
    slots = threading.Semaphore(window)
    confirmed = refused = 0

    def on_publish(client, userdata, mid, reason, properties) -> None:  # type: ignore[no-untyped-def]
        nonlocal confirmed, refused
        if reason.is_failure:
            refused += 1
        else:
            confirmed += 1
        slots.release()

    client.on_publish = on_publish
    for i, payload in enumerate(source):
        if not slots.acquire(timeout=60):
            raise SystemExit("raw paho: no acknowledgement for 60 s")
        if client.publish(topic.format(i % spread) if spread > 1 else topic, payload, qos=qos).rc != paho.MQTT_ERR_SUCCESS:
            refused += 1
            slots.release()
    for _ in range(window):
        if not slots.acquire(timeout=60):
            raise SystemExit("raw paho: no acknowledgement for 60 s")
    client.disconnect()
    client.loop_stop()
    return confirmed, refused


def document_line(message: paho.MQTTMessage) -> str:
    """The contract's JSON line, built the plain way."""
    try:
        payload, encoding = message.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(message.payload).decode("ascii"), "base64"
    return json.dumps({"payload": payload, "encoding": encoding,
                       "properties": {"topic": message.topic, "qos": message.qos, "retained": bool(message.retain),
                                      "duplicate": bool(message.dup), "message_id": message.mid}},
                      ensure_ascii=False) + "\n"


#: The raw Listen writes and acknowledges in batches of at most this many messages.
LISTEN_BATCH = 256


def raw_listen(host: str, port: int, topic: str, qos: int, count: int, client_id: str, timeout: float) -> int:
    """Write each message as a JSON line to a buffered stdout and acknowledge it after the flush
    of its batch (every LISTEN_BATCH messages, at the last one, or when nothing came for 20 ms);
    stop after ``count``. A competent user's version: paho's thread calls ``on_message``, the
    main thread flushes what is pending when the stream pauses."""
    client = raw_client(client_id=client_id, clean=False, manual_ack=True)
    done = threading.Event()
    lock = threading.Lock()
    lines: list[bytes] = []
    acks: list[tuple[int, int]] = []
    received = 0
    out = open(sys.stdout.fileno(), "wb", buffering=1 << 16, closefd=False)  # buffered even with -u

    def flush() -> None:  # with the lock held
        out.write(b"".join(lines))
        out.flush()
        for mid, message_qos in acks:
            client.ack(mid, message_qos)
        lines.clear()
        acks.clear()

    def on_message(client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        nonlocal received
        with lock:
            if done.is_set():
                return
            lines.append(document_line(message).encode("utf-8"))
            acks.append((message.mid, message.qos))
            received += 1
            if received >= count:
                flush()
                done.set()
            elif len(lines) >= LISTEN_BATCH:
                flush()

    def on_connect(client, userdata, flags, reason, properties) -> None:  # type: ignore[no-untyped-def]
        client.subscribe(topic, qos)

    client.on_message = on_message
    client.on_connect = on_connect
    client.connect(host, port, keepalive=60)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not done.wait(0.02) and time.monotonic() < deadline:
        with lock:
            if lines:
                flush()
    client.disconnect()
    client.loop_stop()
    return received


# -- the connector's Python API ----------------------------------------------------------------

_runtime = None


def _connection(args: argparse.Namespace, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"host": args.host, "port": args.port, **extra}


def api_send(args: argparse.Namespace, source: Iterator[bytes]) -> tuple[int, int]:
    sent = failed = 0
    for result in _runtime.send(_connection(args, max_inflight=args.window), {"action": "send", "topic": args.topic, "qos": args.qos}, source):
        if result.ok:
            sent += 1
        else:
            failed += 1
    return sent, failed


def api_listen(args: argparse.Namespace) -> int:
    from connector.harness.sinks import JsonLinesSink

    outcome = _runtime.listen(_connection(args, client_id=args.client_id, clean_session=False),
                               {"action": "listen", "topic": args.topic, "qos": args.qos},
                               JsonLinesSink(sys.stdout), count=args.count, timeout=args.timeout)
    return outcome.accepted


# -- helpers for the orchestrator ---------------------------------------------------------------

def make_session(args: argparse.Namespace) -> None:
    """Create a persistent session subscribed to ``topic`` and leave (its backlog then fills)."""
    client = raw_client(client_id=args.client_id, clean=False)
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    raw_connect(client, args.host, args.port)
    client.subscribe(args.topic, args.qos)
    if not subscribed.wait(10):
        raise SystemExit("no SUBACK")
    client.disconnect()
    client.loop_stop()


def latency(args: argparse.Namespace) -> dict:
    """Publish at a fixed rate and measure publish-to-delivery times through one broker hop."""
    total = int(args.rate * args.seconds)
    samples: list[int] = []
    got_all = threading.Event()

    def record(payload: bytes) -> None:
        samples.append(time.monotonic_ns() - int(payload[:20]))
        if len(samples) >= total:
            got_all.set()

    def paced() -> Iterator[bytes]:
        filler = b"x" * (args.size - 21)
        start = time.monotonic()
        for i in range(total):
            due = start + i / args.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            yield b"%020d " % time.monotonic_ns() + filler

    if args.impl == "raw":
        sub = raw_client(manual_ack=True)
        ready = threading.Event()

        def on_message(client, userdata, message) -> None:  # type: ignore[no-untyped-def]
            record(message.payload)
            client.ack(message.mid, message.qos)

        sub.on_message = on_message
        sub.on_subscribe = lambda *a: ready.set()
        raw_connect(sub, args.host, args.port)
        sub.subscribe(args.topic, args.qos)
        ready.wait(10)
        raw_send(args.host, args.port, args.topic, args.qos, paced(), DEFAULT_WINDOW)
        got_all.wait(10)
        sub.disconnect()
        sub.loop_stop()
    else:
        from connector.harness.runtime import Runtime

        runtime = Runtime(default_connector="mqtt")
        conn = _connection(args)
        op = {"action": "listen", "topic": args.topic, "qos": args.qos}
        with runtime.listen_in_background(conn, op, lambda d: record(d.payload), count=total, timeout=args.seconds + 15) as bg:
            bg.wait_ready(10)
            for _ in runtime.send(conn, {"action": "send", "topic": args.topic, "qos": args.qos}, paced()):
                pass
    samples.sort()
    skip = samples[len(samples) // 10:]  # the first tenth warms up
    pct = lambda p: skip[min(len(skip) - 1, int(p * len(skip)))] / 1e6  # noqa: E731
    return {"received": len(samples), "expected": total, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "max_ms": skip[-1] / 1e6 if skip else None}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.workers")
    p.add_argument("mode", choices=["raw-send", "api-send", "raw-listen", "api-listen", "session", "latency"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topic", default="bench/t")
    p.add_argument("--qos", type=int, default=0)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--stdin", action="store_true", help="send: payloads are the lines of standard input")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    p.add_argument("--spread", type=int, default=1, help="raw-send QoS 1/2: message I to --topic formatted with I % N")
    p.add_argument("--client-id", default="bench-listener")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--impl", choices=["api", "raw"], default="api")
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--report")
    args = p.parse_args(argv)

    if args.mode == "session":
        make_session(args)
        return
    if args.mode == "latency":
        report(args, latency(args))
        return
    if args.mode.startswith("api"):  # an application imports once and keeps one Runtime
        from connector.harness.runtime import Runtime

        global _runtime
        _runtime = Runtime(default_connector="mqtt")
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    if args.mode.endswith("send"):
        source = stdin_lines() if args.stdin else payloads(args.count, args.size)
        if args.mode == "raw-send":
            sent, failed = raw_send(args.host, args.port, args.topic, args.qos, source, args.window, args.spread)
        else:
            sent, failed = api_send(args, source)
        data = {"done": sent, "failed": failed}
    else:
        if args.mode == "raw-listen":
            done = raw_listen(args.host, args.port, args.topic, args.qos, args.count, args.client_id, args.timeout)
        else:
            done = api_listen(args)
        sys.stdout.flush()
        data = {"done": done}
    data["seconds"] = time.perf_counter() - t0
    data["cpu_seconds"] = cpu_seconds() - cpu0
    report(args, data)


if __name__ == "__main__":
    main()
