"""The kit's tests of a connector's Listen: what the process refuses is never acknowledged, it
is handed over again, retried and dead-lettered by the SDK's policy, and a Listen stops at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from connector.acceptance.endpoint import Endpoint
from connector.acceptance.support import properties, tuned, unique, within
from connector.harness.runtime import BackgroundListen, ListenOutcome, Runtime
from connector.sdk.documents import Document, document_from_json
from connector.sdk.manifest import Manifest
from connector.sdk.retry import DEFAULT_MAX_ATTEMPTS

#: Seconds a Listen may take to end once asked to ("about a second", and a busy machine).
STOP_SECONDS = 2.0
#: Seconds a Listen has to be ready, and to get what was put.
WAIT_SECONDS = 20.0
#: Seconds after which a Listen of the kit ends by itself (its timeout), whatever happened.
LISTEN_SECONDS = 20.0
#: The retry delay the kit asks for, where the operation schema declares it.
RETRY_DELAY = 0.1
#: The process's answer to a document it refuses.
REFUSAL = "the acceptance kit's process refuses this document"


class Process:
    """A sink that records every document handed to it, refuses those ``refuse`` says, and stops
    the Listen once it accepted ``last``."""

    def __init__(self, refuse: Callable[[bytes, int], bool] = lambda payload, attempt: False,
                 last: bytes | None = None) -> None:
        self.seen: list[bytes] = []
        self.refuse, self.last = refuse, last
        self.listen: BackgroundListen | None = None
        self.got = threading.Event()

    def __call__(self, document: Document) -> None:
        payload = bytes(document.payload)
        self.seen.append(payload)
        self.got.set()
        if self.refuse(payload, self.seen.count(payload)):
            raise RuntimeError(REFUSAL)
        if payload == self.last and self.listen is not None:
            self.listen.stop()


def _letters(arrived: list[bytes]) -> list[dict[str, Any]]:
    """The JSON objects among what arrived at a dead-letter destination: the dead letters."""
    found = []
    for item in arrived:
        try:
            value = json.loads(item)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _dead_payloads(arrived: list[bytes], manifest: Manifest) -> list[bytes]:
    """The payloads a dead-letter destination holds: each letter's document, and what arrived as it
    is (a connector may keep the document itself beside its letter, e.g. a file and NAME.error.json)."""
    inside = [document_from_json(letter, manifest.byte_properties).payload
              for letter in _letters(arrived) if "payload" in letter]
    return inside + list(arrived)


def _joined(background: BackgroundListen, seconds: float) -> ListenOutcome:
    try:
        return background.join(seconds)
    except TimeoutError:
        raise AssertionError(f"the Listen did not end within {seconds:g} s (its timeout was "
                             f"{LISTEN_SECONDS:g} s)") from None


class ListenPromises:
    connector_id: str

    def _listen(self, runtime: Runtime, endpoint: Endpoint, operation: Mapping[str, Any], process: Process,
                count: int | None = None) -> BackgroundListen:
        """A Listen in the background, ready (listening) before it returns."""
        background = runtime.listen_in_background(endpoint.connection, operation, process, count=count,
                                                  timeout=LISTEN_SECONDS, connector_id=self.connector_id)
        process.listen = background
        background.wait_ready(WAIT_SECONDS)
        return background

    def _end(self, background: BackgroundListen) -> ListenOutcome:
        """How the Listen ended: by itself, or at its timeout; an AssertionError when it ignored that."""
        seconds = LISTEN_SECONDS + WAIT_SECONDS
        return within(seconds + WAIT_SECONDS, "the Listen", lambda: _joined(background, seconds))

    def test_listen_hands_a_refused_document_over_again(self, kit_runtime: Runtime, kit_manifest: Manifest,
                                                        endpoint: Endpoint) -> None:
        """The process refuses the first attempt of the first document: the Listen hands it over
        again, then the next one; both are accepted, in order."""
        first, second = unique("kit refused once"), unique("kit after")
        process = Process(refuse=lambda payload, attempt: payload == first and attempt == 1, last=second)
        operation = tuned(kit_manifest, endpoint.listen_operation, retry_delay=RETRY_DELAY)
        background = self._listen(kit_runtime, endpoint, operation, process)
        endpoint.put([first, second])
        outcome = self._end(background)
        assert process.seen == [first, first, second]
        assert outcome.accepted == 2, outcome

    def test_listen_never_acknowledges_a_refused_document(self, kit_runtime: Runtime, kit_manifest: Manifest,
                                                          endpoint: Endpoint) -> None:
        """The process refuses a document every attempt and there is no dead-letter destination:
        it is handed over ``max_attempts`` times (the SDK's policy), the Listen ends ("refused",
        nothing accepted, the process's error), and a second Listen gets the document again."""
        payload = unique("kit always refused")
        operation = tuned(kit_manifest, endpoint.listen_operation, max_attempts=2, retry_delay=RETRY_DELAY,
                          dead_letter_topic=None)
        attempts = kit_manifest.validate_operation(operation).get("max_attempts", DEFAULT_MAX_ATTEMPTS)
        refusing = Process(refuse=lambda payload, attempt: True)
        background = self._listen(kit_runtime, endpoint, operation, refusing)
        endpoint.put([payload])
        outcome = self._end(background)
        assert refusing.seen == [payload] * attempts
        assert (outcome.reason, outcome.accepted) == ("refused", 0), outcome
        assert REFUSAL in (outcome.error or ""), outcome
        accepting = Process()
        self._end(self._listen(kit_runtime, endpoint, endpoint.listen_operation, accepting, count=1))
        assert accepting.seen == [payload], "a second Listen did not get the refused document again"

    def test_listen_stops_within_a_second(self, kit_runtime: Runtime, endpoint: Endpoint) -> None:
        """A Listen that is receiving ends (connection closed) within about a second of being asked
        to stop, with the reason "stopped"."""
        payload = unique("kit before stop")
        process = Process()
        background = self._listen(kit_runtime, endpoint, endpoint.listen_operation, process)
        endpoint.put([payload])
        assert process.got.wait(WAIT_SECONDS), "the Listen got nothing"
        asked = time.monotonic()
        background.stop()
        outcome = within(WAIT_SECONDS * 2, "the Listen asked to stop", lambda: _joined(background, WAIT_SECONDS))
        took = time.monotonic() - asked
        assert took <= STOP_SECONDS, f"the Listen took {took:.1f} s to stop"
        assert (outcome.reason, outcome.accepted) == ("stopped", 1), outcome

    def test_listen_dead_letters_a_document_refused_every_attempt(
            self, kit_runtime: Runtime, kit_manifest: Manifest, endpoint: Endpoint) -> None:
        """With ``max_attempts`` 2 and a ``dead_letter_topic``, a document the process always
        refuses is handed over twice, then its dead letter (a JSON object with the process's error
        and the attempts, and the document: inside it, or beside it as it came) arrives at the
        destination, the Listen goes on with the next document, and
        the refused one was acknowledged: a second Listen does not get it."""
        declared = properties(kit_manifest.operation_schema)
        if not {"max_attempts", "dead_letter_topic"} <= set(declared):
            pytest.skip("the operation schema declares no max_attempts and dead_letter_topic")
        if endpoint.dead_letter_topic is None:
            pytest.skip("the endpoint fixture gives no dead_letter_topic that `arrived` observes")
        refused, after, later = unique("kit dead letter"), unique("kit accepted"), unique("kit later")
        operation = {**tuned(kit_manifest, endpoint.listen_operation, retry_delay=RETRY_DELAY),
                     "max_attempts": 2, "dead_letter_topic": endpoint.dead_letter_topic}
        process = Process(refuse=lambda payload, attempt: payload == refused, last=after)
        background = self._listen(kit_runtime, endpoint, operation, process)
        endpoint.put([refused, after])
        outcome = self._end(background)
        assert process.seen == [refused, refused, after]
        assert (outcome.accepted, outcome.dead_lettered) == (1, 1), outcome
        letters = _letters(endpoint.arrived(1, WAIT_SECONDS))
        assert any(letter.get("attempts") == 2 and REFUSAL in str(letter.get("error")) for letter in letters), letters
        assert refused in _dead_payloads(endpoint.arrived(1, WAIT_SECONDS), kit_manifest), (
            "the refused document did not arrive at the dead-letter destination")
        accepting = Process()
        second = self._listen(kit_runtime, endpoint, endpoint.listen_operation, accepting, count=1)
        endpoint.put([later])
        self._end(second)
        assert accepting.seen == [later], "the dead-lettered document was not acknowledged"
