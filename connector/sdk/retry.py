"""A Listen's retries, dead letters and giving up: one policy for every connector.

When the process refuses a document, a Listen hands it over again after a delay; after the last
attempt it moves the document to a dead-letter destination, or gives up on it. A message is
acknowledged to the endpoint only when the process accepted it or the dead-letter destination
confirmed it: a refused message is never acknowledged and dropped.

The policy is driven by three operation fields. The SDK defines what they mean, and their names,
which users' operation files hold:

``max_attempts`` (a whole number, at least 1; :data:`DEFAULT_MAX_ATTEMPTS` when not declared)
    How many times in all a document is handed to the process while the process refuses it.
``retry_delay`` (seconds, at least 0; :data:`DEFAULT_RETRY_DELAY` when not declared)
    The wait before the second attempt; it doubles before each further one, at most
    :data:`MAX_RETRY_DELAY`. A Listen asked to stop during a wait stops at once (the document is
    not acknowledged).
``dead_letter_topic`` (text, or null for none; none when not declared)
    Where a document goes after its last failed attempt: a dead letter (:func:`dead_letter`: its
    JSON form, the process's error and the number of attempts) is published there, and the
    original is acknowledged once the destination confirmed it (:meth:`Listener.dead_lettered`).
    Without one, or when publishing fails, the policy gives up (:meth:`Listener.gave_up`): the
    message is not acknowledged and the Listen stops.

A connector declares these fields in its operation schema, in its own words (title, description,
bounds, default; ``"x-actions": ["listen"]``), and hands the validated operation to
:class:`Retries`. It supplies only an :class:`Endpoint`: how to acknowledge a message and how to
publish a dead letter (and, when it has a limit, the largest dead letter it can carry). For
example (the MQTT connector's Listen)::

    endpoint = Endpoint(acknowledge=lambda message: client.ack(message),
                        publish_dead_letter=publish_qos1_and_wait,   # None once the broker confirmed
                        dead_letter_room=lambda topic: largest_payload(conn, topic, 1),
                        describe=lambda document: f"the message on {document.properties['topic']!r}",
                        byte_properties=manifest.byte_properties)
    retries = Retries(operation, listener, endpoint)
    accepted += retries.deliver(messages, documents)   # per batch of messages received together
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from connector.sdk.documents import Document, document_to_json
from connector.sdk.listener import Listener

log = logging.getLogger("connector.sdk.retry")

#: ``max_attempts`` of an operation that does not give one.
DEFAULT_MAX_ATTEMPTS = 3
#: ``retry_delay`` (seconds) of an operation that does not give one.
DEFAULT_RETRY_DELAY = 1.0
#: The longest wait before handing a refused document to the process again, in seconds.
MAX_RETRY_DELAY = 60.0
#: The most of the process's error a dead letter carries, in characters.
DEAD_LETTER_ERROR_MAX = 4_096

Message = TypeVar("Message")


def _no_limit(destination: str) -> int | None:
    return None


def _a_document(document: Document) -> str:
    return "a document"


@dataclass(frozen=True)
class Endpoint(Generic[Message]):
    """What a connector supplies to the policy; ``Message`` is whatever it acknowledges."""

    #: Acknowledge a message to the endpoint (called only once the message may be forgotten).
    acknowledge: Callable[[Message], None]
    #: ``publish_dead_letter(destination, letter, message)``: publish the dead letter of ``message``
    #: and wait until the destination confirmed it; None when it did, else why not (one line for a
    #: person). The message is acknowledged after a confirmed dead letter.
    publish_dead_letter: Callable[[str, bytes, Message], str | None]
    #: ``dead_letter_room(destination)``: the largest dead letter, in bytes, the destination surely
    #: takes, or None for no limit. A larger one carries the start of the payload (:func:`dead_letter`).
    dead_letter_room: Callable[[str], int | None] = _no_limit
    #: A document in the connector's words, for log lines ("the message on 'a/b'").
    describe: Callable[[Document], str] = _a_document
    #: The document properties that carry bytes (``Manifest.byte_properties``), in a dead letter as
    #: text when UTF-8, else base64.
    byte_properties: Collection[str] = ()
    #: Acknowledge the messages of a batch the process accepted together (e.g. in one write);
    #: None: ``acknowledge`` each, in order.
    acknowledge_all: Callable[[Sequence[Message]], None] | None = None


class Retries(Generic[Message]):
    """Hands the messages of a Listen to the process (:meth:`deliver`), acknowledging what it
    accepted; a refused document is handed over again after a delay, up to ``max_attempts``
    times, then dead-lettered or given up on (the Listen then ends)."""

    def __init__(self, operation: Mapping[str, Any], listener: Listener, endpoint: Endpoint[Message]) -> None:
        self.listener, self.endpoint = listener, endpoint
        self.max_attempts: int = max(1, operation.get("max_attempts", DEFAULT_MAX_ATTEMPTS))
        self.delay: float = max(0.0, operation.get("retry_delay", DEFAULT_RETRY_DELAY))
        self.dead_letter_topic: str | None = operation.get("dead_letter_topic") or None

    def wait(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1 for the first): the retry delay, doubling,
        at most :data:`MAX_RETRY_DELAY`."""
        return min(MAX_RETRY_DELAY, self.delay * 2 ** min(attempt - 1, 30))

    def deliver(self, messages: Sequence[Message], documents: list[Document]) -> int:
        """Hand the batch over (``documents[i]`` is ``messages[i]``); return how many documents the
        process accepted. Returns early, leaving the rest unacknowledged, once the Listen stops."""
        listener, stopping = self.listener, self.listener.stopping
        acknowledge, describe = self.endpoint.acknowledge, self.endpoint.describe
        acknowledge_all = self.endpoint.acknowledge_all
        accepted = position = 0
        attempt = 1  # of documents[position]
        while position < len(documents) and not stopping.is_set():
            taken = listener.submit_batch(documents[position:] if position else documents)
            if taken and acknowledge_all is not None:  # written and made durable: acknowledge
                acknowledge_all(messages[position:position + taken])
            else:
                for message in messages[position:position + taken]:
                    acknowledge(message)
            accepted += taken
            position += taken
            if position == len(documents) or stopping.is_set():
                break
            if taken:
                attempt = 1
            document = documents[position]
            error = listener.error or "the process refused the document"
            if attempt < self.max_attempts:
                wait = self.wait(attempt)
                log.warning("the process failed for %s (attempt %d of %d: %s); trying again in %g s",
                            describe(document), attempt, self.max_attempts, error, wait)
                listener.retrying(document, error, attempt, wait)
                if stopping.wait(wait):
                    break  # not acknowledged: the endpoint keeps it (e.g. for a persistent session)
                attempt += 1
                continue
            if not self._moved(document, messages[position], error, attempt):
                break
            acknowledge(messages[position])
            position += 1
            attempt = 1
        return accepted

    def _moved(self, document: Document, message: Message, error: str, attempts: int) -> bool:
        """After the last attempt: True when the dead-letter destination confirmed the document;
        else give up (the Listen stops) and False."""
        listener, describe = self.listener, self.endpoint.describe
        if self.dead_letter_topic is None:
            log.error("the process failed %d time%s for %s (%s); it was not acknowledged: stopping",
                      attempts, "s" if attempts > 1 else "", describe(document), error)
            listener.gave_up(document, error, attempts)
            listener.stop()
            return False
        problem = self._dead_letter(document, message, error, attempts)
        if problem is not None:
            log.error("%s could not be moved to the dead-letter topic %r (%s); it was not acknowledged: stopping",
                      describe(document), self.dead_letter_topic, problem)
            listener.gave_up(document, f"{error}; dead-letter topic: {problem}", attempts)
            listener.stop()
            return False
        listener.dead_lettered(document, error, attempts, self.dead_letter_topic)
        return True

    def _dead_letter(self, document: Document, message: Message, error: str, attempts: int) -> str | None:
        """Publish the document's dead letter; None once the destination confirmed it, else why not."""
        destination, endpoint = self.dead_letter_topic, self.endpoint
        assert destination is not None
        room = endpoint.dead_letter_room(destination)
        letter = dead_letter(document, error, attempts, room, endpoint.byte_properties)
        return endpoint.publish_dead_letter(destination, letter, message)


