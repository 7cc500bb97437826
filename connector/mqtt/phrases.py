"""What the MQTT connector says about its operations, in MQTT's words (for a runtime's summaries)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe_operation(operation: Mapping[str, Any]) -> str | None:
    """``to 'a/b' (QoS 1, retained)`` for a Send, ``on 'a/#' (QoS 1), 'b' (QoS 0)`` for a Listen."""
    topic = operation.get("topic")
    if topic is None:
        return None
    qos = operation.get("qos", 0)
    if operation.get("action") == "listen":
        own = operation.get("filter_qos") or {}
        filters = [topic] if isinstance(topic, str) else list(topic)
        return "on " + ", ".join(f"{f!r} (QoS {own.get(f, qos)})" for f in filters)
    return f"to {topic!r} (QoS {qos}{', retained' if operation.get('retained') else ''})"


def describe_granted(granted: list[tuple[str, int | None]]) -> str:
    """What a SUBACK granted: ``'a/#' (QoS 1), 'b' (refused)``."""
    return ", ".join(f"{f!r} (QoS {q})" if q is not None else f"{f!r} (refused)" for f, q in granted)
