"""The runtime's side of a Listen: where a connector hands its documents."""

from __future__ import annotations

import threading

from connector.sdk.documents import Document


class Listener:
    """Base class of what a runtime passes to ``connector_listen``.

    A runtime subclasses it and implements :meth:`submit` (and, to write batches at once,
    :meth:`submit_batch`). A connector only calls :meth:`submit` or :meth:`submit_batch` and
    :meth:`subscribed`, and watches :attr:`stopping`.
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

    def submit_batch(self, documents: list[Document]) -> int:
        """Hand several documents to the process at once, in order (a connector's fast path).

        The process may write them all and make them durable once (one flush for the batch)
        before it answers, so a connector acknowledges a whole batch after one call.

        :returns: how many of them, counted from the first, the process accepted *and* made
            durable: the connector acknowledges exactly these and never the rest. Fewer than
            ``len(documents)`` means the process refused the next one (or stopped, e.g. its
            count was reached); 0 when nothing of the batch may be acknowledged.

        The default calls :meth:`submit` for each document and stops at the first refusal, so a
        runtime that implements only :meth:`submit` is served correctly.
        """
        accepted = 0
        for document in documents:
            if self.stopping.is_set() or not self.submit(document):
                break
            accepted += 1
        return accepted

    def subscribed(self, granted: list[tuple[str, int | None]]) -> None:
        """The endpoint confirmed the subscriptions: ``(filter, granted QoS or None if refused)``."""

    def stop(self) -> None:
        """Ask the Listen to end."""
        self.stopping.set()
