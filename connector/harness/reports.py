"""What a Send and a Listen report on stderr (one line per failed document, the summary), and
the Send's results file (``--results``: one JSON line per document)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

from connector.harness.exits import EXIT_CLOSED, EXIT_FAILED, EXIT_OK, UsageError


def say(text: str) -> None:
    """A line for people on stderr, in UTF-8, whole (see connector.harness.output)."""
    from connector.harness.logs import for_people
    from connector.harness.output import write_text

    write_text(sys.stderr, for_people(text))


def _open_results(path: str | None) -> Any:
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the results file {path!r}: {exc.strerror or exc}") from None


class _Tally:
    """The results of a Send as they come: counted, written to the results file, each failure said."""

    def __init__(self, results_path: str | None, name: Callable[[int], str]) -> None:
        from connector.sdk.documents import Status

        self.name = name  # a document as the user counts it: "document 2 (line 2)"
        self.out = _open_results(results_path)
        self.success, self.failure = Status.SUCCESS, Status.FAILURE
        self.counts = {status: 0 for status in Status}  # but SUCCESS: see succeeded
        self.succeeded = 0
        self.earlier = 0  # confirmed by an earlier run (outbox)
        self.unwritten: str | None = None  # why the results file could not be written: the summary still comes
        self.last_failure: tuple[int, str | None] | None = None  # the summary says which and why

    def add(self, result: Any) -> None:
        status = result.status
        if status is self.success:  # the common case, in few steps: this runs once per document
            self.succeeded += 1
            if result.note is not None:
                self.earlier += 1
        else:
            self.counts[status] += 1
            if status is self.failure:
                self.last_failure = (result.index, result.error)
        if self.out is not None and self.unwritten is None:
            try:
                if status is self.success and result.note is None:  # json.dumps(result.to_json())'s line
                    self.out.write(f'{{"index": {result.index:d}, "status": "SUCCESS"}}\n')
                else:
                    self.out.write(json.dumps(result.to_json()) + "\n")
            except OSError as exc:
                self.unwritten = exc.strerror or str(exc)
        if status is not self.success:
            say(f"error: {self.name(result.index)}: {status.value}: {result.error}\n")

    def close(self) -> None:
        if self.out is not None:
            try:
                self.out.close()
            except OSError as exc:
                self.unwritten = self.unwritten or exc.strerror or str(exc)

    def summary(self, what: str | None) -> tuple[str, bool]:
        """The summary line (without its end) and whether any document failed."""
        from connector.sdk.documents import Status

        counts = self.counts
        failed = sum(counts.values())
        total = self.succeeded + failed
        summary = f"sent {self.succeeded:,} of {total:,} document{'s' if total != 1 else ''}"
        if what:  # the connector's own words for where they went
            summary += f" {what}"
        if self.earlier:
            summary += f", {self.earlier:,} of them confirmed by an earlier run (outbox)"
        if failed:
            summary += (f"; {counts[Status.APPLICATION_ERROR]:,} refused (APPLICATION_ERROR), "
                        f"{counts[Status.FAILURE]:,} failed (FAILURE)")
            if self.last_failure and self.last_failure[1]:
                index, error = self.last_failure
                summary += f", the last, {self.name(index)}, because {error}"
        return summary, bool(failed)


def report_send(results: Iterator[Any], results_path: str | None, what: str | None, stop: Any = None,
                name: Callable[[int], str] | None = None) -> int:
    """One result line per document (stderr for each failure, ``--results``), then the summary;
    with ``stop`` (a GracefulStop), also for the documents a second signal left unsettled.
    ``name`` names a document by its index (:func:`connector.harness.inputs.document_namer`)."""
    tally = _Tally(results_path, name or (lambda index: f"document {index + 1}"))
    try:
        for result in results if stop is None else stop.results(results):
            tally.add(result)
    finally:
        tally.close()
    summary, failed = tally.summary(what)
    if stop is not None and stop.signal is not None:
        from connector.harness.stopping import stopped_counts

        last = tally.name(stop.read - 1) if stop.read else None
        say(summary + "; " + stopped_counts(stop, tally.succeeded, sum(tally.counts.values()), last) + "\n")
        code = 128 + stop.signal
    else:
        say(summary + "\n")
        code = EXIT_FAILED if failed else EXIT_OK
    if tally.unwritten is not None:
        say(f"error: cannot write the results file {results_path!r}: {tally.unwritten}; the summary above counts "
            "every document\n")
        return code if code != EXIT_OK else EXIT_FAILED
    return code


def listen_and_report(runtime: Any, connection: dict[str, Any], operation: dict[str, Any], count: int | None,
                      timeout: float | None, connector_id: str, output: tuple[str | None, str | None] = (None, None),
                      progress: bool | None = None, service: Any = None) -> int:
    """Run a Listen to standard output (or ``output``: its ``--format`` and ``--output FILE``) and
    report how it ended; the exit code. ``service``: the health checks (and metrics) to serve while
    it runs (:class:`~connector.harness.service.ServiceOptions`), or None."""
    import signal

    from connector.harness.formats import listen_sink
    from connector.harness.runtime import ProcessListener
    from connector.harness.sinks import JsonLinesSink

    if count is not None and count < 1:
        raise UsageError("--count must be at least 1")
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    chatty = sys.stderr.isatty() or logging.getLogger().isEnabledFor(logging.DEBUG)

    def on_listening(description: str) -> None:
        if chatty:
            say(f"listening on {description}; Ctrl-C to stop\n")

    # Every byte of a line reaches stdout before its message is acknowledged, in UTF-8 (the sink
    # writes to the file descriptor itself, not through sys.stdout).
    manifest = runtime.manifest(connector_id)
    sink = listen_sink(*output, manifest) or JsonLinesSink(sys.stdout, manifest.byte_properties)
    listener = ProcessListener(sink, count, on_listening)
    signals: list[int] = []  # the one that stopped it, for the report
    _stop_on_signals(listener, signals)
    from connector.harness.progress import listen_progress

    server = None
    if service is not None:  # checked first: a bad configuration is exit 2 whatever the port
        runtime.validate(connection, operation, "listen", connector_id)
        server = _serve(service, listener, connector_id, manifest.version)
    shown = listen_progress(progress, listener)
    waited = False
    try:
        outcome = runtime.listen(connection, operation, listener.sink, count=count, timeout=timeout,
                                 listener=listener, connector_id=connector_id)
    except _StopWaiting:
        outcome, waited = listener.outcome(), True
    finally:
        if shown is not None:
            shown.finish()
        if server is not None:
            server.close()
    stopped = None
    if waited:
        stopped = f"stopped by {signal.Signals(signals[0]).name} while waiting for the broker: nothing received"
    elif signals and outcome.reason == "stopped":
        stopped = (f"stopped by {signal.Signals(signals[0]).name}: received {listener.received:,}, wrote "
                   f"{outcome.accepted:,}{_unwritten(listener.received - outcome.accepted)}")
    return _report_listen(outcome, sink, chatty, stopped)


def _stop_on_signals(listener: Any, signals: list[int]) -> None:
    """SIGINT and SIGTERM stop the Listen gracefully: no new message is taken; the batch in hand is
    written, flushed and acknowledged; the connection is closed with a DISCONNECT. What the broker
    sent meanwhile stays unacknowledged. A write blocked on a reader that does not read gives up
    within a second (not acknowledged). A Listen still waiting for its broker stops waiting."""
    import signal

    def on_signal(signum: int, _: Any) -> None:
        signals.append(signum)
        listener.stop_for("stopped")
        if listener.opening:  # the broker's retries sleep in this thread: end them
            raise _StopWaiting

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


class _StopWaiting(BaseException):
    """A signal came while the Listen was still waiting for its broker (a BaseException, as
    KeyboardInterrupt is: the connection's ``except Exception`` around an attempt must not take it
    for a failed connection and go on waiting)."""


def _serve(options: Any, listener: Any, connector_id: str, version: str) -> Any:
    """Start serving the Listen's health checks (and metrics); say where."""
    from connector.harness.service import ServiceServer
    from connector.sdk.network import is_loopback

    page = None
    if options.metrics:  # prometheus_client is imported only now
        from connector.harness.metrics import metrics_page

        page = metrics_page(listener, {"connector": connector_id, "version": version})
    server = ServiceServer(listener, options, page).start()
    if not is_loopback(options.host):
        logging.getLogger("connector.harness.service").warning(
            "--health-host %s serves the Listen's state%s to other machines: keep the port behind a firewall",
            options.host, " and metrics" if page else "")
    say(f"health checks on {server.url}/healthz and /readyz{f', metrics on {server.url}/metrics' if page else ''}\n")
    return server


