"""``python -m bench.broker_memory``: the embedded broker's memory with a subscriber that never reads.

Starts ``mqtt-connector broker`` on a free port (a subprocess of its own, stopped by its pid),
connects a subscriber with a small receive buffer that subscribes and then never reads, publishes
``--messages`` payloads of ``--size`` bytes at it (QoS 0, then QoS 1), and prints the broker's
resident memory (VmRSS from /proc) at start, at its peak, and a few seconds after the subscriber
left. Linux only. The figures go in docs/embedded-broker.md; no test asserts them (they depend on
the machine), tests/test_broker_defences.py checks the queue bound they follow from.

    python -m bench.broker_memory --messages 1500 --size 102400
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from connector.mqtt.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from brokers import stop_process  # noqa: E402
from raw_mqtt import RawClient, subscribe  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """Samples a process's RSS every 50 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def flood(port: int, topic: str, messages: int, size: int, qos: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{qos}")
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    payload = bytes(size)
    infos = [client.publish(topic, payload, qos=qos) for _ in range(messages)]
    for info in infos:
        info.wait_for_publish(120)
    done = threading.Event()  # a SUBACK after the last PUBLISH: the broker has read them all
    client.on_subscribe = lambda *args: done.set()
    client.subscribe(f"{topic}/flush", 1)
    done.wait(120)
    client.disconnect()
    client.loop_stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--size", type=int, default=100 * 1024)
    args = parser.parse_args()
    port = free_port()
    broker = subprocess.Popen([sys.executable, "-m", "connector", "broker", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        assert broker.stdout is not None
        broker.stdout.readline()  # "listening on ..."
        start = rss_mb(broker.pid)
        print(f"broker RSS at start: {start:.0f} MB")
        for qos in (0, 1):
            stalled = RawClient(port, f"stalled-{qos}".encode(), receive_buffer=4096)
            stalled.sock.sendall(subscribe(b"flood", qos))
            stalled.read_packet(5)
            peak = Peak(broker.pid)
            began = time.monotonic()
            flood(port, "flood", args.messages, args.size, qos)
            published = args.messages * args.size / 1e6
            print(f"QoS {qos}: {published:.0f} MB published in {time.monotonic() - began:.1f} s at a subscriber "
                  f"that never reads: broker RSS peak {peak.stop():.0f} MB")
            stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            stalled.close()
            time.sleep(3)  # the broker notices the close and frees the session
            print(f"QoS {qos}: broker RSS 3 s after the subscriber left: {rss_mb(broker.pid):.0f} MB")
    finally:
        stop_process(broker)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
