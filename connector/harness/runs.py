"""The harness's own commands: send, listen, run, check, describe (``connectors`` is in
:mod:`connector.harness.commands`). Each imports what it needs when it runs (the SDK too: this
module is imported at start-up)."""

from __future__ import annotations

import argparse
from typing import Any

from connector.harness.exits import EXIT_OK, UsageError


def _origins(args: argparse.Namespace) -> Any:
    """Where the fields of a command with schema flags come from (errors name them so)."""
    from connector.harness.origins import Origins

    return Origins(args.schema_flags.connection, args.schema_flags.operation)


def cmd_send(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime as make_runtime
    from connector.harness.configs import connection_from_args, operation_from_args
    from connector.harness.inputs import check_outputs, document_namer
    from connector.harness.progress import input_size
    from connector.harness.reports import report_send
    from connector.harness.sendinputs import send_input
    from connector.harness.stopping import GracefulStop

    flags, origins = args.schema_flags, _origins(args)
    with origins.naming():
        operation = operation_from_args(args, flags, origins)
        check_outputs(args, flags.files())
        connection = connection_from_args(args, flags, origins)
        runtime = make_runtime(args)
        limit = runtime.max_document_size(connection, operation, flags.connector)
        stop = GracefulStop()
        documents, in_input_order = send_input(args, stop, limit)
        results = in_input_order(runtime.send(connection, operation, documents, connector_id=flags.connector,
                                              outbox=args.outbox))
    stop.install()
    results = _with_progress(args, stop, results, input_size(args.file, args.lines, args.message, args.repeat))
    return report_send(results, args.results, runtime.describe_operation(operation, flags.connector), stop,
                       document_namer(args.file, args.lines, messages=len(args.message or ())))


def cmd_listen(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime
    from connector.harness.configs import connection_from_args, operation_from_args
    from connector.harness.reports import listen_and_report

    flags, origins = args.schema_flags, _origins(args)
    with origins.naming():
        connection = connection_from_args(args, flags, origins)
        operation = operation_from_args(args, flags, origins)
        return listen_and_report(runtime(args), connection, operation, args.count, args.timeout, flags.connector,
                                 (args.format, args.output), args.progress, _service(args))


def _service(args: argparse.Namespace) -> Any:
    """The ``--health-*`` and ``--metrics`` flags as :class:`~connector.harness.service.ServiceOptions`;
    None without ``--health-port``."""
    if args.health_port is None:
        given = _service_flags(args)
        if given:
            raise UsageError(f"{' and '.join(given)} need{'s' if len(given) == 1 else ''} --health-port")
        return None
    from connector.harness.service import ServiceOptions

    given = {"host": args.health_host, "threshold": args.health_threshold}
    return ServiceOptions(args.health_port, metrics=bool(args.metrics),
                          **{name: value for name, value in given.items() if value is not None})


def _service_flags(args: argparse.Namespace) -> list[str]:
    """The ``--health-*`` and ``--metrics`` flags given."""
    return [flag for flag in ("--health-port", "--health-host", "--health-threshold", "--metrics")
            if getattr(args, flag[2:].replace("-", "_")) is not None]


def cmd_run(args: argparse.Namespace) -> int:
    from connector.harness.inputs import load_json_file
    from connector.harness.origins import Origins

    connection = load_json_file(args.connection, "connection")
    operation = load_json_file(args.operation, "operation")
    origins = Origins()
    origins.from_file("connection", connection, args.connection)
    origins.from_file("operation", operation, args.operation)
    with origins.naming():
        return _run(args, connection, operation)


def _run(args: argparse.Namespace, connection: Any, operation: Any) -> int:
    """``run`` with its connection and operation read."""
    from connector.harness.commands import runtime as make_runtime
    from connector.harness.configs import holds_secret, remember_secrets, warn_exposed_secrets
    from connector.harness.flags import schema_flags
    from connector.harness.inputs import check_outputs, document_namer, input_documents, stdin_whole
    from connector.harness.progress import input_size
    from connector.harness.reports import listen_and_report, report_send
    from connector.harness.stopping import GracefulStop

    runtime = make_runtime(args)
    connector_id = runtime.connectors.resolve(args.connector, runtime.default_connector)
    connection_flags = schema_flags(runtime.manifest(connector_id).connection_schema)
    secrets = {f.field for f in connection_flags if f.secret}
    remember_secrets(connection, secrets)
    warn_exposed_secrets(args, connection, holds_secret(connection, secrets), connection_flags)
    action = operation.get("action") if isinstance(operation, dict) else None
    if action == "listen":
        if args.inputs or args.lines or args.results or args.outbox:
            raise UsageError("a Listen takes no INPUT, --lines, --results or --outbox")
        return listen_and_report(runtime, connection, operation, args.count, args.timeout, connector_id,
                                 (args.format, args.output), args.progress, _service(args))
    if any(value is not None for value in (args.count, args.timeout, args.format, args.output)) or _service_flags(args):
        raise UsageError("--count, --timeout, --format, --output, --health-* and --metrics are for a Listen")
    check_outputs(args)
    limit = runtime.max_document_size(connection, operation, connector_id)
    stop = GracefulStop()
    documents = stop.documents(input_documents(args.inputs, args.lines, stdin_whole(stop.stopped, limit),
                                               stop.stopped, limit))
    results = runtime.send(connection, operation, documents, connector_id=connector_id, outbox=args.outbox)
    stop.install()
    results = _with_progress(args, stop, results, input_size(args.inputs, args.lines))
    return report_send(results, args.results, runtime.describe_operation(operation, connector_id), stop,
                       document_namer(args.inputs, args.lines, "standard input"))


def _with_progress(args: argparse.Namespace, stop: Any, results: Any, size: Any) -> Any:
    """The results of a Send, shown on a progress line when wanted; the size of its input
    (:class:`~connector.harness.progress.InputSize`) also tells the report what was not sent."""
    from connector.harness.progress import send_progress

    stop.expected = size.documents
    return send_progress(args.progress, stop, results, size)


def cmd_check(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime
    from connector.harness.configs import connection_from_args
    from connector.harness.output import print_out

    flags, origins = args.schema_flags, _origins(args)
    with origins.naming():
        line = f"ok: {runtime(args).check(connection_from_args(args, flags, origins), flags.connector)}"
    print_out(line)
    return EXIT_OK


def cmd_describe(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime
    from connector.harness.describe import describe_text
    from connector.harness.output import print_out

    manifest = runtime(args).manifest(args.connector)
    if args.json:
        import json

        print_out(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False))
    else:
        print_out(describe_text(manifest))
    return EXIT_OK


def cmd_connectors(args: argparse.Namespace) -> int:
    from connector.harness.commands import cmd_connectors

    return cmd_connectors(args)


def cmd_console(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        from importlib.metadata import packages_distributions

        dist = packages_distributions().get("connector", ["this package"])[0]
        raise UsageError(f"the console needs the extra 'console' ({exc.name} is not installed): "
                         f"pip install '{dist}[console]'") from None
    from connector.console.serve import serve

    chosen = runtime(args)
    if args.connector is not None:
        chosen.connectors.manifest(args.connector)  # not installed: says which are
    return serve(chosen, args.host, args.port, args.connector, browser=not args.no_browser)


COMMANDS: dict[str, Any] = {"send": cmd_send, "listen": cmd_listen, "run": cmd_run, "check": cmd_check,
                            "describe": cmd_describe, "connectors": cmd_connectors, "console": cmd_console}
