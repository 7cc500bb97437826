"""The runtime's side of a Listen: where a connector hands its documents."""

from __future__ import annotations

import threading

from connector.sdk.documents import Document


class Listener:
    """Base class of what a runtime passes to ``connector_listen``.

    A runtime subclasses it and implements :meth:`submit` (and, to write batches at once,
    :meth:`submit_batch`). A connector calls :meth:`submit` or :meth:`submit_batch`,
    :meth:`listening`, :meth:`dead_lettered` and :meth:`gave_up`, and watches :attr:`stopping`.
    A connector with a connection that can be lost and won back also calls :meth:`disconnected`
    and :meth:`connected`; the SDK's retry policy calls :meth:`retrying`. The notifications but
    :meth:`submit` and :meth:`submit_batch` do nothing here: a runtime overrides those it shows
    (the harness counts them for its health checks and metrics). They may come from another
    thread than the Listen's (e.g. a network thread): they must be quick and must not raise.

    When the process refuses a document, the connector hands it over again (with a delay) up to
    the operation's number of attempts; then it moves the message to a dead-letter destination
    (:meth:`dead_lettered`) or gives up (:meth:`gave_up`: the message is not acknowledged and the
    Listen ends). A refused message is never acknowledged and dropped.
    """

    def __init__(self) -> None:
        #: Set when the Listen must end; the connector returns soon after.
        self.stopping = threading.Event()
        #: Why the process refused the last document it refused (set by the runtime).
        self.error: str | None = None

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

    def dead_lettered(self, document: Document, error: str, attempts: int, destination: str) -> None:
        """The process refused ``document`` ``attempts`` times (last ``error``); the connector moved it
        to ``destination`` (e.g. a dead-letter topic), which confirmed it, and acknowledged it."""

    def gave_up(self, document: Document, error: str, attempts: int) -> None:
        """The process refused ``document`` ``attempts`` times and there is nowhere to move it: it
        was not acknowledged, and the connector stops the Listen after this call."""

    def repeat_dropped(self, document: Document) -> None:
        """The connector recognised ``document`` as a repeat of one it handed over before (e.g. a
        QoS 1 re-delivery) and acknowledged it without handing it over again."""

    def skipped(self, document: Document, reason: str) -> None:
        """The connector left ``document`` out as its operation asks (``reason``, a few words such
        as "retained"); it acknowledged it without handing it over."""

    def done(self, reason: str) -> None:
        """The connector ends the Listen as its operation asks (``reason``, a few words such as
        "every retained message was read"); it returns soon after."""
        self.stop()

    def retrying(self, document: Document, error: str, attempt: int, wait: float) -> None:
        """The process refused ``document`` at ``attempt`` (1 for the first; last ``error``): it is
        handed over again in ``wait`` seconds, unless the Listen stops meanwhile."""

    def connected(self) -> None:
        """The connection to the endpoint is up: the runtime calls it once ``connector_open``
        returned, the connector after each reconnect (and :meth:`listening` once the endpoint
        confirmed the subscriptions again)."""

    def disconnected(self, reason: str) -> None:
        """The connection to the endpoint was lost (``reason``, a few words for a person); the
        connector tries to get it back, and calls :meth:`connected` when it has."""

    def listening(self, description: str) -> None:
        """The endpoint confirmed the connector listens (called again after every reconnect).

        :param description: what the connector listens on, in its own words, e.g. ``"'a/#' (QoS
            1), 'b' (refused)"``; a runtime shows it to a person (``listening on ...``).
        """

    def stop(self) -> None:
        """Ask the Listen to end."""
        self.stopping.set()
