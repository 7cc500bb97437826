"""The MQTT connector's own commands (``connector_commands``): ``broker``, ``demo``,
``clear-retained`` and ``bench``.

Only the standard library is imported here: the harness builds its parser from these before it
knows which command runs; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from connector.sdk.commands import Command
from connector.sdk.errors import ConfigError, ConnectError


def _broker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="port to listen on (default 1883)")
    p.add_argument("--password-file", metavar="FILE", help="Mosquitto password file (mosquitto_passwd): clients "
                   "must log in with a user name and password from it")
    p.add_argument("--allow-anonymous", action="store_true",
                   help="with --password-file, still admit clients that give no user name")
    p.add_argument("--acl-file", metavar="FILE", help="Mosquitto ACL file: which topics each user may read and write")
    p.add_argument("--cert-file", metavar="FILE", help="TLS: the broker's certificate (PEM); the port speaks TLS only")
    p.add_argument("--key-file", metavar="FILE", help="TLS: the private key of --cert-file (PEM)")
    p.add_argument("--ca-file", metavar="FILE", help="TLS: require client certificates signed by these CAs (PEM)")
    p.add_argument("--connect-timeout", type=float, metavar="S",
                   help="close a connection that has not sent its CONNECT within S seconds (default 10)")
    p.add_argument("--max-queued-messages", type=int, metavar="N",
                   help="messages held per client at most, then new ones are dropped (default 1000)")
    p.add_argument("--max-queued-bytes", type=int, metavar="N",
                   help="payload bytes held per client at most (default 16 MiB)")


def cmd_broker(args: argparse.Namespace) -> int:
    from connector.mqtt.broker import BrokerError, serve

    settings = _broker_settings(args)
    try:
        return serve(args.host, args.port, settings)
    except BrokerError as exc:  # e.g. the port is taken
        raise ConnectError(str(exc)) from None


def _broker_settings(args: argparse.Namespace) -> Any:
    """The broker command's options, checked (ConfigError, exit 2) before it listens."""
    import dataclasses
    from pathlib import Path

    from connector.mqtt.broker import BrokerSettings, check_files
    from connector.mqtt.broker.auth import AuthFileError
    from connector.mqtt.broker.queue import QueueLimits

    def path(value: str | None) -> Path | None:
        return Path(value) if value is not None else None

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port: give 1 to 65535 (0: any free port)")
    for flag, value in (("--host", args.host), ("--password-file", args.password_file), ("--acl-file", args.acl_file),
                        ("--cert-file", args.cert_file), ("--key-file", args.key_file), ("--ca-file", args.ca_file)):
        if value is not None and (not value.isprintable() or value.encode("utf-8", "replace") != value.encode(
                "utf-8", "surrogatepass")):
            raise ConfigError(f"{flag} is not valid text (a control character or bytes that are not UTF-8)")
    if args.allow_anonymous and not args.password_file:
        raise ConfigError("--allow-anonymous goes with --password-file (without one, every client is anonymous)")
    if (args.key_file or args.ca_file) and not args.cert_file:
        raise ConfigError("--key-file and --ca-file need --cert-file, the broker's certificate")
    limits = QueueLimits()
    options: dict[str, Any] = {}
    if args.connect_timeout is not None:
        if not (0 < args.connect_timeout <= 3600):  # also refuses nan and inf
            raise ConfigError("--connect-timeout must be between 0 and 3600 seconds")
        options["connect_timeout"] = args.connect_timeout
    for flag, value, field_name in (("--max-queued-messages", args.max_queued_messages, "messages"),
                                    ("--max-queued-bytes", args.max_queued_bytes, "bytes")):
        if value is not None:
            if value < 1:
                raise ConfigError(f"{flag} must be 1 or more")
            limits = dataclasses.replace(limits, **{field_name: value})
    settings = BrokerSettings(queue_limits=limits, password_file=path(args.password_file),
                              allow_anonymous=args.allow_anonymous, acl_file=path(args.acl_file),
                              cert_file=path(args.cert_file), key_file=path(args.key_file),
                              ca_file=path(args.ca_file), **options)
    try:  # read every file now: a bad one is exit 2 with one line, before the port is opened
        check_files(settings)
    except AuthFileError as exc:
        raise ConfigError(str(exc)) from None
    return settings


def cmd_demo(args: argparse.Namespace) -> int:
    from connector.mqtt.broker import BrokerError
    from connector.mqtt.demo import run_demo

    try:
        return run_demo(sys.stdout)
    except BrokerError as exc:
        raise ConnectError(str(exc)) from None


def _clear_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", action="append", required=True, metavar="FILTER",
                   help="clear the retained messages under this topic filter, e.g. 'sensors/#' (repeatable)")


def cmd_clear_retained(args: argparse.Namespace) -> int:
    from connector.mqtt.clearing import clear_retained

    return clear_retained(args.connection_config, args.topic)


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=10_000, metavar="N", help="messages to publish (default 10000)")
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="quality of service (default 1)")
    p.add_argument("--size", type=int, default=200, metavar="BYTES", help="payload size, at least 8 (default 200)")
    p.add_argument("--topic-prefix", default="mqtt-connector-bench", metavar="PREFIX",
                   help="the messages go to PREFIX/<random> (default mqtt-connector-bench)")


def cmd_bench(args: argparse.Namespace) -> int:
    from connector.mqtt.bench import bench

    return bench(args.connection_config, args.count, args.qos, args.size, args.topic_prefix)


COMMANDS = (
    Command("broker", "run the embedded MQTT broker in the foreground", _broker_arguments, cmd_broker),
    Command("demo", "offline tour on the embedded broker: retained, wildcards, QoS 0/1/2", lambda p: None, cmd_demo),
    Command("clear-retained", "clear the stored retained messages under topic filters, listing each topic cleared",
            _clear_arguments, cmd_clear_retained, connection=True),
    Command("bench", "measure the broker: publish and subscribe rates, latency percentiles (p50/p90/p99)",
            _bench_arguments, cmd_bench, connection=True),
)
