"""The hand-over of received messages from paho's network thread to the Listen's thread."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Inbox(Generic[Item]):
    """A bounded first-in first-out hand-over from one thread (paho's, :meth:`put`) to one other
    (the Listen's, :meth:`wait` and :meth:`take`).

    ``queue.Queue`` takes a lock and notifies a condition at every put and every get (twice a
    message, each a chance to hand the GIL to the other thread). Here a put is a ``deque`` append
    (atomic in CPython) and wakes the taker only when it waits (it clears ``_ready`` before it
    looks a last time and waits); a take pops what waits at once. When the inbox holds ``size``
    items, :meth:`put` waits for room: a process far behind slows paho's reading, then the broker.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: deque[Item] = deque()
        self._ready = threading.Event()  # set: items may wait (cleared only by the taker, before it waits)
        self._room = threading.Event()  # set: put need not wait (cleared only by put, before it waits)
        self._room.set()

    def put(self, item: Item, timeout: float | None = None) -> bool:
        """Add ``item``; False when the inbox stayed full ``timeout`` seconds (it was not added)."""
        return self.put_all((item,), timeout)

    def put_all(self, items: Iterable[Item], timeout: float | None = None) -> bool:
        """Add ``items`` together once the inbox has room (it may then hold up to ``len(items) - 1``
        more than ``size``); the taker is woken once for all of them. paho's thread hands over the
        messages of one read so. False when the inbox stayed full ``timeout`` seconds (none added)."""
        queued = self._items
        if len(queued) >= self.size:
            self._room.clear()
            if len(queued) >= self.size and not self._room.wait(timeout):
                return False
        queued.extend(items)
        if not self._ready.is_set():
            self._ready.set()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Until an item waits; False when none came within ``timeout`` seconds."""
        if self._items:
            return True
        self._ready.clear()
        return bool(self._items) or (self._ready.wait(timeout) and bool(self._items))

    def take(self, most: int) -> list[Item]:
        """The items waiting, oldest first, at most ``most`` (without waiting: see :meth:`wait`)."""
        items = self._items
        popleft = items.popleft
        batch = [popleft() for _ in range(min(most, len(items)))]
        if batch and not self._room.is_set():
            self._room.set()
        return batch

    def __len__(self) -> int:
        return len(self._items)

    # queue.Queue's names, for tests and scripts that take one message at a time

    def get(self, timeout: float | None = None) -> Item:
        """The oldest item, waiting up to ``timeout`` seconds (``queue.Empty`` if none came)."""
        if not self.wait(timeout):
            raise queue.Empty
        return self.take(1)[0]

    def empty(self) -> bool:
        return not self._items
