"""Connector SDK, the MQTT connector and a local runtime harness."""

__version__ = "0.1.0"
