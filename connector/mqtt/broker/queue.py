"""What the embedded broker holds for one client, bounded like Mosquitto's ``max_queued_messages``.

amqtt 0.12.1 starts one task per message and subscriber; the tasks of a subscriber that does not
read wait on its socket forever, each holding its message: a subscriber that never reads made the
broker grow by what was published at it (150 MB), and nothing was freed when it left.

Here each connection has an :class:`Outbox`: messages wait their turn in it, and the next one is
written only once the previous one is in the socket's transport buffer below asyncio's high-water
mark (``drain()``), so a slow reader holds at most the transport buffer plus its outbox. What a
client holds -- the outbox, the QoS 1/2 messages sent and not yet acknowledged, and while a
persistent session is away its queue -- is bounded by :class:`QueueLimits`. At the limit a waiting
QoS 0 message makes room for a QoS 1/2 one; otherwise the new message is dropped, and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from amqtt.session import Session

log = logging.getLogger("connector.mqtt.broker")


@dataclass(frozen=True)
class QueueLimits:
    """Per client. Mosquitto 2.0 defaults to 1000 messages and no byte limit; ours also caps bytes."""

    messages: int = 1000
    bytes: int = 16 * 1024 * 1024


def held(session: Session) -> tuple[int, int]:
    """Messages and payload bytes a session holds outside any outbox: sent and unacknowledged
    QoS 1/2 messages, and the queue of a persistent session while it is away."""
    count, size = 0, 0
    for message in session.inflight_out.values():
        count, size = count + 1, size + len(message.data or b"")
    queued = session.retained_messages._queue  # asyncio.Queue keeps its items in a deque
    return count + len(queued), size + sum(len(m.data or b"") for m in queued)


def room_offline(session: Session, size: int, limits: QueueLimits) -> bool:
    """May a message of ``size`` bytes join the queue of a persistent session that is away?"""
    count, total = held(session)
    if count < limits.messages and total + size <= limits.bytes:
        return True
    log.warning("client %s is away and its queue is full (%d messages, %d bytes): message dropped",
                session.client_id, count, total)
    return False


class Entry:
    """A message waiting in an outbox for its turn to be written."""

    __slots__ = ("data", "qos", "size", "topic", "turn")

    def __init__(self, topic: str, data: bytes, qos: int) -> None:
        self.topic = topic
        self.data: bytes | None = data
        self.qos = qos
        self.size = len(data)
        self.turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()


class Outbox:
    """The messages handed to one connection and not yet written to its socket, one at a time."""

    def __init__(self, session: Session, limits: QueueLimits) -> None:
        self.session = session
        self.limits = limits
        self.waiting: deque[Entry] = deque()
        self.count = 0
        self.bytes = 0
        self.closed = False
        self._writing: Entry | None = None
        self._dropped = 0

    def queued(self) -> tuple[int, int]:
        """Messages and bytes this client holds: the outbox and what :func:`held` counts."""
        count, size = held(self.session)
        return self.count + count, self.bytes + size

    def admit(self, topic: str, data: bytes, qos: int) -> Entry | None:
        """Queue a message, or drop it (None) when the client's queue is full."""
        while self._full(len(data)):
            if qos == 0 or not self._evict_qos0():
                self._drop()
                return None
        if self._dropped:
            log.warning("client %s: %d messages dropped while its queue was full", self.session.client_id,
                        self._dropped)
            self._dropped = 0
        entry = Entry(topic, data, qos)
        self.waiting.append(entry)
        self.count, self.bytes = self.count + 1, self.bytes + entry.size
        self._next()
        return entry

    def _full(self, size: int) -> bool:
        count, total = self.queued()
        return count >= self.limits.messages or total + size > self.limits.bytes

    def _evict_qos0(self) -> bool:
        for entry in self.waiting:
            if entry.qos == 0:
                self.waiting.remove(entry)
                self._finish(entry, False)
                self._drop()
                return True
        return False

    def _drop(self) -> None:
        if not self._dropped:
            log.warning("client %s does not keep up: its queue is full (%d messages, %d bytes): dropping messages",
                        self.session.client_id, *self.queued())
        self._dropped += 1

    def _finish(self, entry: Entry, write: bool) -> None:
        self.count, self.bytes = self.count - 1, self.bytes - entry.size
        if not write:
            entry.data = None  # frees the payload now, not when the waiting task ends
        entry.turn.set_result(write)

    def _next(self) -> None:
        if self._writing is None and self.waiting and not self.closed:
            self._writing = self.waiting.popleft()
            self._finish(self._writing, True)

    def written(self, entry: Entry) -> None:
        """The entry's PUBLISH is in the transport buffer (or failed): the next one may go."""
        if self._writing is entry:
            self._writing = None
            self._next()

    def close(self) -> list[tuple[str, bytes, int]]:
        """The connection ended: drop what waits, and return it (topic, payload, QoS) for a
        persistent session to keep."""
        self.closed = True
        left = []
        while self.waiting:
            entry = self.waiting.popleft()
            if entry.data is not None:
                left.append((entry.topic, entry.data, entry.qos))
            self._finish(entry, False)
        return left

