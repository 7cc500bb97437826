"""The Listen's hand-over from paho's thread (connector.mqtt.inbox.Inbox): every message, in order,
the taker woken for each one, paho's thread held back while the inbox is full."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator

import pytest

from connector.mqtt.inbox import Inbox


def test_items_come_out_in_order_at_most_so_many_at_a_time() -> None:
    inbox: Inbox[int] = Inbox(10)
    for i in range(5):
        assert inbox.put(i)
    assert len(inbox) == 5 and inbox.wait(0)
    assert inbox.take(3) == [0, 1, 2]
    assert inbox.take(3) == [3, 4]
    assert inbox.take(3) == [] and inbox.empty() and not inbox.wait(0.01)
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.01)


def test_a_full_inbox_holds_the_putter_back_until_the_taker_takes() -> None:
    inbox: Inbox[int] = Inbox(2)
    assert inbox.put(1) and inbox.put(2)
    assert not inbox.put(3, timeout=0.05)  # full and nobody takes: not added
    assert list(inbox.take(5)) == [1, 2]
    added = threading.Event()
    assert inbox.put(3) and inbox.put(4)

    def put() -> None:
        if inbox.put(5, timeout=5):
            added.set()

    thread = threading.Thread(target=put)
    thread.start()
    assert not added.wait(0.05)  # waits for room
    assert inbox.get(timeout=1) == 3
    assert added.wait(5)
    thread.join()
    assert inbox.take(5) == [4, 5]


@pytest.fixture
def switching() -> Iterator[None]:
    """The two threads take turns as often as the interpreter can: a race shows within a test."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("switching")
def test_the_taker_is_woken_for_every_item() -> None:
    """One item at a time, each put while the taker waits (or is about to): a lost wake-up would
    leave the taker waiting out its timeout."""
    inbox: Inbox[int] = Inbox(10)
    taken = threading.Event()
    count = 3000
    errors: list[str] = []

    def take() -> None:
        for i in range(count):
            if not inbox.wait(1):
                errors.append(f"not woken for item {i}")
                return
            if inbox.take(10) != [i]:
                errors.append(f"item {i} out of order")
                return
            taken.set()

    thread = threading.Thread(target=take)
    thread.start()
    for i in range(count):
        taken.clear()
        inbox.put(i)
        assert taken.wait(5), errors
    thread.join(5)
    assert not errors


@pytest.mark.usefixtures("switching")
def test_a_small_inbox_between_two_busy_threads_loses_nothing() -> None:
    inbox: Inbox[int] = Inbox(4)
    count = 20_000
    got: list[int] = []

    def take() -> None:
        while len(got) < count and inbox.wait(1):
            got.extend(inbox.take(3))

    thread = threading.Thread(target=take)
    thread.start()
    assert all(inbox.put(i, timeout=5) for i in range(count))
    thread.join(10)
    assert got == list(range(count))


def test_items_put_together_wake_the_taker_once_and_wait_for_room_together() -> None:
    inbox: Inbox[int] = Inbox(3)
    assert inbox.put_all([1, 2])
    assert inbox.wait(0) and inbox.take(10) == [1, 2]
    assert inbox.put_all([3, 4, 5, 6])  # room for one more: all go in (a read is handed over whole)
    assert not inbox.put_all([7, 8], timeout=0.05)  # now full: none is added
    assert inbox.take(10) == [3, 4, 5, 6]
    assert inbox.put_all(range(7, 9)) and inbox.take(10) == [7, 8]
