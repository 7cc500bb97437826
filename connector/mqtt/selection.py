"""Which messages a Listen hands to the process: the operation's Skip Retained (``mosquitto_sub
-R``), Retained Only (a snapshot of the last known values, then the Listen ends) and Filter Out
(``mosquitto_sub -T``).

A skipped message is acknowledged (it was delivered and deliberately left out) and counted.
Retained Only ends the Listen at the first message that is not a stored retained message (it is
not handed over nor acknowledged: a persistent session gets it again), or once no message came
for :data:`QUIET_SECONDS` after the subscription was confirmed or after the last message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from connector.mqtt.topics import FilterSet

#: Retained Only: how long the Listen waits for more stored retained messages before it ends.
QUIET_SECONDS = 1.0


class Selection:
    def __init__(self, operation: Mapping[str, Any], quiet: float = QUIET_SECONDS) -> None:
        self.skip_retained = bool(operation.get("skip_retained"))
        self.retained_only = bool(operation.get("retained_only"))
        self.filter_out = FilterSet(operation.get("filter_out") or ())
        self.quiet_seconds = quiet
        self._heard: float | None = None  # when the subscription was confirmed or the last message came

    def subscribed(self) -> None:
        self._heard = time.monotonic()

    def skipped(self, retained: bool, topic: str) -> str | None:
        """Why a message is left out ("retained", "filtered out"), or None to hand it over."""
        if self.retained_only:
            self._heard = time.monotonic()
        if self.skip_retained and retained:
            return "retained"
        if self.filter_out and self.filter_out.match(topic):
            return "filtered out"
        return None

    def ends_at(self, retained: bool) -> bool:
        """Retained Only: this message is not a stored retained one, the snapshot is complete."""
        return self.retained_only and not retained

    def quiet(self) -> bool:
        """Retained Only: no stored retained message came for the quiet time."""
        return (self.retained_only and self._heard is not None
                and time.monotonic() - self._heard >= self.quiet_seconds)


def selection_problems(operation: Mapping[str, Any]) -> list[str]:
    if operation.get("skip_retained") and operation.get("retained_only"):
        return ["operation: Skip Retained and Retained Only exclude each other: give one"]
    return []
