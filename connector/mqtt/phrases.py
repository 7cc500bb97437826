"""What the MQTT connector says about its operations, in MQTT's words (for a runtime's summaries)."""

from __future__ import annotations

from collections import Counter
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
        return "on " + _filters_with_qos([(f, own.get(f, qos)) for f in filters])
    return f"to {topic!r} (QoS {qos}{', retained' if operation.get('retained') else ''})"


def describe_granted(granted: list[tuple[str, int | None]]) -> str:
    """What the SUBACKs granted: ``'a/#' (QoS 1), 'b' (refused)``."""
    return _filters_with_qos(granted)


#: Up to this many filters are named one by one; of more, the first three and a count of each QoS.
LISTED_FILTERS = 8


def _filters_with_qos(filters: list[tuple[str, int | None]]) -> str:
    """``'a/#' (QoS 1), 'b' (refused)``; of many filters, ``'f0' (QoS 1), 'f1' (QoS 1), 'f2' (QoS 1)
    and 9,997 more (10,000 filters: 9,999 QoS 1, 1 refused)``."""
    named = [f"{f!r} (QoS {q})" if q is not None else f"{f!r} (refused)" for f, q in filters[:LISTED_FILTERS + 1]]
    if len(filters) <= LISTED_FILTERS:
        return ", ".join(named)
    tally = Counter("refused" if q is None else f"QoS {q}" for _, q in filters)
    counts = ", ".join(f"{n:,} {what}" for what, n in sorted(tally.items()))
    return f"{', '.join(named[:3])} and {len(filters) - 3:,} more ({len(filters):,} filters: {counts})"
