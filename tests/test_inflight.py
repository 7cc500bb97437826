"""The in-flight window keeps QoS 2 whole on Mosquitto 2.0, which confirms QoS 2 messages a client
sends beyond its own window and then loses some of them (upstream issues 2876 and 3056)."""

from __future__ import annotations

from brokers import MosquittoBroker

from connector.harness.runtime import Runtime
from connector.mqtt.connection import MqttConnection

COUNT = 200


def _round_trip(runtime: Runtime, connection: dict, topic: str) -> list[str]:
    sent = [f"m{i}" for i in range(COUNT)]
    listen = {**connection, "max_inflight": 20}
    with runtime.listen_in_background(listen, {"action": "listen", "topic": topic, "qos": 2}, timeout=20) as bg:
        bg.wait_ready()
        results = list(runtime.send(connection, {"action": "send", "topic": topic, "qos": 2}, sent))
        assert [r.status.value for r in results] == ["SUCCESS"] * COUNT
        bg.collected.wait_for(COUNT, 10)
        bg.stop()
    got = [d.text for d in bg.documents]
    assert sorted(got) == sorted(sent), f"{len(got)} of {COUNT} arrived, {len(got) - len(set(got))} twice"
    return got


def test_default_window_delivers_every_qos2_document(mosquitto: MosquittoBroker, runtime: Runtime,
                                                     unique: str) -> None:
    _round_trip(runtime, {"host": "127.0.0.1", "port": mosquitto.port}, f"{unique}/q2")


def test_mqtt5_window_never_exceeds_the_brokers_receive_maximum(mosquitto_factory, runtime: Runtime,  # type: ignore[no-untyped-def]
                                                                unique: str) -> None:
    small = mosquitto_factory(extra="max_inflight_messages 10\n")
    connection = {"host": "127.0.0.1", "port": small.port, "protocol": "5", "max_inflight": 100}
    with MqttConnection(Runtime(default_connector="mqtt").manifest().validate_connection(connection)).open() as conn:
        assert (conn.receive_maximum, conn.window) == (10, 10)
    _round_trip(runtime, connection, f"{unique}/q2")