def dead_letter(document: Document, error: str, attempts: int, room: int | None = None,
                byte_properties: Collection[str] = ()) -> bytes:
    """The dead letter of ``document``: its JSON form (:func:`~connector.sdk.documents.document_to_json`)
    plus ``error`` (at most :data:`DEAD_LETTER_ERROR_MAX` characters of it) and ``attempts``, in
    UTF-8, at most ``room`` bytes (None: no limit). When the whole payload does not fit, the dead
    letter carries as much of its start as fits, ``"truncated": true`` and ``"size"``, the payload's
    size in bytes: so a dead letter never exceeds what the destination takes, however often it is
    wrapped again."""
    if len(error) > DEAD_LETTER_ERROR_MAX:
        error = error[:DEAD_LETTER_ERROR_MAX] + "..."
    envelope = document_to_json(document, byte_properties)
    envelope.update(error=error, attempts=attempts)
    whole = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    if room is None or len(whole) <= room:
        return whole
    payload = document.payload
    envelope.update(payload="", truncated=True, size=len(payload))
    left = room - len(json.dumps(envelope, ensure_ascii=False).encode("utf-8"))
    text = envelope["encoding"] == "utf-8"
    keep = max(0, left if text else left // 4 * 3)  # base64: 4 characters for 3 bytes
    while keep > 0:  # escapes (\", \n, \u0001) make text longer in JSON: shrink until it fits
        part = payload[:keep]
        envelope["payload"] = part.decode("utf-8", "ignore") if text else base64.b64encode(part).decode("ascii")
        size = len(json.dumps(envelope["payload"], ensure_ascii=False).encode("utf-8")) - 2
        if size <= left:
            break
        keep = min(keep - 1, keep * left // size)
    else:
        envelope["payload"] = ""
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")
