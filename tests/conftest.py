"""Shared fixtures: every test talks to a broker it started itself, on a free port."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brokers import BROKER_IDS, Endpoint, MosquittoBroker, NatsBroker, RabbitBroker, find_program
from freshinstall import build_wheel, new_venv
from connector.mqtt.broker import BrokerThread
from connector.harness.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
_topic_counter = itertools.count()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel (pip wheel --no-deps)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def fresh_install(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel and its test extra installed: its bin folder. Tests
    may install more into it (the tutorial's connector), never remove."""
    return new_venv(tmp_path_factory.mktemp("fresh"), f"{wheel}[test]")


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerThread]:
    """The embedded broker (amqtt with our fixes), in-process, on a free port, for the session."""
    with BrokerThread() as running:
        yield running


@pytest.fixture(scope="session")
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., MosquittoBroker]]:
    """Starts Mosquitto variants (``persistence=True``, ``passwords={...}``); all stopped at session end."""
    started: list[MosquittoBroker] = []

    def start(**options: object) -> MosquittoBroker:
        running = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"), **options).start()  # type: ignore[arg-type]
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def mosquitto(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """Mosquitto 2.0 as a subprocess on a free port (anonymous, no persistence), for the session."""
    return mosquitto_factory()


#: The brokers the conformance suite runs on (tests/test_conformance.py).


@pytest.fixture(scope="session")
def server_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Endpoint]]:
    """Starts NATS (MQTT listener) or a RabbitMQ node of our own (MQTT plugin) once per session, on demand."""
    started: dict[str, NatsBroker | RabbitBroker] = {}
    kinds = {"nats": NatsBroker, "rabbitmq": RabbitBroker}

    failed: dict[str, str] = {}

    def start(name: str) -> Endpoint:
        if name in failed:  # a broker that did not start is not tried again by every test
            pytest.fail(failed[name], pytrace=False)
        if name not in started:
            server = kinds[name](tmp_path_factory.mktemp(name))
            try:
                started[name] = server.start()
            except RuntimeError as exc:
                failed[name] = str(exc)
                raise
        running = started[name]
        return Endpoint(name, running.host, running.port)

    yield start
    for running in started.values():
        running.stop()


@pytest.fixture(scope="session", params=BROKER_IDS)
def any_broker(request: pytest.FixtureRequest) -> Endpoint:
    """Each broker of the conformance suite in turn: the embedded broker, Mosquitto (persistence on),
    NATS and RabbitMQ, each on free ports, started the same way (skipped locally when not installed)."""
    name = request.param
    if name == "embedded":
        running = request.getfixturevalue("broker")
        return Endpoint(name, running.host, running.port, embedded=running)
    if name == "mosquitto":
        running = request.getfixturevalue("mosquitto_factory")(persistence=True)
        return Endpoint(name, running.host, running.port)
    return request.getfixturevalue("server_brokers")(name)


@pytest.fixture(scope="session")
def mosquitto_clients() -> dict[str, str]:
    """Paths of mosquitto_pub and mosquitto_sub (skipped without them; failed in CI)."""
    return {name: find_program(name) for name in ("mosquitto_pub", "mosquitto_sub")}


@pytest.fixture
def connection(broker: BrokerThread) -> dict:
    """A connection configuration for the session's embedded broker."""
    return {"host": broker.host, "port": broker.port, "connect_timeout": 5, "ack_timeout": 10}


@pytest.fixture
def runtime() -> Runtime:
    return Runtime(default_connector="mqtt")


@pytest.fixture
def unique() -> str:
    """A topic prefix no other test uses, so that retained messages never leak between tests."""
    return f"t{os.getpid()}-{next(_topic_counter)}"
