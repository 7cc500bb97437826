"""singer-sdk's own standard tests (singer_sdk.testing) on the Singer tap and target of the MQTT
connector (on the embedded broker) and of the disk connector (in a temporary folder)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from singer_support import need_singer_sdk

need_singer_sdk()

from singer_sdk.testing import get_tap_test_class, get_target_test_class  # noqa: E402

from connector.harness.runtime import Runtime  # noqa: E402
from connector.mqtt.broker import BrokerThread  # noqa: E402
from connector.singer.tap import tap_class  # noqa: E402
from connector.singer.target import target_class  # noqa: E402

pytestmark = pytest.mark.slow

# The configurations the suites are built with (they discover streams at import); the fixtures
# below fill in where the endpoint is once it runs.
MQTT_TAP: dict[str, Any] = {"topic": ["standard/a/#", "standard/b/#"], "qos": 1, "idle_seconds": 1,
                            "max_seconds": 20}
MQTT_TARGET: dict[str, Any] = {"topic": "standard/out", "qos": 1}
DISK_TAP: dict[str, Any] = {"directory": ".", "folder": "in", "settle_time": 0, "poll_interval": 0.05,
                            "idle_seconds": 1, "max_seconds": 20}
DISK_TARGET: dict[str, Any] = {"directory": ".", "folder": "out", "file_name": "{uuid}.json"}
_fresh = itertools.count()


@pytest.fixture(scope="module")
def standard_broker() -> Iterator[BrokerThread]:
    with BrokerThread() as running:
        yield running


class TestMqttTapStandard(get_tap_test_class(tap_class("mqtt"), config=MQTT_TAP)):  # type: ignore[misc]
    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def retained_messages(cls, standard_broker: BrokerThread) -> None:
        """Retained messages on each stream's filter: every Listen of the suite gets them."""
        MQTT_TAP["port"] = standard_broker.port
        runtime = Runtime(default_connector="mqtt")
        for topic, payload in (("standard/a/1", b"21.5"), ("standard/a/2", b"\x00\xff"), ("standard/b/1", b"{}")):
            op = {"action": "send", "topic": topic, "qos": 1, "retained": True}
            assert [r.ok for r in runtime.send({"port": standard_broker.port}, op, [payload])] == [True]


class TestMqttTargetStandard(get_target_test_class(target_class("mqtt"), config=MQTT_TARGET)):  # type: ignore[misc]
    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def endpoint(cls, standard_broker: BrokerThread) -> None:
        MQTT_TARGET["port"] = standard_broker.port


def _disk_folder(tmp_path_factory: pytest.TempPathFactory, config: dict[str, Any]) -> Path:
    directory = tmp_path_factory.mktemp(f"disk{next(_fresh)}")
    (directory / config["folder"]).mkdir()
    config["directory"] = str(directory)
    return directory / config["folder"]


class TestDiskTapStandard(get_tap_test_class(tap_class("disk"), config=DISK_TAP)):  # type: ignore[misc]
    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def files(cls, tmp_path_factory: pytest.TempPathFactory) -> None:
        folder = _disk_folder(tmp_path_factory, DISK_TAP)
        for n in range(3):
            (folder / f"order-{n}.json").write_text(f'{{"n": {n}}}', encoding="utf-8")


class TestDiskTargetStandard(get_target_test_class(target_class("disk"), config=DISK_TARGET)):  # type: ignore[misc]
    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def folder(cls, tmp_path_factory: pytest.TempPathFactory) -> None:
        _disk_folder(tmp_path_factory, DISK_TARGET)
