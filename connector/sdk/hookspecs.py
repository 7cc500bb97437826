"""Hook specifications: what a runtime asks of a connector.

Every hook is named ``connector_*``. A connector implements them with :data:`hookimpl`; a
runtime calls them through the plugin manager (:mod:`connector.sdk.plugins`). Several
connectors can be installed at once: every hook but :func:`connector_manifest` takes the
``connector_id`` it is meant for, is ``firstresult=True``, and a connector returns ``None``
for an id that is not its own.

The docstrings below are the contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from connector.sdk.documents import Document, Result
    from connector.sdk.listener import Listener
    from connector.sdk.manifest import Manifest

PROJECT = "connector_sdk"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def connector_manifest() -> Manifest:
    """Return this connector's :class:`~connector.sdk.manifest.Manifest`.

    Called once per plugin (not ``firstresult``): the runtime collects every installed
    connector's manifest, keyed by ``manifest.id``. Must not open connections or do I/O other
    than reading the connector's own package data.

    Runs do not check the manifest and schemas against their metaschemas (it costs more than
    loading them): the connector's tests call ``Manifest.load(package).check()``.
    """


@hookspec(firstresult=True)
def connector_validate(
    connector_id: str,
    connection: Mapping[str, Any],
    operation: Mapping[str, Any] | None,
) -> list[str] | None:
    """Check what the schemas cannot express, before anything is opened.

    ``firstresult=True``: return ``None`` when ``connector_id`` is not this connector's id.

    Called by the runtime after both configurations passed their schemas, with the schemas'
    defaults filled in; ``operation`` is None when only the connection is used (a test of the
    connection). Must not do network I/O.

    :returns: one line per problem, naming the configuration and the path as schema problems
        do (``"operation topic: sentence"``, ``"connection port: sentence"``); an empty list
        when all is well. The runtime reports them together as a ConfigError (exit 2).
    """


@hookspec(firstresult=True)
def connector_max_document_size(
    connector_id: str,
    connection: Mapping[str, Any],
    operation: Mapping[str, Any],
) -> int | None:
    """The largest payload, in bytes, a Send with these configurations could ever carry.

    ``firstresult=True``: return ``None`` when ``connector_id`` is not this connector's id; a
    connector that sets no limit returns ``None`` too.

    Called with both configurations validated (:func:`connector_validate` passed), before
    anything is opened; must not do network I/O. A runtime refuses an input file larger than
    this before sending anything (exit 2) and reads a stream no further than one byte past it,
    so that memory stays bounded; the connector still checks each document when it sends it
    (an upper bound is fine: a limit known only once connected is the connector's own check).
    """


@hookspec(firstresult=True)
def connector_open(connector_id: str, connection: Mapping[str, Any]) -> Any | None:
    """Open a connection to the endpoint and return it.

    ``firstresult=True``: return ``None`` when ``connector_id`` is not this connector's id.

    :param connection: the connection configuration, already validated against the
        connector's connection schema, with the schema's defaults filled in.
    :returns: a connection object with a ``close()`` method, usable as a context manager.
        It is passed back unchanged to :func:`connector_send` and :func:`connector_listen`;
        the runtime closes it when the operation is done.
    :raises ConnectError: the endpoint cannot be reached or refuses the connection; the
        message says why in words (refused, timed out, not authorized...) and holds no secret.
    """


@hookspec(firstresult=True)
def connector_check(connector_id: str, connection: Mapping[str, Any]) -> str | None:
    """Test a connection: connect, check the endpoint answers, disconnect.

    ``firstresult=True``: return ``None`` when ``connector_id`` is not this connector's id.

    :returns: one line describing what was reached (shown after "ok").
    :raises ConnectError: as for :func:`connector_open`.
    """


@hookspec(firstresult=True)
def connector_send(
    connector_id: str,
    connection: Any,
    operation: Mapping[str, Any],
    documents: Iterable[Document],
) -> Iterator[Result] | None:
    """Execute the Send action over a stream of documents.

    ``firstresult=True``: return ``None`` when ``connector_id`` is not this connector's id.

    :param connection: the object :func:`connector_open` returned.
    :param operation: the operation configuration (the Options tab), validated, defaults filled.
    :param documents: consumed lazily; the connector reads only as far ahead as its in-flight
        window allows, so an endless input is fine.
    :returns: an iterator yielding exactly one :class:`~connector.sdk.documents.Result` per
        document, in input order, with ``index`` counting from 0. A document is SUCCESS only
        when the endpoint took it; APPLICATION_ERROR when the endpoint (or a rule of the
        connector) refused this document; FAILURE when it could not be sent or its fate is
        unknown (lost connection, timeout). A failure is never reported as success.
    :raises ConfigError: the operation cannot run at all (nothing was sent).
    :raises ConnectError: from the iterator, after a Result for every document read, when the
        connection ended for good (e.g. another client took its client ID).
    """


@hookspec(firstresult=True)
def connector_listen(
    connector_id: str,
    connection: Any,
    operation: Mapping[str, Any],
    listener: Listener,
) -> int | None:
    """Run the Listen action until ``listener.stopping`` is set.

    ``firstresult=True``: return ``None`` when ``connector_id`` is not this connector's id.

    The connector subscribes, calls ``listener.subscribed(...)`` once the endpoint confirmed
    the subscriptions (again after every reconnect), and hands each incoming message to
    ``listener.submit(document)``, one at a time, or several that arrived together to
    ``listener.submit_batch(documents)``, always from one thread and in arrival order. It
    acknowledges a message to the endpoint only when ``submit`` returned True, or when it is
    among the first ``n`` documents of a batch for which ``submit_batch`` returned ``n`` (the
    process wrote and flushed them before answering); a message the process did not accept is
    never acknowledged. After ``listener.stopping`` is set it submits nothing more and
    returns within about a second.

    :returns: how many documents the process accepted.
    :raises ConnectError: the endpoint cannot be reached at the start, or the connection ended for
        good (e.g. another client took its client ID).
    """
