"""``clear-retained``: clear the stored retained messages under topic filters.

It subscribes (QoS 0) and collects the topics whose stored retained message the broker sends,
until the first message that is not a stored one or a quiet second (the Retained Only rule, see
:mod:`connector.mqtt.selection`); then, on a second connection, publishes an empty retained
message (QoS 1, confirmed) to each, which clears it. Each topic cleared is printed on standard
output, then a count on standard error.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from connector.sdk.documents import Document
from connector.sdk.listener import Listener


class _Topics(Listener):
    """Keeps the topic of each stored retained message (an empty one clears nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.topics: list[str] = []

    def submit(self, document: Document) -> bool:
        if document.payload and document.properties["topic"] not in self.topics:
            self.topics.append(document.properties["topic"])
        return True


def retained_topics(connection: Mapping[str, Any], filters: Sequence[str]) -> list[str]:
    """The topics under ``filters`` that hold a stored retained message, in the order the broker sent them."""
    from connector.mqtt.connection import MqttConnection
    from connector.mqtt.listen import listen
    from connector.mqtt.plugin import connector_manifest

    from connector.mqtt.topics import TopicError, check_topic_filter
    from connector.sdk.errors import ConfigError

    for topic_filter in filters:  # in the words of the command's flag, before the operation's
        try:
            check_topic_filter(topic_filter)
        except TopicError as exc:
            raise ConfigError(f"--topic {topic_filter!r}: {exc}") from None
    operation = connector_manifest().validate_operation(
        {"action": "listen", "topic": list(filters), "qos": 0, "retained_only": True})
    found = _Topics()
    with MqttConnection(connection).open() as conn:
        listen(conn, operation, found)
    return found.topics


def clear_retained(connection: Mapping[str, Any], filters: Sequence[str]) -> int:
    """Clear them; the exit code (1 when the broker refused to clear one)."""
    from connector.mqtt.connection import MqttConnection
    from connector.mqtt.plugin import connector_manifest
    from connector.mqtt.send import send

    topics = retained_topics(connection, filters)
    cleared = 0
    if topics:
        manifest = connector_manifest()
        with MqttConnection(connection).open() as conn:
            for topic in topics:
                operation = manifest.validate_operation({"action": "send", "topic": topic, "qos": 1, "retained": True})
                (result,) = send(conn, operation, [Document(b"")])
                if result.ok:
                    cleared += 1
                    sys.stdout.write(topic + "\n")
                    sys.stdout.flush()
                else:
                    sys.stderr.write(f"error: cannot clear {topic!r}: {result.status.value}: {result.error}\n")
    under = ", ".join(repr(f) for f in filters)
    sys.stderr.write(f"cleared {cleared:,} retained message{'s' if cleared != 1 else ''} under {under}"
                     + (f"; {len(topics) - cleared:,} could not be cleared\n" if cleared < len(topics) else "\n"))
    return 0 if cleared == len(topics) else 1
