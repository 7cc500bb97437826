"""The MQTT connector's run of the acceptance kit, shipped with the connector::

    pytest --pyargs connector.mqtt.acceptance_tests

runs the kit (:class:`connector.acceptance.ConnectorAcceptance`) on the embedded broker, started
on a free port of 127.0.0.1 for the run. :func:`mqtt_endpoint` gives the kit an endpoint on any
broker (the project's tests run it on Mosquitto too): a unique topic for the Send, another for
the Listen, and a plain paho client beside the connector that publishes what the Listen gets and
collects what the Send published. The Listen's connection keeps a persistent session with a
stable client id, so that what it did not acknowledge waits at the broker for the next Listen.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as paho
import pytest

from connector.acceptance import ConnectorAcceptance, Endpoint
from connector.mqtt.broker import BrokerThread, free_port

#: Seconds the observer waits for the broker (connect, subscribe, publish).
WAIT_SECONDS = 10.0


class Observer:
    """A plain paho client: collects what arrives on one topic, publishes to another at QoS 1."""

    def __init__(self, host: str, port: int, watched: str) -> None:
        self.payloads: list[bytes] = []
        self._arrival = threading.Condition()
        self._ready = threading.Event()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"kit-observer-{uuid.uuid4().hex[:12]}")
        client.on_message = self._on_message
        client.on_subscribe = lambda *args: self._ready.set()
        client.on_connect = lambda c, userdata, flags, reason, props: c.subscribe(watched, qos=1)
        client.connect(host, port)
        client.loop_start()
        self.client = client
        if not self._ready.wait(WAIT_SECONDS):
            self.close()
            raise RuntimeError(f"the observer did not subscribe to {watched!r} at {host}:{port}")

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._arrival:
            self.payloads.append(bytes(message.payload))
            self._arrival.notify_all()

    def arrived(self, count: int, timeout: float) -> list[bytes]:
        with self._arrival:
            self._arrival.wait_for(lambda: len(self.payloads) >= count, timeout)
            return list(self.payloads)

    def publisher(self, topic: str) -> Any:
        def put(payloads: list[bytes]) -> None:
            for payload in payloads:
                info = self.client.publish(topic, payload, qos=1)
                info.wait_for_publish(WAIT_SECONDS)
                if not info.is_published():
                    raise RuntimeError(f"the broker did not confirm a message on {topic!r}")
        return put

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def mqtt_endpoint(host: str, port: int) -> Iterator[Endpoint]:
    """An endpoint on the broker at ``host``:``port`` for one test of the kit."""
    base = f"acceptance/{uuid.uuid4().hex[:12]}"
    sent, listened = f"{base}/sent", f"{base}/listened"
    observer = Observer(host, port, sent)
    try:
        yield Endpoint(
            connection={"host": host, "port": port, "client_id": f"kit-{uuid.uuid4().hex[:12]}",
                        "clean_session": False, "connect_timeout": 5},
            send_operation={"action": "send", "topic": sent, "qos": 1},
            listen_operation={"action": "listen", "topic": listened, "qos": 1},
            put=observer.publisher(listened),
            arrived=observer.arrived,
            unreachable={"host": "127.0.0.1", "port": free_port(), "connect_timeout": 2},
            dead_letter_topic=sent,
        )
    finally:
        observer.close()


class TestMqttAcceptance(ConnectorAcceptance):
    """The MQTT connector passes the acceptance kit on the embedded broker."""

    connector_id = "mqtt"

    @pytest.fixture(scope="class")
    @classmethod
    def embedded_broker(cls) -> Iterator[BrokerThread]:
        with BrokerThread() as running:
            yield running

    @pytest.fixture
    def endpoint(self, embedded_broker: BrokerThread) -> Iterator[Endpoint]:
        with mqtt_endpoint(embedded_broker.host, embedded_broker.port) as endpoint:
            yield endpoint
