"""The SDK's acceptance kit run on the disk connector: a fresh directory pair per test."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from connector.acceptance import ConnectorAcceptance, Endpoint


class TestDiskAcceptance(ConnectorAcceptance):
    connector_id = "disk"

    @pytest.fixture
    def endpoint(self, tmp_path: Path) -> Endpoint:
        """A directory whose ``out`` a Send writes into and whose ``in`` a Listen takes from."""
        root = tmp_path / "exchange"
        inbox, outbox = root / "in", root / "out"
        inbox.mkdir(parents=True)
        outbox.mkdir()
        numbers = itertools.count()

        def put(payloads: list[bytes]) -> None:
            for payload in payloads:  # whole files, renamed into place in order (names sort as they came)
                name = f"{next(numbers):06d}.dat"
                part = inbox / f".{name}.part"
                part.write_bytes(payload)
                os.rename(part, inbox / name)

        def arrived(count: int, timeout: float) -> list[bytes]:
            deadline = time.monotonic() + timeout
            while True:
                names = sorted(n for n in os.listdir(outbox) if not n.startswith("."))
                if len(names) >= count or time.monotonic() >= deadline:
                    return [(outbox / n).read_bytes() for n in names]
                time.sleep(0.02)

        return Endpoint(
            connection={"directory": str(root)},
            # timestamp then index: the names sort in the order the documents were sent, across Sends
            send_operation={"action": "send", "folder": "out", "file_name": "{timestamp}-{index:06d}.dat"},
            listen_operation={"action": "listen", "folder": "in", "settle_time": 0, "poll_interval": 0.05,
                              "retry_delay": 0.1},
            put=put,
            arrived=arrived,
            unreachable={"directory": str(tmp_path / "no-such-directory")},
            # a refused file moves to the failed folder with NAME.error.json beside it: here `out`
            dead_letter_topic="out",
        )
