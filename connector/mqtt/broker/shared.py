"""Shared subscriptions (``$share/GROUP/FILTER``) for the embedded broker, which amqtt lacks.

Each message matching a group's filter goes to one member of the group: the connected members
take turns. A member that goes away without acknowledging what it was sent does not keep it: its
unacknowledged messages go to the group's other connected members at once (MQTT 5 leaves this to
the broker, 4.8.2; Mosquitto 2.0 keeps them for the member's return instead), so the other
workers finish the stream. Only when no member is connected is a QoS 1/2 message queued for a
persistent member, which gets it when it comes back.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.session import Session

from connector.mqtt.topics import SHARE_PREFIX, split_shared

log = logging.getLogger("connector.mqtt.broker")

@dataclass
class _Sent:
    """A message handed to a member of a group, until the member acknowledged it."""

    group: str  # the subscription's filter, $share/GROUP/FILTER
    topic: str
    data: bytes
    qos: int
    message: Any = None  # amqtt's OutgoingApplicationMessage once the flow ended


class SharedSubscriptions:
    """Mixed into the embedded broker (an amqtt Broker): delivers to shared groups, and hands what
    a member that went away had not acknowledged to the others."""

    _subscriptions: dict[str, list[tuple[Session, int]]]

    def _shared_init(self) -> None:
        self._turns: dict[str, int] = {}
        self._unacknowledged: dict[str, list[_Sent]] = {}  # client id -> what it was sent

    async def _deliver_shared(self, topic: str, data: bytes, published_qos: int | None,
                              only: str | None = None, exclude: str | None = None) -> None:
        """Give the message to one member of each matching group (or of the group ``only``)."""
        for group, members in list(self._subscriptions.items()):
            if not group.startswith(SHARE_PREFIX) or (only is not None and group != only):
                continue
            if not self._matches(topic, split_shared(group)[1]):  # type: ignore[attr-defined]
                continue
            candidates = [(s, q) for s, q in members if s.client_id != exclude]
            connected = [(s, q) for s, q in candidates if s.transitions.state == "connected"]
            pool = connected or [(s, q) for s, q in candidates if not s.clean_session]
            if not pool:
                continue
            turn = self._turns.get(group, 0)
            self._turns[group] = turn + 1
            session, sub_qos = pool[turn % len(pool)]
            qos = sub_qos if published_qos is None else min(published_qos, sub_qos)
            if not connected:  # nobody there: it waits in a persistent member's session
                if qos in (QOS_1, QOS_2):
                    self.queue_offline(session, topic, bytes(data), qos)  # type: ignore[attr-defined]
                continue
            handler = self._get_handler(session)  # type: ignore[attr-defined]
            if handler is None:
                continue
            sent = _Sent(group, topic, bytes(data), qos)
            if qos in (QOS_1, QOS_2):
                self._unacknowledged.setdefault(session.client_id, []).append(sent)
            task = asyncio.ensure_future(handler.mqtt_publish(topic, data, qos, retain=False))
            task.add_done_callback(lambda done, sent=sent, client=session.client_id: self._flow_ended(done, sent,
                                                                                                      client))

    def _flow_ended(self, task: asyncio.Future[Any], sent: _Sent, client_id: str) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        sent.message = task.result()
        acknowledged = sent.message.puback_packet if sent.qos == QOS_1 else sent.message.pubcomp_packet
        if acknowledged is not None:
            waiting = self._unacknowledged.get(client_id, [])
            if sent in waiting:
                waiting.remove(sent)

    async def _member_left(self, session: Session) -> None:
        """A client's connection ended: what it was sent through a group and did not acknowledge
        goes to the group's other members (and no longer to it, when it comes back)."""
        waiting = self._unacknowledged.pop(session.client_id, [])
        for sent in waiting:
            if sent.message is not None and sent.message.packet_id is not None:
                session.inflight_out.pop(sent.message.packet_id, None)
            log.debug("handing %r, unacknowledged by %s, to the rest of %s", sent.topic, session.client_id, sent.group)
            await self._deliver_shared(sent.topic, sent.data, sent.qos, only=sent.group, exclude=session.client_id)
