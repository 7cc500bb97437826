"""What the embedded broker holds per client is counted as messages come and go, not summed
again for every message: a persistent session's backlog of n messages costs n, not n squared."""

from __future__ import annotations

import asyncio

from amqtt.broker import RetainedApplicationMessage
from amqtt.session import OutgoingApplicationMessage, Session

from connector.mqtt.broker.queue import QueueLimits, held, room_offline


class Counted(RetainedApplicationMessage):
    """A queued message that counts how often its payload is looked at."""

    reads = 0

    @property  # type: ignore[override]
    def data(self) -> bytes:
        Counted.reads += 1
        return self._data

    @data.setter
    def data(self, value: bytes) -> None:
        self._data = value


def test_a_backlog_is_counted_once_per_message_and_exactly() -> None:
    async def fill() -> None:
        session = Session()
        session.client_id = "away"
        limits = QueueLimits(messages=10_000, bytes=10**9)
        Counted.reads = 0
        for index in range(2_000):
            assert room_offline(session, 10, limits)
            session.retained_messages.put_nowait(Counted(None, "t", b"x" * 10, 1))
        # summing the queue for each new message read the payloads about 2,000,000 times
        assert Counted.reads <= 2 * 2_000
        assert held(session) == (2_000, 20_000)
        for _ in range(500):
            await session.retained_messages.get()
        session.inflight_out[7] = OutgoingApplicationMessage(None, "t", 1, b"y" * 100, False)
        session.inflight_out.setdefault(8, OutgoingApplicationMessage(None, "t", 1, b"z" * 5, False))
        session.inflight_out.setdefault(8, OutgoingApplicationMessage(None, "t", 1, b"w" * 50, False))
        assert held(session) == (1_502, 15_000 + 105)
        session.inflight_out.pop(7)
        del session.inflight_out[8]
        session.inflight_out.pop(9, None)
        assert held(session) == (1_500, 15_000)

    asyncio.run(fill())


def test_a_full_queue_still_refuses_a_message() -> None:
    async def fill() -> None:
        session = Session()
        session.client_id = "away"
        limits = QueueLimits(messages=3, bytes=25)
        for size in (10, 10):
            assert room_offline(session, size, limits)
            session.retained_messages.put_nowait(RetainedApplicationMessage(None, "t", b"x" * size, 1))
        assert not room_offline(session, 6, limits)  # 26 bytes
        assert room_offline(session, 5, limits)

    asyncio.run(fill())
