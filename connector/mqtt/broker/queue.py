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
from typing import Any

from amqtt.session import Session

log = logging.getLogger("connector.mqtt.broker")


@dataclass(frozen=True)
class QueueLimits:
    """Per client. Mosquitto 2.0 defaults to 1000 messages and no byte limit; ours also caps bytes."""

    messages: int = 1000
    bytes: int = 16 * 1024 * 1024


def _size(message: Any) -> int:
    return len(message.data or b"")


class SizedInflight(dict):  # type: ignore[type-arg]
    """A session's ``inflight_out`` (packet ID -> message) that keeps the sum of its payload sizes.
    A plain dict: amqtt uses only ``in``, ``[]``, ``[]=``, ``pop`` and ``values()`` on it, and dict's
    own methods never call each other (an OrderedDict subclass's do)."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        self.sizes: dict[int, int] = {}
        self.bytes = 0
        for key, value in dict(items).items():
            self[key] = value

    def __setitem__(self, key: int, value: Any) -> None:
        self._forget(key)
        super().__setitem__(key, value)
        self.sizes[key] = size = _size(value)
        self.bytes += size

    def _forget(self, key: int) -> None:
        self.bytes -= self.sizes.pop(key, 0)

    def __delitem__(self, key: int) -> None:
        super().__delitem__(key)
        self._forget(key)

    def pop(self, key: int, *default: Any) -> Any:
        self._forget(key)
        return super().pop(key, *default)

    def setdefault(self, key: int, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def popitem(self) -> tuple[int, Any]:
        key, value = super().popitem()
        self._forget(key)
        return key, value

    def clear(self) -> None:
        super().clear()
        self.sizes.clear()
        self.bytes = 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


class SizedQueue(asyncio.Queue):  # type: ignore[type-arg]
    """A session's queue while it is away (amqtt's ``retained_messages``, an asyncio.Queue) that
    keeps the sum of its payload sizes, through the hooks asyncio's own queues override."""

    bytes = 0

    def _put(self, item: Any) -> None:
        super()._put(item)  # type: ignore[misc]
        self.bytes += _size(item)

    def _get(self) -> Any:
        item = super()._get()  # type: ignore[misc]
        self.bytes -= _size(item)
        return item


def _sized(session: Session) -> tuple[SizedInflight, SizedQueue]:
    """The session's in-flight list and queue, made to keep their sizes (once per session): the
    limits are checked for every message, and summing them each time made a backlog of n
    messages cost n squared."""
    inflight, queue = session.inflight_out, session.retained_messages
    if type(inflight) is not SizedInflight:
        session.inflight_out = inflight = SizedInflight(inflight)  # type: ignore[assignment]
    if type(queue) is not SizedQueue:
        queue.__class__ = SizedQueue
        queue.bytes = sum(_size(m) for m in queue._queue)  # type: ignore[attr-defined]
    return inflight, queue  # type: ignore[return-value]


def held(session: Session) -> tuple[int, int]:
    """Messages and payload bytes a session holds outside any outbox: sent and unacknowledged
    QoS 1/2 messages, and the queue of a persistent session while it is away."""
    inflight, queue = _sized(session)
    return len(inflight) + queue.qsize(), inflight.bytes + queue.bytes


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

