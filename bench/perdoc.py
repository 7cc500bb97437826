"""The connector's and the harness's own work per message, without a network: a fake paho client.

    python -m bench.perdoc listen|send0|send1 N
    PYTHONPATH=OTHER-TREE python -m bench.perdoc listen 20000   # the same for another version

Stable where the network benchmark is not (no broker, no socket, no GIL hand-off to paho's
network thread), so two versions of the connector compare within a few percent on a shared
machine: run them interleaved, a few rounds each.

listen: a producer thread hands N QoS 1 messages over as paho's thread does (conn._on_messages,
reads of 20 messages), the Listen (connector.mqtt.listen.listen) batches them, the ProcessListener writes
them through the JSON-lines sink to /dev/null, and acknowledges them (a fake ack).
send: the command line's pipeline (GracefulStop.documents, Runtime's _as_document and _closing,
connector.mqtt.send, GracefulStop.results, report_send's tally) over N lines, each publish
already confirmed. Prints CPU microseconds per message (process time, both threads).
"""
import os
import sys
import threading
import time

import paho.mqtt.client as paho

mode, n = sys.argv[1], int(sys.argv[2])


class Info:
    __slots__ = ("_published", "published", "rc", "mid")

    def __init__(self, mid):
        self._published = self.published = True
        self.rc, self.mid = 0, mid


class FakeClient:
    def __init__(self):
        self.mid = 0
        self.acks = 0

    def publish(self, topic, payload, qos=0, retain=False, properties=None):  # versions before publish_message
        self.mid += 1
        return Info(self.mid)

    def publish_message(self, topic, payload, qos, retain, properties=None, packed=b"\x00"):
        self.mid += 1
        return Info(self.mid)

    def ack(self, message):
        self.acks += 1

    def ack_all(self, messages):
        self.acks += len(messages)


def fake_conn():
    from connector.mqtt.connection import MqttConnection
    from connector.harness.runtime import Runtime

    config = Runtime(default_connector="mqtt").manifest().validate_connection({"port": 1})
    conn = MqttConnection(config)
    conn.client = FakeClient()
    conn.subscribe = lambda *a, **k: None
    conn.up.set()
    return conn


def listen():
    from connector.harness.listening import ProcessListener
    from connector.harness.sinks import JsonLinesSink
    from connector.mqtt.listen import listen as mqtt_listen

    conn = fake_conn()
    messages = []
    try:  # the connector's own received message (paho's MQTTMessage in earlier versions)
        from connector.mqtt.paho_client import Received

        def received(mid, payload):
            return Received(b"bench/listen/1", payload, 1, False, False, mid, None, 0)
    except ImportError:
        def received(mid, payload):
            m = paho.MQTTMessage(mid=mid, topic=b"bench/listen/1")
            m.qos, m.payload = 1, payload
            return m
    for i in range(n):
        messages.append(received(i % 65535 + 1, (b"%010d " % i) + b"x" * 245))
    null = os.open(os.devnull, os.O_WRONLY)
    listener = ProcessListener(JsonLinesSink(null), count=n)
    on_messages = getattr(conn, "_on_messages", None)
    on_message = getattr(conn, "_on_message", None)

    def produce():  # reads of 20 messages (Mosquitto's in-flight window), as paho's thread hands them over
        for start in range(0, n, 20):
            read = messages[start:start + 20]
            if on_messages is not None:
                on_messages(None, None, read)
            else:
                for m in read:
                    on_message(None, None, m)
            time.sleep(0)  # let the Listen run, as paho's thread does between reads

    t0 = time.process_time()
    producer = threading.Thread(target=produce)
    producer.start()
    mqtt_listen(conn, {"action": "listen", "topic": "bench/listen/1", "qos": 1}, listener)
    producer.join()
    cpu = time.process_time() - t0
    assert listener.accepted == n and conn.client.acks == n, (listener.accepted, conn.client.acks)
    return cpu


def send(qos):
    from connector.harness.reports import report_send
    from connector.harness.runtime import Runtime, _as_document
    from connector.harness.stopping import GracefulStop
    from connector.mqtt.send import send as mqtt_send

    conn = fake_conn()
    conn.close = lambda: None
    lines = [(b"%010d " % i) + b"x" * 189 for i in range(n)]
    op = {"action": "send", "topic": "bench/t", "qos": qos, "retained": False}
    stop = GracefulStop()
    err = os.dup(2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # the summary line
    t0 = time.process_time()
    documents = stop.documents(iter(lines))
    results = Runtime._closing(conn, mqtt_send(conn, op, map(_as_document, documents)))
    code = report_send(results, None, "to 'bench/t'", stop)
    cpu = time.process_time() - t0
    os.dup2(err, 2)
    assert code == 0 and conn.client.mid == n
    return cpu


cpu = listen() if mode == "listen" else send(int(mode[-1]))
print(f"{cpu / n * 1e6:.2f}")
