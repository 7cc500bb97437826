"""The MQTT connector passes the acceptance kit, on the embedded broker and on Mosquitto.

On the embedded broker it is the module the connector ships (``pytest --pyargs
connector.mqtt.acceptance_tests``); on Mosquitto the same endpoint on a Mosquitto 2.0 subprocess
(skipped when Mosquitto is not installed, failed in CI).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokers import MosquittoBroker
from connector.acceptance import ConnectorAcceptance, Endpoint
from connector.mqtt import acceptance_tests


class TestMqttOnTheEmbeddedBroker(acceptance_tests.TestMqttAcceptance):
    """The kit's run the MQTT connector ships, as is."""


class TestMqttOnMosquitto(ConnectorAcceptance):
    connector_id = "mqtt"

    @pytest.fixture
    def endpoint(self, mosquitto: MosquittoBroker) -> Iterator[Endpoint]:
        with acceptance_tests.mqtt_endpoint(mosquitto.host, mosquitto.port) as endpoint:
            yield endpoint
