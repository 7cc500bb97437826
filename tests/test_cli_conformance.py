"""The conformance promises a user sees through the command line: retained messages and wildcards,
the offline queue of a persistent Listen (embedded broker), and the warning when a broker grants a
lower QoS than the Listen asked for (NATS and RabbitMQ grant QoS 1 for QoS 2)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from brokers import Endpoint
from clirun import run_cli
from test_cli import conn_args
from test_cli_promises import cli_listen, cli_send, documents

from connector.mqtt.broker import BrokerThread


def test_retained_under_r_reach_a_wildcard_listen_once_each(broker: BrokerThread, unique: str) -> None:
    base = f"{unique}/r"
    temperature, alarm = f"{base}/sensors/temperature", f"{base}/sensors/smoke alarms/kitchen"
    cli_send(broker, temperature, "--retained", "--qos", "1", "--message", "21")
    cli_send(broker, alarm, "--retained", "--qos", "1", "--message", "ok")
    # --timeout: the Listens run a bounded while, so that a second copy would show.
    with cli_listen(broker, "--topic", f"{base}/#", "--qos", "1", "--timeout", "3") as (everything, out_all), \
            cli_listen(broker, "--topic", f"{base}/sensors/smoke alarms/#", "--qos", "1", "--timeout", "3") as (alarms, out_alarms):
        got_all = documents(everything, out_all)
        got_alarms = documents(alarms, out_alarms)
    assert sorted((d["properties"]["topic"], d["payload"], d["properties"]["retained"]) for d in got_all) == \
        [(alarm, "ok", True), (temperature, "21", True)]
    assert [(d["properties"]["topic"], d["payload"], d["properties"]["retained"]) for d in got_alarms] == \
        [(alarm, "ok", True)]


def test_five_qos1_sent_while_a_persistent_listen_was_away_arrive_when_it_returns(broker: BrokerThread,
                                                                                  unique: str) -> None:
    topic, client_id = f"{unique}/away", f"cli-{uuid.uuid4().hex[:10]}"
    persistent = ("--topic", topic, "--qos", "1", "--persistent", "--client-id", client_id)
    with cli_listen(broker, *persistent):
        pass  # subscribed with a persistent session; then stopped (SIGTERM) and away
    sent = [f"reading {i}" for i in range(5)]
    cli_send(broker, topic, "--qos", "1", *[arg for m in sent for arg in ("--message", m)])
    back = run_cli("listen", *conn_args(broker), *persistent, "--count", "5", "--timeout", "30")
    assert back.returncode == 0, back.stderr
    docs = [json.loads(line) for line in back.stdout.decode("utf-8").splitlines()]
    assert [(d["payload"], d["properties"]["qos"], d["properties"]["retained"]) for d in docs] == \
        [(m, 1, False) for m in sent]


@pytest.mark.parametrize("name, granted", [("embedded", 2), ("nats", 1), ("rabbitmq", 1)])
def test_a_lower_granted_qos_is_a_warning_on_stderr(name: str, granted: int, request: pytest.FixtureRequest,
                                                    unique: str) -> None:
    if name == "embedded":
        running = request.getfixturevalue("broker")
        endpoint = Endpoint(name, running.host, running.port)
    else:
        start: Callable[[str], Endpoint] = request.getfixturevalue("server_brokers")
        endpoint = start(name)
    topic = f"{unique}/q2"
    done = run_cli("listen", "--host", endpoint.host, "--port", str(endpoint.port), "--topic", topic,
                   "--qos", "2", "--timeout", "3")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.decode("utf-8").splitlines() if "granted QoS" in line]
    if granted < 2:
        assert warnings == [f"warning: the broker granted QoS {granted} for {topic!r} where 2 was asked"]
    else:
        assert warnings == []
