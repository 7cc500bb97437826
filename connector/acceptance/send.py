"""The kit's tests of a connector's Send: one Result per document, in order, input read lazily."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator

from connector.acceptance.endpoint import Endpoint
from connector.acceptance.support import unique, within
from connector.harness.runtime import Runtime
from connector.sdk.documents import Status

#: Documents the Send tests send.
DOCUMENTS = 5
#: How far ahead of the Results it yielded a Send may read its input (an in-flight window).
LOOKAHEAD = 1_000
#: Seconds a Send of a few documents may take.
SEND_SECONDS = 30.0


class SendPromises:
    connector_id: str

    def test_send_yields_one_result_per_document_in_order(self, kit_runtime: Runtime, endpoint: Endpoint) -> None:
        """A Send of 5 documents (one of them bytes that are not UTF-8) yields exactly 5 Results,
        with indexes 0 to 4 in order, each SUCCESS; the endpoint got exactly those payloads."""
        payloads = [unique(f"kit document {n}") for n in range(DOCUMENTS - 1)] + [b"\xff\x00kit" + unique("")]
        results = within(SEND_SECONDS, "the Send", lambda: list(kit_runtime.send(
            endpoint.connection, endpoint.send_operation, payloads, connector_id=self.connector_id)))
        assert [r.index for r in results] == list(range(DOCUMENTS)), results
        assert [r.status for r in results] == [Status.SUCCESS] * DOCUMENTS, results
        arrived = endpoint.arrived(DOCUMENTS, SEND_SECONDS)
        assert Counter(arrived) == Counter(payloads)

    def test_send_reads_its_input_lazily(self, kit_runtime: Runtime, endpoint: Endpoint) -> None:
        """A Send over an endless input yields Results as it goes: taking 5 Results reads at most a
        window ahead (fewer than 1,000 documents more), and closing the Results ends the Send; the
        first 5 documents arrived."""
        read: list[bytes] = []

        def endless() -> Iterator[bytes]:
            for n in itertools.count():
                if n >= DOCUMENTS + LOOKAHEAD:
                    return  # an eager Send would read forever: end, and fail below
                read.append(unique(f"kit endless {n}"))
                yield read[-1]

        results = kit_runtime.send(endpoint.connection, endpoint.send_operation, endless(),
                                   connector_id=self.connector_id)
        taken = within(SEND_SECONDS, "taking 5 Results of an endless Send",
                       lambda: list(itertools.islice(results, DOCUMENTS)))
        assert len(read) < DOCUMENTS + LOOKAHEAD, f"the Send read {len(read):,} documents to yield {DOCUMENTS}"
        within(SEND_SECONDS, "closing the Results of an endless Send", results.close)
        assert [r.index for r in taken] == list(range(DOCUMENTS))
        assert all(r.status is Status.SUCCESS for r in taken), taken
        first = set(read[:DOCUMENTS])
        assert first <= _arrived(endpoint, first, SEND_SECONDS), "the first 5 documents did not arrive"


def _arrived(endpoint: Endpoint, wanted: set[bytes], seconds: float) -> set[bytes]:
    """What arrived, once ``wanted`` did or ``seconds`` passed (more may arrive before them)."""
    deadline = time.monotonic() + seconds
    got = endpoint.arrived(len(wanted), seconds)
    while not wanted <= set(got) and time.monotonic() < deadline:
        got = endpoint.arrived(len(got) + 1, min(1.0, max(0.0, deadline - time.monotonic())))
    return set(got)
