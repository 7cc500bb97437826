"""A Listen's metrics in the Prometheus text format (``listen --health-port P --metrics``), through
``prometheus_client`` (the ``service`` extra), imported only when metrics are asked for.

The values are read from the Listen's :class:`~connector.harness.listening.ProcessListener` at each
scrape, into a registry of its own (never the library's global one), so they are the Listen's own
counts, exactly:

- ``received``: messages the Listen took from the endpoint: handed to the process (a document
  handed over again after a refusal counts once), dropped as repeats, or skipped as the operation
  asks;
- ``accepted``: documents the process accepted; ``retried``: hand-overs again after a refusal;
  ``dead_lettered``: documents moved to the dead-letter destination; ``repeats_dropped``;
  ``skipped`` (by reason);
- ``acknowledged``: accepted + dead-lettered + repeats dropped + skipped, the messages the connector
  let go (a QoS 0 message has nothing to acknowledge and is counted when let go);
- ``in_flight``: received and not yet acknowledged (with the process, waiting for a retry, or left
  unacknowledged by a stop); ``last_document_age_seconds`` (NaN before the first message);
  ``reconnects``; ``connected`` and ``ready`` (1 or 0, as ``/readyz``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from connector.harness.exits import UsageError
from connector.harness.listening import ProcessListener
from connector.harness.service import Answer, readiness

#: What the metrics' names start with.
PREFIX = "connector_listen"


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise UsageError("--metrics needs the Python package prometheus_client (the 'service' extra): pip install "
                         "prometheus_client") from None
    return prometheus_client


class _ListenCollector:
    """Reads the Listen's counts at each scrape (a custom collector: no second count to keep)."""

    def __init__(self, listener: ProcessListener, info: dict[str, str]) -> None:
        self.listener, self.info = listener, info

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        listener = self.listener
        # The parts first, the total after: the Listen counts a message received before it counts
        # what became of it, so in_flight is never below 0 however the two threads interleave.
        accepted, dead, repeats, skips = listener.accepted, listener.dead_letters, listener.repeats, dict(listener.skips)
        skipped = sum(skips.values())
        received = listener.received + repeats + skipped
        acknowledged = accepted + dead + repeats + skipped
        last = listener.last_received_at

        def counter(name: str, text: str, value: int) -> Any:
            return CounterMetricFamily(f"{PREFIX}_{name}", text, value=value)

        def gauge(name: str, text: str, value: float) -> Any:
            return GaugeMetricFamily(f"{PREFIX}_{name}", text, value=value)

        yield InfoMetricFamily(PREFIX, "the connector this Listen runs", value=self.info)
        yield counter("documents_received", "messages taken from the endpoint (a retry counts once)", received)
        yield counter("documents_accepted", "documents the process accepted", accepted)
        yield counter("documents_acknowledged", "messages let go: accepted, dead-lettered, repeats dropped, skipped",
                      acknowledged)
        yield counter("documents_retried", "documents handed to the process again after it refused them",
                      listener.retried)
        yield counter("documents_dead_lettered", "documents moved to the dead-letter destination", dead)
        yield counter("documents_repeats_dropped", "repeats of documents handed over before, dropped", repeats)
        by_reason = CounterMetricFamily(f"{PREFIX}_documents_skipped", "messages left out as the operation asks",
                                        labels=["reason"])
        for reason, count in sorted(skips.items()):
            by_reason.add_metric([reason], count)
        yield by_reason
        yield counter("reconnects", "connections won back after one was lost", listener.reconnects)
        yield gauge("documents_in_flight", "messages received and not yet acknowledged", max(0, received - acknowledged))
        yield gauge("last_document_age_seconds", "seconds since the last message was received (NaN: none yet)",
                    math.nan if last is None else time.monotonic() - last)
        yield gauge("connected", "1 while the connection is up", 1 if listener.down_since is None else 0)
        yield gauge("ready", "1 while subscribed on the connection now up (as /readyz)",
                    1 if readiness(listener)[0] else 0)


def metrics_page(listener: ProcessListener, info: dict[str, str]) -> Any:
    """A function answering ``GET /metrics`` for ``listener``; :class:`UsageError` (with the pip
    command) when prometheus_client is not installed."""
    prometheus = _prometheus()
    registry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(_ListenCollector(listener, info))

    def page() -> Answer:
        return 200, prometheus.generate_latest(registry), prometheus.CONTENT_TYPE_LATEST

    return page
