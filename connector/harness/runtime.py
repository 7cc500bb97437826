"""The runtime simulator's Python API: validate -> open -> execute -> results.

This is what the command line calls, and what scripts and tests use::

    from connector.harness.runtime import Runtime

    runtime = Runtime()  # the only installed connector; with several, Runtime(default_connector=ID)
    results = list(runtime.send({"port": 1883}, {"action": "send", "topic": "a/b", "qos": 1}, ["21", b"\\x00"]))
    outcome = runtime.listen({"port": 1883}, {"action": "listen", "topic": "a/#"}, print, count=2)

Configurations are validated against the connector's schemas before anything is opened, with
every problem reported at once (:class:`~connector.sdk.errors.ConfigError`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.harness.listening import ListenOutcome, ProcessListener
from connector.harness.sinks import CollectingSink, Sink
from connector.sdk.documents import Document, Result
from connector.sdk.errors import ConfigError, PluginError
from connector.sdk.manifest import Manifest
from connector.sdk.plugins import Connector, Connectors, installed_connectors

__all__ = ["BackgroundListen", "ListenOutcome", "ProcessListener", "Runtime"]

log = logging.getLogger("connector.harness")


def _as_document(item: Document | bytes | str) -> Document:
    if type(item) is bytes:  # the common case (lines, files), without Document.of's copies
        return Document(item, {})
    if isinstance(item, Document):
        return item
    if isinstance(item, (bytes, bytearray, str)):
        return Document.of(item)
    raise TypeError(f"a document must be a Document, bytes or str, not {type(item).__name__}")


class Runtime:
    """Runs installed connectors: the harness's Python API.

    A method's ``connector_id`` defaults to the only installed connector, else to
    ``default_connector`` (see :meth:`Connectors.resolve`).
    """

    def __init__(self, connectors: Connectors | None = None, default_connector: str | None = None) -> None:
        self.connectors = connectors or installed_connectors()
        self.default_connector = default_connector

    def connector(self, connector_id: str | None = None) -> Connector:
        return self.connectors.get(self.connectors.resolve(connector_id, self.default_connector))

    def manifest(self, connector_id: str | None = None) -> Manifest:
        return self.connector(connector_id).manifest

    def describe_operation(self, operation: Mapping[str, Any], connector_id: str | None = None) -> str | None:
        """The connector's phrase for what ``operation`` sends to or listens on (None: it has none)."""
        connector = self.connector(connector_id)
        return connector.describe_operation(connector.manifest.validate_operation(operation))

    def _configs(self, connector: Connector, connection: Mapping[str, Any], operation: Mapping[str, Any] | None,
                 action: str | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        manifest = connector.manifest
        problems: list[str] = []
        conn = op = None
        try:
            conn = manifest.validate_connection(connection)
        except ConfigError as exc:
            problems += [f"connection {p}" for p in exc.problems]
        if operation is not None:
            try:
                op = manifest.validate_operation(operation)
            except ConfigError as exc:
                problems += [f"operation {p}" for p in exc.problems]
            if op is not None and action is not None and op["action"] != action:
                problems.append(_other_action(manifest, action, op["action"]))
        if not problems:  # the connector's own rules, once the schemas are satisfied
            assert conn is not None
            found = connector.validate(conn, op)
            problems += found or []
        if problems:
            raise ConfigError("; ".join(problems), problems)
        assert conn is not None
        return conn, op

    @staticmethod
    def _open(connector: Connector, connection: dict[str, Any]) -> Any:
        conn = connector.open(connection)
        if conn is None:
            raise PluginError(f"the connector {connector.id!r} did not open a connection")
        return conn

    def validate(self, connection: Mapping[str, Any], operation: Mapping[str, Any] | None, action: str | None,
                 connector_id: str | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Both configurations with their defaults, checked as a run of ``action`` checks them: a
        ConfigError lists every problem, each ``connection PATH: ...`` or ``operation PATH: ...``."""
        return self._configs(self.connector(connector_id), connection, operation, action)

    def check(self, connection: Mapping[str, Any], connector_id: str | None = None) -> str:
        """Test the connection; return a line describing what was reached, or raise ConnectError."""
        connector = self.connector(connector_id)
        conn, _ = self._configs(connector, connection, None, None)
        line = connector.check(conn)
        if line is None:
            raise PluginError(f"the connector {connector.id!r} does not test connections")
        return line

    def max_document_size(self, connection: Mapping[str, Any], operation: Mapping[str, Any],
                          connector_id: str | None = None) -> int | None:
        """Validate both configurations (ConfigError) and return the largest payload a Send with
        them could carry, or None for no limit; nothing is opened."""
        connector = self.connector(connector_id)
        conn_cfg, op = self._configs(connector, connection, operation, "send")
        assert op is not None
        return connector.max_document_size(conn_cfg, op)

    def send(self, connection: Mapping[str, Any], operation: Mapping[str, Any],
             documents: Iterable[Document | bytes | str], connector_id: str | None = None, *,
             outbox: str | None = None) -> Iterator[Result]:
        """Validate, connect, and return an iterator of one Result per document, in order.

        The connection is opened now (ConnectError raises here) and closed when the iterator is
        exhausted or closed. Documents are read lazily.

        ``outbox``: a file (SQLite) recording which documents the endpoint confirmed; run again
        with the same input after a crash, the Send skips them (their Results say so in
        ``note``) and sends the rest. See :mod:`connector.harness.outbox`.
        """
        connector = self.connector(connector_id)
        conn_cfg, op = self._configs(connector, connection, operation, "send")
        assert op is not None
        box = None
        if outbox is not None:
            from connector.harness.outbox import Outbox

            box = Outbox(outbox, {"connector": connector.id, "operation": op})
        try:
            conn = self._open(connector, conn_cfg)
        except BaseException:
            if box is not None:
                box.close()
            raise
        def connector_send(docs: Iterable[Document]) -> Iterator[Result]:
            results = connector.send(conn, op, docs)
            if results is None:
                raise PluginError(f"the connector {connector.id!r} does not send")
            return results

        try:
            if box is None:
                results = connector_send(map(_as_document, documents))
            else:  # a connection may say how many documents it keeps unconfirmed at most
                results = box.send(map(_as_document, documents), getattr(conn, "window", 1), connector_send)
        except BaseException:
            conn.close()
            if box is not None:
                box.close()
            raise
        return self._closing(conn, results, box)

    @staticmethod
    def _closing(conn: Any, results: Iterator[Result], box: Any = None) -> Iterator[Result]:
        try:
            yield from results
        finally:
            try:
                conn.close()
            finally:
                if box is not None:
                    box.close()

    def listen(self, connection: Mapping[str, Any], operation: Mapping[str, Any], sink: Sink, *,
               count: int | None = None, timeout: float | None = None, listener: ProcessListener | None = None,
               connector_id: str | None = None) -> ListenOutcome:
        """Run a Listen in this thread until ``count`` documents, ``timeout`` seconds, or
        ``listener.stop()``; each document goes to ``sink`` and is acknowledged after it returned."""
        connector = self.connector(connector_id)
        conn_cfg, op = self._configs(connector, connection, operation, "listen")
        assert op is not None
        _check_timeout(timeout)
        listener = listener or ProcessListener(sink, count)
        timer = None
        with listener.while_opening():  # the command line's signals may end a wait for the broker
            conn = self._open(connector, conn_cfg)
        try:
            listener.connected()
            if timeout is not None:
                timer = threading.Timer(timeout, listener.stop_for, args=("timeout",))
                timer.daemon = True
                timer.start()
            connector.listen(conn, op, listener)
        finally:
            listener.stopping.set()  # it ended, also by an error: what watches the sink ends too
            if timer is not None:
                timer.cancel()
            conn.close()
        return listener.outcome()

    def listen_in_background(self, connection: Mapping[str, Any], operation: Mapping[str, Any],
                             sink: Sink | None = None, *, count: int | None = None, timeout: float | None = None,
                             connector_id: str | None = None) -> BackgroundListen:
        """Start a Listen in a thread; configuration errors raise here, at once."""
        self.validate(connection, operation, "listen", connector_id)  # its connector_id resolved as listen() does
        _check_timeout(timeout)
        return BackgroundListen(self, connection, operation, sink, count, timeout, connector_id)


#: The actions this harness runs (a connector may declare others, for other runtimes).
RUNS = ("send", "listen")


def _other_action(manifest: Manifest, runs: str, says: str) -> str:
    """The problem of an operation whose action is not the one being run."""
    if says not in RUNS:
        return (f"operation action: {says!r} is an action of the connector {manifest.id!r}, but this harness runs "
                f"only {' and '.join(RUNS)} actions")
    return f"operation action: this runs a {runs}, the operation says {says!r}"


def _check_timeout(timeout: float | None) -> None:
    """A Listen's timeout is a finite number of seconds a timer can wait (NaN would never fire)."""
    if timeout is not None and not 0 < timeout <= threading.TIMEOUT_MAX:
        raise ConfigError(f"the timeout must be more than 0 seconds and finite, not {timeout!r}")


@dataclass
class BackgroundListen:
    """A Listen running in a thread (for scripts and tests)::

        with runtime.listen_in_background(conn, op, count=3) as bg:
            bg.wait_ready(5)
            ... send ...
        bg.documents, bg.outcome
    """

    runtime: Runtime
    connection: Mapping[str, Any]
    operation: Mapping[str, Any]
    sink: Sink | None
    count: int | None
    timeout: float | None
    connector_id: str | None
    outcome: ListenOutcome | None = None
    exception: BaseException | None = None
    collected: CollectingSink = field(default_factory=CollectingSink)

    def __post_init__(self) -> None:
        sink = self.sink if self.sink is not None else self.collected
        self.listener = ProcessListener(sink, self.count)
        self.thread = threading.Thread(target=self._run, name="listen", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome = self.runtime.listen(self.connection, self.operation, self.listener.sink,
                                               count=self.count, timeout=self.timeout, listener=self.listener,
                                               connector_id=self.connector_id)
        except BaseException as exc:
            self.exception = exc
        finally:  # a Listen that ended (e.g. its count reached before the SUBACK) is ready too
            self.listener.ready.set()

    @property
    def documents(self) -> list[Document]:
        return list(self.collected)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the broker confirmed the subscriptions or the Listen ended; re-raise a failure."""
        if not self.listener.ready.wait(timeout):
            raise TimeoutError(f"the Listen was not subscribed within {timeout:g} s")
        if self.exception is not None:
            raise self.exception

    def stop(self) -> None:
        self.listener.stop()

    def join(self, timeout: float = 30.0) -> ListenOutcome:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"the Listen did not end within {timeout:g} s")
        if self.exception is not None:
            raise self.exception
        assert self.outcome is not None
        return self.outcome

    def __enter__(self) -> BackgroundListen:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.count is None and self.timeout is None:
            self.stop()
        self.join()
