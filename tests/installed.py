"""The connectors installed beside the MQTT one (CI installs examples/disk-connector): tests of the
MQTT connector and of registration block them where they count what is installed."""

from __future__ import annotations

from importlib import metadata

from connector.sdk.plugins import ENTRY_POINT_GROUP

BESIDE_MQTT = tuple(sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name != "mqtt"))