def _unwritten(count: int) -> str:
    return (f", {count:,} not written (not acknowledged: a persistent session gets them again)"
            if count > 0 else "")


def _report_listen(outcome: Any, sink: Any, chatty: bool, stopped: str | None = None) -> int:
    from connector.harness.output import FdOutput, silence

    accepted = f"{outcome.accepted:,} document{'s' if outcome.accepted != 1 else ''}"
    moved = (f"; {outcome.dead_lettered:,} moved to the dead-letter topic after failing every attempt"
             if outcome.dead_lettered else "")
    if outcome.repeats_dropped:
        moved += f"; {outcome.repeats_dropped:,} repeat{'s' if outcome.repeats_dropped != 1 else ''} dropped"
    for reason, skipped in sorted(outcome.skipped.items()):
        moved += f"; {skipped:,} skipped ({reason})"
    if outcome.reason == "closed":  # like any Unix tool whose reader went away: quietly
        if isinstance(sink.output, FdOutput):
            silence(sink.output.fd)
        if chatty:
            say(f"received {accepted} (the output was closed){moved}\n")
        return EXIT_CLOSED
    if outcome.reason == "output":
        say(f"error: cannot write the output ({outcome.error}): {accepted} written and acknowledged; the rest "
            f"were not acknowledged, so a persistent session gets them again{moved}\n")
        return EXIT_FAILED
    if outcome.reason == "refused":
        say(f"error: the process failed for a message every attempt ({outcome.error}); it was not "
            f"acknowledged{moved}\n")
        return EXIT_FAILED
    if stopped is not None:  # by a signal: always said, with the counts
        say(stopped + moved + "\n")
    elif chatty or moved:
        ended = {"count": "count reached", "timeout": "timeout", "stopped": "stopped"}.get(outcome.reason, outcome.done)
        say(f"received {accepted} ({ended}){moved}\n")
    return EXIT_OK
