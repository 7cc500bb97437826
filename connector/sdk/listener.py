"""The runtime's side of a Listen: where a connector hands its documents."""

from __future__ import annotations

import threading

from connector.sdk.documents import Document


class Listener:
    """Base class of what a runtime passes to ``connector_listen``.

    A runtime subclasses it and implements :meth:`submit`. A connector only calls
    :meth:`submit` and :meth:`subscribed` and watches :attr:`stopping`.
    """

    def __init__(self) -> None:
        #: Set when the Listen must end; the connector returns soon after.
        self.stopping = threading.Event()

    def submit(self, document: Document) -> bool:
        """Hand one document to the process.

        :returns: True when the process accepted it (the connector may acknowledge it to the
            endpoint), False when it did not (the connector must not acknowledge it).
        """
        raise NotImplementedError

    def subscribed(self, granted: list[tuple[str, int | None]]) -> None:
        """The endpoint confirmed the subscriptions: ``(filter, granted QoS or None if refused)``."""

    def stop(self) -> None:
        """Ask the Listen to end."""
        self.stopping.set()
