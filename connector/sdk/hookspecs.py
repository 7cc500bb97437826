"""Hook specifications: what a runtime asks of a connector.

Every hook is named ``connector_*``. A connector implements them with :data:`hookimpl`; a
runtime calls them through the plugin manager (:mod:`connector.sdk.plugins`). Several
connectors can be installed at once: each plugin is registered under its manifest id, and a
runtime calls one connector's hooks through ``Connectors.get(id)``, which asks that plugin only.
So no hook takes a connector id, and no implementation compares ids. Every hook but
:func:`connector_manifest` is ``firstresult=True``: the plugin's one answer is the result, and a
hook the connector does not implement answers ``None``.

The docstrings below are the contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from connector.sdk.commands import Command
    from connector.sdk.documents import Document, Result
    from connector.sdk.listener import Listener
    from connector.sdk.manifest import Manifest

PROJECT = "connector_sdk"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def connector_manifest() -> Manifest:
    """Return this connector's :class:`~connector.sdk.manifest.Manifest`.

    Called once per plugin (not ``firstresult``), when the plugin is registered: the plugin
    manager registers the plugin under ``manifest.id`` (an entry point named otherwise is
    registered again under the id), and the runtime addresses the connector by it. Must not open
    connections or do I/O other than reading the connector's own package data.

    Runs do not check the manifest and schemas against their metaschemas (it costs more than
    loading them): the connector's tests call ``Manifest.load(package).check()``.
    """


@hookspec(firstresult=True)
def connector_validate(
    connection: Mapping[str, Any],
    operation: Mapping[str, Any] | None,
) -> list[str] | None:
    """Check what the schemas cannot express, before anything is opened.

    Called by the runtime after both configurations passed their schemas, with the schemas'
    defaults filled in; ``operation`` is None when only the connection is used (a test of the
    connection). Must not do network I/O.

    :returns: one line per problem, naming the configuration and the path as schema problems
        do (``"operation topic: sentence"``, ``"connection port: sentence"``); an empty list
        when all is well. The runtime reports them together as a ConfigError (exit 2).
    """


@hookspec(firstresult=True)
def connector_max_document_size(
    connection: Mapping[str, Any],
    operation: Mapping[str, Any],
) -> int | None:
    """The largest payload, in bytes, a Send with these configurations could ever carry.

    A connector that sets no limit returns ``None`` (or does not implement the hook).

    Called with both configurations validated (:func:`connector_validate` passed), before
    anything is opened; must not do network I/O. A runtime refuses an input file larger than
    this before sending anything (exit 2) and reads a stream no further than one byte past it,
    so that memory stays bounded; the connector still checks each document when it sends it
    (an upper bound is fine: a limit known only once connected is the connector's own check).
    """


@hookspec(firstresult=True)
def connector_open(connection: Mapping[str, Any]) -> Any | None:
    """Open a connection to the endpoint and return it.

    :param connection: the connection configuration, already validated against the
        connector's connection schema, with the schema's defaults filled in.
    :returns: a connection object with a ``close()`` method, usable as a context manager.
        It is passed back unchanged to :func:`connector_send` and :func:`connector_listen`;
        the runtime closes it when the operation is done.
    :raises ConnectError: the endpoint cannot be reached or refuses the connection; the
        message says why in words (refused, timed out, not authorized...) and holds no secret.
    """


@hookspec(firstresult=True)
def connector_check(connection: Mapping[str, Any]) -> str | None:
    """Test a connection: connect, check the endpoint answers, disconnect.

    :returns: one line describing what was reached (shown after "ok").
    :raises ConnectError: as for :func:`connector_open`.
    """


@hookspec(firstresult=True)
def connector_send(
    connection: Any,
    operation: Mapping[str, Any],
    documents: Iterable[Document],
) -> Iterator[Result] | None:
    """Execute the Send action over a stream of documents.

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
    connection: Any,
    operation: Mapping[str, Any],
    listener: Listener,
) -> int | None:
    """Run the Listen action until ``listener.stopping`` is set.

    The connector subscribes (or whatever its endpoint needs to deliver), calls
    ``listener.listening(description)`` once the endpoint confirmed it listens (again after every
    reconnect), with what it listens on in its own words (e.g. ``"'a/#' (QoS 1), 'b' (refused)"``),
    and hands each incoming message to
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


@hookspec(firstresult=True)
def connector_describe_operation(operation: Mapping[str, Any]) -> str | None:
    """Say, in the connector's own words, what an operation sends to or listens on.

    :param operation: the operation configuration, validated, defaults filled.
    :returns: a short phrase a runtime puts after its own words, e.g. ``"to 'a/b' (QoS 1,
        retained)"`` for a Send (the harness prints ``sent 2 of 2 documents to 'a/b' (QoS 1,
        retained)``) or ``"on 'a/#' (QoS 1)"`` for a Listen; ``None`` (or no implementation)
        when there is nothing to say: the runtime's summary then ends without a phrase. Must not
        do I/O.
    """


@hookspec(firstresult=True)
def connector_commands() -> list[Command] | None:
    """Extra command-line commands the connector contributes (e.g. a test double of its endpoint).

    :returns: a list of :class:`~connector.sdk.commands.Command`; each becomes a subcommand of
        the harness's command line, beside its own (``send``, ``listen``, ``run``...). A name that
        clashes with one of the harness's commands or another connector's is a PluginError
        naming both. ``add_arguments`` adds the command's flags to its parser; ``run`` gets the
        parsed arguments and returns the exit code; it raises ConfigError for bad input (exit 2)
        and ConnectError when its endpoint cannot be reached or served (exit 3). ``None`` or no
        implementation: no commands. Must import nothing heavy: it is called to build the parser.
    """
