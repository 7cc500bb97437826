"""The harness's command line (see docs/cli.md and ../shared/CONTRACT.md).

An entry point outside the harness (``connector/__main__.py``) gives it its program name and
default connector. Only the standard library is imported at start-up; each command imports what
it needs, so ``send --help`` answers at once. Installed connectors add their own commands
(:mod:`connector.harness.commands`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CONNECT = 0, 1, 2, 3
#: The reader of standard output went away (``listen | head -1``): 128 + SIGPIPE, as for any
#: Unix tool that SIGPIPE ends.
EXIT_CLOSED = 141
PASSWORD_ENV = "MQTT_PASSWORD"
KEY_PASSWORD_ENV = "MQTT_KEY_PASSWORD"


class UsageError(Exception):
    """Bad input found by the command line itself (exit 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_BAD_INPUT)


# -- logging without secrets -----------------------------------------------------------------

class _Redact(logging.Filter):
    """Masks every known secret in every log line, whatever logged it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            if record.exc_info:  # a traceback's messages too
                text += "\n" + logging.Formatter().formatException(record.exc_info)
                record.exc_info, record.exc_text = None, None
            for secret in self.secrets:
                text = text.replace(secret, "********")
            record.msg, record.args = text, None
        return True


_redact = _Redact()


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_redact)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if not verbose
                                           else "%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    # amqtt logs tracebacks for conditions we report ourselves in one line.
    for noisy in ("amqtt", "transitions", "websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    if verbose:
        logging.getLogger("amqtt").setLevel(logging.INFO)


# -- arguments -------------------------------------------------------------------------------

def _connection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (flags override --connection FILE)")
    g.add_argument("--connection", metavar="FILE", help="connection file (JSON, see 'describe')")
    g.add_argument("--host", help="broker host (default 127.0.0.1)")
    g.add_argument("--port", type=int, help="broker port (default 1883)")
    g.add_argument("--failover", action="append", metavar="HOST:PORT",
                   help="another broker of the cluster, tried in turn when the one in use cannot be reached (repeatable)")
    g.add_argument("--transport", choices=("tcp", "websockets"), help="MQTT over TCP (default) or over WebSocket")
    g.add_argument("--ws-path", metavar="PATH", help="the broker's WebSocket path (default /mqtt)")
    g.add_argument("--client-id", help="client ID (default: a random one); may hold {hostname}, {pid}, {random}")
    g.add_argument("--username", help="user name")
    g.add_argument("--password", help=f"password (better: the environment variable {PASSWORD_ENV})")
    g.add_argument("--password-file", metavar="FILE", help="read the password from the first line of FILE")
    g.add_argument("--protocol", choices=("3.1.1", "5"), help="MQTT version (default 3.1.1)")
    g.add_argument("--tls", action="store_true", default=None, help="connect over TLS (mqtts)")
    g.add_argument("--ca-file", metavar="FILE", help="PEM file of the CAs that sign the broker's certificate "
                   "(default: the system's); implies --tls")
    g.add_argument("--cert-file", metavar="FILE", help="client certificate (PEM) for mutual TLS; implies --tls")
    g.add_argument("--key-file", metavar="FILE", help="the client certificate's private key (PEM)")
    g.add_argument("--key-password", metavar="PASSPHRASE",
                   help=f"passphrase of an encrypted client key (better: the environment variable {KEY_PASSWORD_ENV})")
    g.add_argument("--tls-insecure", action="store_true", default=None,
                   help="INSECURE: accept any broker certificate for any host name (warns on every connect)")
    g.add_argument("--wait-for-broker", type=_finite, metavar="S",
                   help="keep trying for S seconds when the broker cannot be reached at start (default 0)")
    g.add_argument("--session-expiry", type=int, metavar="S", help="MQTT 5: seconds the broker keeps the session "
                   "after the connection ends (default: for good with --persistent, else not at all)")
    g.add_argument("--receive-maximum", type=int, metavar="N", help="MQTT 5: the broker sends at most N "
                   "unacknowledged QoS 1/2 messages at a time")
    g.add_argument("--will-topic", metavar="TOPIC",
                   help="last will: published by the broker if the connection ends without a goodbye")
    g.add_argument("--will-payload", metavar="TEXT", help="the will message's text (default empty)")
    g.add_argument("--will-qos", type=int, choices=(0, 1, 2), help="the will message's QoS (default 0)")
    g.add_argument("--will-retained", action="store_true", default=None, help="the will message is retained")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging on stderr (never shows secrets)")


def _qos(p: argparse.ArgumentParser) -> None:
    p.add_argument("--qos", type=int, choices=(0, 1, 2), help="quality of service: 0 at most once (default), "
                   "1 at least once, 2 exactly once")


#: The longest --timeout: a year (the schema's bound for every number of seconds).
MAX_SECONDS = 31_536_000


def _finite(text: str) -> float:
    """A float flag: NaN and infinities are refused here (every comparison with NaN is false)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, not {text!r}")
    return value


def _timeout(text: str) -> float:
    value = _finite(text)
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_SECONDS:,} seconds (a year), "
                                         f"not {text!r}; leave it out for no limit")
    return value


def _key_value(text: str) -> list[str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return [key, value]


def _listen_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("when the process fails for a message")
    g.add_argument("--max-attempts", type=int, metavar="N",
                   help="hand a message to the process at most N times (default 3)")
    g.add_argument("--retry-delay", type=_finite, metavar="S",
                   help="seconds before the second attempt, doubling after each (default 1)")
    g.add_argument("--dead-letter-topic", metavar="TOPIC", help="publish a message the process failed for every "
                   "attempt here, with its error, and go on (default: stop without acknowledging it)")
    g = p.add_argument_group("subscription (QoS per filter; the rest MQTT 5)")
    g.add_argument("--filter-qos", action="append", metavar="FILTER=QOS", type=_key_value,
                   help="this filter's QoS, overriding --qos for it (repeatable)")
    g.add_argument("--no-local", action="store_true", default=None,
                   help="not the messages this connection (client ID) published itself")
    g.add_argument("--retain-as-published", action="store_true", default=None,
                   help="'retained' keeps the flag a message was published with")
    g.add_argument("--retain-handling", type=int, choices=(0, 1, 2),
                   help="stored retained messages: 0 at every subscribe (default), 1 for a new subscription only, 2 never")
    g.add_argument("--dedupe-window", type=int, metavar="N",
                   help="drop a message whose msg-id (send --stamp-id) was among the last N (QoS 1 repeats)")


def build_parser(prog: str = "connector", default_connector: str | None = None, *,
                 connector_commands: dict[str, Callable[[argparse.Namespace], int]] | None = None) -> Parser:
    """The parser of the harness's commands; with ``connector_commands`` (filled in here), also of
    every installed connector's (which loads the connectors)."""
    from connector.harness.commands import add_connector_commands, connector_arg

    parser = Parser(prog=prog, description="Connectors and their local runtime harness.")
    _common(parser)
    from connector import __version__

    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _harness_commands(sub, default_connector)
    p = sub.add_parser("connectors", help="list the installed connectors: id, version, actions")
    p.add_argument("--json", action="store_true", help="as JSON")
    connector_arg(p, default_connector, ignored=True)
    _common(p)
    if connector_commands is not None:
        connector_commands.update(add_connector_commands(sub, _common, default_connector))
    return parser


def _harness_commands(sub: Any, default_connector: str | None) -> None:
    """send, listen, run, describe, check."""
    from connector.harness.commands import connector_arg

    p = sub.add_parser("send", help="the Send action: publish documents to a topic")
    p.add_argument("--topic", required=True, help="topic to publish to (no wildcards)")
    _qos(p)
    p.add_argument("--retained", action="store_true", default=None,
                   help="the broker keeps the last message of the topic for new subscriptions")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--message", action="append", metavar="TEXT", help="a document's text (repeatable)")
    src.add_argument("--file", action="append", metavar="PATH", help="a file sent as one document, bytes exact (repeatable)")
    src.add_argument("--lines", action="store_true", help="each line of standard input is one document")
    p.add_argument("--results", metavar="FILE", help="write one JSON line per document: index, status, error")
    p.add_argument("--outbox", metavar="FILE", help="durable record (SQLite) of what the broker confirmed: run the "
                   "same command again after a crash and only the documents not confirmed are sent")
    p.add_argument("--persistent", action="store_true",
                   help="keep the broker session, so that QoS 2 stays exactly once across reconnects (needs --client-id)")
    g = p.add_argument_group("MQTT 5 message properties (with --protocol 5)")
    g.add_argument("--user-property", action="append", metavar="KEY=VALUE", type=_key_value,
                   help="a user property of every message (repeatable; order and repeated keys kept)")
    g.add_argument("--content-type", metavar="TEXT", help="what the payload is, e.g. application/json")
    g.add_argument("--payload-format-indicator", type=int, choices=(0, 1),
                   help="1: the payloads are UTF-8 text; 0: unspecified bytes")
    g.add_argument("--message-expiry", type=int, metavar="SECONDS",
                   help="the broker drops a message no subscriber took within SECONDS")
    g.add_argument("--response-topic", metavar="TOPIC", help="where a reply should be published (request/reply)")
    g.add_argument("--correlation-data", metavar="TEXT", help="sent back with the reply, to match it to the request")
    g.add_argument("--stamp-id", action="store_true", default=None,
                   help="add a user property msg-id, unique per document, for a Listen's --dedupe-window")
    _connection_args(p)
    connector_arg(p, default_connector)
    _common(p)

    p = sub.add_parser("listen", help="the Listen action: write each message as a JSON line")
    p.add_argument("--topic", required=True, action="append", metavar="FILTER",
                   help="topic filter, '+' and '#' allowed (repeatable)")
    _qos(p)
    p.add_argument("--count", type=int, metavar="N", help="stop after N documents")
    p.add_argument("--timeout", type=_timeout, metavar="S", help="stop after S seconds")
    p.add_argument("--persistent", action="store_true",
                   help="keep the broker session so that messages published while away arrive later (needs --client-id)")
    _listen_args(p)
    _connection_args(p)
    connector_arg(p, default_connector)
    _common(p)

    p = sub.add_parser("run", help="run any installed connector from a connection file and an operation file")
    p.add_argument("--connection", metavar="FILE", required=True, help="connection file (JSON)")
    p.add_argument("--operation", metavar="FILE", required=True, help="operation file (JSON): the Options tab")
    connector_arg(p, default_connector)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="Send: files, one document each (default: standard input)")
    p.add_argument("--lines", action="store_true", help="Send: each line of standard input is one document")
    p.add_argument("--results", metavar="FILE", help="Send: write one JSON line per document")
    p.add_argument("--outbox", metavar="FILE", help="Send: durable record of what the endpoint confirmed (see send)")
    p.add_argument("--count", type=int, metavar="N", help="Listen: stop after N documents")
    p.add_argument("--timeout", type=_timeout, metavar="S", help="Listen: stop after S seconds")
    _common(p)

    p = sub.add_parser("describe", help="show the connector, its connection fields and the Options tab")
    p.add_argument("--json", action="store_true", help="the manifest with its schemas, as JSON")
    connector_arg(p, default_connector)
    _common(p)

    p = sub.add_parser("check", help="test the connection: 'ok' or the reason it fails")
    _connection_args(p)
    connector_arg(p, default_connector)
    _common(p)


# -- helpers ---------------------------------------------------------------------------------

#: Arguments that are file names: bytes the file system accepts, whatever their encoding.
_PATH_ARGS = frozenset({"connection", "operation", "file", "inputs", "results", "outbox", "password_file",
                        "ca_file", "cert_file", "key_file"})


def _check_text_args(args: argparse.Namespace) -> None:
    """Every text argument is UTF-8 (Python hands undecodable bytes over as lone surrogates), all
    checked before anything is sent: a bad second --message must not let the first one go."""
    for name, value in vars(args).items():
        if name in _PATH_ARGS:
            continue
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                stack += item
            elif isinstance(item, str):
                bad = re.search("[\ud800-\udfff]", item)
                if bad is not None:
                    char = bad.group()
                    byte = f"the byte 0x{ord(char) & 0xFF:02X}" if char >= "\udc80" else "a lone surrogate"
                    flag = "--" + name.replace("_", "-")
                    raise UsageError(f"{flag} is not valid UTF-8 text ({byte} at character {bad.start() + 1}): "
                                     "give it in UTF-8")


#: A configuration or password file larger than this is not one (and is not read into memory).
MAX_CONFIG_BYTES = 16 << 20


def _read_text(path: str, what: str, first_line: bool = False) -> str:
    """A UTF-8 file's text (or its first line, without the newline); UsageError in words."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"the {what} file {path!r} is larger than {MAX_CONFIG_BYTES >> 20} MiB: is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the {what} file {path!r} is not UTF-8 text (byte {exc.start + 1:,})") from None
    return text.split("\n", 1)[0].rstrip("\r") if first_line else text


def load_json_file(path: str, what: str) -> Any:
    """A configuration file, strictly (see :mod:`connector.sdk.jsontext`); UsageError in words."""
    from connector.sdk.jsontext import JsonError, loads

    text = _read_text(path, what)
    try:
        return loads(text)
    except JsonError as exc:
        raise UsageError(f"the {what} file {path!r} {exc}") from None


def _remember_secrets(connection: Any, args: argparse.Namespace) -> None:
    """Mask every secret of a connection configuration (the fields its schema marks writeOnly)."""
    if not isinstance(connection, dict):
        return
    from connector.harness.commands import runtime
    from connector.sdk.manifest import secret_fields

    for name in secret_fields(runtime(args).manifest(getattr(args, "connector", None)).connection_schema):
        _remember_secret(connection.get(name))


def _remember_secret(value: Any) -> None:
    if isinstance(value, str) and value:
        _redact.secrets.add(value)


def connection_from_args(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.connection:
        loaded = load_json_file(args.connection, "connection")
        if not isinstance(loaded, dict):
            raise UsageError(f"the connection file {args.connection!r} must hold a JSON object")
        config.update(loaded)
    _remember_secrets(config, args)  # masked at once, even if the file turns out to be invalid
    file_secret = _holds_secret(config)
    if os.environ.get(PASSWORD_ENV):
        config["password"] = os.environ[PASSWORD_ENV]
    if os.environ.get(KEY_PASSWORD_ENV):
        config["key_password"] = os.environ[KEY_PASSWORD_ENV]
    if getattr(args, "password_file", None):
        if getattr(args, "password", None) is not None:
            raise UsageError("give --password or --password-file, not both")
        config["password"] = _read_text(args.password_file, "password", first_line=True)
    for name in ("host", "port", "client_id", "username", "password", "protocol", "tls", "ca_file", "cert_file",
                 "key_file", "key_password", "tls_insecure", "wait_for_broker", "failover", "transport", "ws_path",
                 "session_expiry", "receive_maximum", "will_topic", "will_payload", "will_qos", "will_retained"):
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    _remember_secrets(config, args)
    _warn_exposed_secrets(args, config, file_secret)
    return config


def _holds_secret(config: Any) -> bool:
    return isinstance(config, dict) and any(isinstance(config.get(name), str) and config[name]
                                            for name in ("password", "key_password"))


def _warn_exposed_secrets(args: argparse.Namespace, config: Any, file_secret: bool) -> None:
    """One warning line per secret others can see, as ssh and mysql clients give (never the
    secret): a password on the command line is in the process list of every user; a file that
    holds one (or a private key) should be readable by its owner only."""
    warn = logging.getLogger("connector.harness").warning
    for flag, env, other in (("--password", PASSWORD_ENV, " or --password-file"), ("--key-password", KEY_PASSWORD_ENV, "")):
        if getattr(args, flag[2:].replace("-", "_"), None):
            warn(f"{flag} on the command line can be seen by other users (process list, shell history): use "
                 f"the environment variable {env}{other} instead")
    key_file = config.get("key_file") if isinstance(config, dict) else None
    for path, what in ((getattr(args, "password_file", None), "password file {!r}"),
                       (args.connection if file_secret else None, "connection file {!r} holds a secret and"),
                       (key_file, "private key file {!r}")):
        try:
            readable = bool(path) and os.stat(path).st_mode & 0o044
        except (OSError, TypeError, ValueError):
            continue  # reading it reports the problem
        if readable:
            import shlex

            warn(f"the {what.format(path)} can be read by other users: chmod 600 {shlex.quote(path)}")


def _stdin_lines(stopped: Callable[[], bool], limit: int | None = None) -> Iterator[bytes]:
    from connector.harness.stopping import StdinReader

    return StdinReader(stopped, limit).lines()


def _read_files(paths: Sequence[str], limit: int | None = None) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb") as f:  # a stream (pipe, device) is read one byte past the limit at most
            yield f.read() if limit is None else f.read(limit + 1)


def _stdin_whole(stopped: Callable[[], bool], limit: int | None = None) -> Iterator[bytes]:
    from connector.harness.stopping import StdinReader

    return StdinReader(stopped, limit).whole()


def _input_documents(files: Sequence[str] | None, lines: bool, otherwise: Iterator[bytes],
                     stopped: Callable[[], bool], limit: int | None = None) -> Iterator[bytes]:
    """The documents of a Send: each file (all checked before anything is sent), each line of
    standard input, or ``otherwise``; read lazily as they are sent, until ``stopped()``, never
    much past ``limit`` bytes (the largest the connector could send)."""
    if files:
        _check_files(files, limit)
        return _read_files(files, limit)
    return _stdin_lines(stopped, limit) if lines else otherwise


def _check_files(paths: Sequence[str], limit: int | None = None) -> None:
    """Every input file must be readable, and a regular file no larger than ``limit``, before
    anything is sent. A named pipe, a device or a process substitution (``--file <(cmd)``) is
    read when its turn comes (waiting for its writer, as cat does), no further than ``limit``."""
    import stat

    for path in paths:
        try:
            info = os.stat(path)
        except OSError as exc:
            missing = isinstance(exc, FileNotFoundError)
            raise UsageError(f"the input file {path!r} does not exist" if missing else
                             f"the input file {path!r} cannot be read: {exc.strerror or exc}") from None
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"the input {path!r} is not a file: it is a directory")
        if stat.S_ISSOCK(info.st_mode):
            raise UsageError(f"the input {path!r} is not a file: it is a socket")
        if not os.access(path, os.R_OK):
            raise UsageError(f"the input file {path!r} cannot be read: permission denied")
        if limit is not None and stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise UsageError(f"the input file {path!r} is {info.st_size:,} bytes: larger than the {limit:,} bytes "
                             "a document can carry here")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)  # links and other names of one file too
    except OSError:  # one does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def _check_outputs(args: argparse.Namespace) -> None:
    """Before anything is opened: an output (--results, --outbox) is neither an input nor the
    other output (opening it for writing would destroy it before it is read), and --results can
    be written (so that a Send never sends and then fails to report)."""
    outputs = {flag: path for flag, path in (("--results", args.results), ("--outbox", args.outbox)) if path}
    inputs = [(flag, path) for flag, paths in (("--file", getattr(args, "file", None)),
                                                ("INPUT", getattr(args, "inputs", None)))
              for path in paths or ()]
    inputs += [("--" + name.replace("_", "-"), getattr(args, name, None))
               for name in ("connection", "operation", "password_file", "ca_file", "cert_file", "key_file")]
    seen: list[tuple[str, str]] = []
    for flag, path in outputs.items():
        # SQLite and the outbox's lock write files next to it too
        written = [path, *(path + end for end in (".lock", "-wal", "-shm") if flag == "--outbox")]
        for other, given in [*inputs, *seen]:
            hit = next((name for name in written if given and _same_file(name, given)), None)
            if hit is not None:
                raise UsageError(f"{flag} {path!r} {'is' if hit == path else f'writes {hit!r}, which is'} the same "
                                 f"file as {other} {given!r}: give the output another name")
        seen.append((flag, path))
    if args.results:
        _check_writable(args.results)


def _check_writable(path: str) -> None:
    """--results can be written: an existing file (or device) takes a write of nothing, which
    fails as a real one would (/dev/full, a read-only mount); a new one's folder is writable."""
    problem = None
    if os.path.lexists(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)  # no truncation; no wait for a reader
            try:
                os.write(fd, b"")
            finally:
                os.close(fd)
        except OSError as exc:
            problem = exc.strerror or str(exc)
    else:
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            problem = f"{folder!r} is not a folder" if os.path.exists(folder) else f"the folder {folder!r} does not exist"
        elif not os.access(folder, os.W_OK | os.X_OK):
            problem = f"the folder {folder!r} cannot be written"
    if problem is not None:
        raise UsageError(f"cannot write the results file {path!r}: {problem}")


def _open_results(path: str | None) -> Any:
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the results file {path!r}: {exc.strerror or exc}") from None


def _say(text: str) -> None:
    """A line for people on stderr, in UTF-8, whole (see connector.harness.output)."""
    from connector.harness.output import write_text

    write_text(sys.stderr, text)


def _report_send(results: Iterator[Any], results_path: str | None, what: str | None, stop: Any = None) -> int:
    """One result line per document (stderr for each failure, ``--results``), then the summary;
    with ``stop`` (a GracefulStop), also for the documents a second signal left unsettled."""
    from connector.sdk.documents import Status

    out = _open_results(results_path)
    counts = {status: 0 for status in Status}
    earlier = 0
    unwritten = None  # why the results file could not be written: the summary still comes
    last_failure = None  # the summary says why, e.g. the broker was unreachable
    try:
        for result in results if stop is None else stop.results(results):
            counts[result.status] += 1
            if result.status is Status.FAILURE:
                last_failure = result.error
            earlier += result.note is not None and result.ok
            if out is not None and unwritten is None:
                try:
                    out.write(json.dumps(result.to_json()) + "\n")
                except OSError as exc:
                    unwritten = exc.strerror or str(exc)
            if not result.ok:
                _say(f"error: document {result.index}: {result.status.value}: {result.error}\n")
    finally:
        if out is not None:
            try:
                out.close()
            except OSError as exc:
                unwritten = unwritten or exc.strerror or str(exc)
    total = sum(counts.values())
    failed = total - counts[Status.SUCCESS]
    summary = f"sent {counts[Status.SUCCESS]:,} of {total:,} document{'s' if total != 1 else ''}"
    if what:  # the connector's own words for where they went
        summary += f" {what}"
    if earlier:
        summary += f", {earlier:,} of them confirmed by an earlier run (outbox)"
    if failed:
        summary += f"; {counts[Status.APPLICATION_ERROR]:,} refused (APPLICATION_ERROR), {counts[Status.FAILURE]:,} failed (FAILURE)"
        if last_failure:
            summary += f", the last because {last_failure}"
    if stop is not None and stop.signal is not None:
        import signal

        _say(summary + f"; stopped by {signal.Signals(stop.signal).name}: the rest of the input was not read\n")
        code = 128 + stop.signal
    else:
        _say(summary + "\n")
        code = EXIT_FAILED if failed else EXIT_OK
    if unwritten is not None:
        _say(f"error: cannot write the results file {results_path!r}: {unwritten}; the summary above counts "
             "every document\n")
        return code if code != EXIT_OK else EXIT_FAILED
    return code


def _listen_and_report(runtime: Any, connection: dict[str, Any], operation: dict[str, Any], count: int | None,
                       timeout: float | None, connector_id: str) -> int:
    import signal

    from connector.harness.output import FdOutput, silence
    from connector.harness.runtime import ProcessListener
    from connector.harness.sinks import JsonLinesSink

    if count is not None and count < 1:
        raise UsageError("--count must be at least 1")
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    chatty = sys.stderr.isatty() or logging.getLogger().isEnabledFor(logging.DEBUG)

    def on_listening(description: str) -> None:
        if chatty:
            _say(f"listening on {description}; Ctrl-C to stop\n")

    # Every byte of a line reaches stdout before its message is acknowledged, in UTF-8 (the sink
    # writes to the file descriptor itself, not through sys.stdout).
    sink = JsonLinesSink(sys.stdout, runtime.manifest(connector_id).byte_properties)
    listener = ProcessListener(sink, count, on_listening)
    # Graceful: no new message is taken; the batch in hand is written, flushed and acknowledged;
    # the connection is closed with a DISCONNECT. What the broker sent meanwhile stays unacknowledged.
    # A write blocked on a reader that does not read gives up within a second (not acknowledged).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: listener.stop_for("stopped"))
    outcome = runtime.listen(connection, operation, listener.sink, count=count, timeout=timeout, listener=listener,
                             connector_id=connector_id)
    accepted = f"{outcome.accepted:,} document{'s' if outcome.accepted != 1 else ''}"
    moved = (f"; {outcome.dead_lettered:,} moved to the dead-letter topic after failing every attempt"
             if outcome.dead_lettered else "")
    if outcome.repeats_dropped:
        moved += f"; {outcome.repeats_dropped:,} repeat{'s' if outcome.repeats_dropped != 1 else ''} dropped"
    if outcome.reason == "closed":  # like any Unix tool whose reader went away: quietly
        if isinstance(sink.output, FdOutput):
            silence(sink.output.fd)
        if chatty:
            _say(f"received {accepted} (the output was closed){moved}\n")
        return EXIT_CLOSED
    if outcome.reason == "output":
        _say(f"error: cannot write the output ({outcome.error}): {accepted} written and acknowledged; the rest "
             f"were not acknowledged, so a persistent session gets them again{moved}\n")
        return EXIT_FAILED
    if outcome.reason == "refused":
        _say(f"error: the process failed for a message every attempt ({outcome.error}); it was not "
             f"acknowledged{moved}\n")
        return EXIT_FAILED
    if chatty or moved:
        _say(f"received {accepted} ({ {'count': 'count reached', 'timeout': 'timeout', 'stopped': 'stopped'}[outcome.reason] })"
             f"{moved}\n")
    return EXIT_OK


# -- commands --------------------------------------------------------------------------------

def cmd_send(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime as make_runtime
    from connector.harness.stopping import GracefulStop

    operation: dict[str, Any] = {"action": "send", "topic": args.topic}
    if args.qos is not None:
        operation["qos"] = args.qos
    if args.retained:
        operation["retained"] = True
    for name, value in (("user_properties", args.user_property), ("content_type", args.content_type),
                        ("payload_format_indicator", args.payload_format_indicator),
                        ("message_expiry_interval", args.message_expiry), ("response_topic", args.response_topic),
                        ("correlation_data", args.correlation_data), ("stamp_id", args.stamp_id)):
        if value is not None:
            operation[name] = value
    _check_outputs(args)
    connection = connection_from_args(args)
    _persistent(args, connection)
    runtime = make_runtime(args)
    limit = runtime.max_document_size(connection, operation, args.connector)
    stop = GracefulStop()
    documents = stop.documents(_input_documents(args.file, args.lines, (m.encode("utf-8") for m in args.message or ()),
                                                stop.stopped, limit))
    results = runtime.send(connection, operation, documents, connector_id=args.connector, outbox=args.outbox)
    stop.install()
    return _report_send(results, args.results, runtime.describe_operation(operation, args.connector), stop)


def _persistent(args: argparse.Namespace, connection: dict[str, Any]) -> None:
    if args.persistent:
        if not connection.get("client_id"):
            raise UsageError("--persistent needs a stable --client-id, so that the broker can find the session again")
        connection["clean_session"] = False


def cmd_listen(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime

    connection = connection_from_args(args)
    _persistent(args, connection)
    operation: dict[str, Any] = {"action": "listen", "topic": args.topic[0] if len(args.topic) == 1 else args.topic}
    if args.qos is not None:
        operation["qos"] = args.qos
    for name in ("max_attempts", "retry_delay", "dead_letter_topic", "no_local", "retain_as_published",
                 "retain_handling", "dedupe_window"):
        if getattr(args, name) is not None:
            operation[name] = getattr(args, name)
    if args.filter_qos:
        try:
            operation["filter_qos"] = {name: int(qos) for name, qos in args.filter_qos}
        except ValueError:
            raise UsageError("--filter-qos is FILTER=QOS with a QoS of 0, 1 or 2") from None
    return _listen_and_report(runtime(args), connection, operation, args.count, args.timeout, args.connector)


def cmd_run(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime as make_runtime
    from connector.harness.stopping import GracefulStop

    connection = load_json_file(args.connection, "connection")
    operation = load_json_file(args.operation, "operation")
    runtime = make_runtime(args)
    connector_id = runtime.connectors.resolve(args.connector, runtime.default_connector)
    _remember_secrets(connection, args)
    _warn_exposed_secrets(args, connection, _holds_secret(connection))
    action = operation.get("action") if isinstance(operation, dict) else None
    if action == "listen":
        if args.inputs or args.lines or args.results or args.outbox:
            raise UsageError("a Listen takes no INPUT, --lines, --results or --outbox")
        return _listen_and_report(runtime, connection, operation, args.count, args.timeout, connector_id)
    if args.count is not None or args.timeout is not None:
        raise UsageError("--count and --timeout are for a Listen")
    _check_outputs(args)
    limit = runtime.max_document_size(connection, operation, connector_id)
    stop = GracefulStop()
    documents = stop.documents(_input_documents(args.inputs, args.lines, _stdin_whole(stop.stopped, limit),
                                                stop.stopped, limit))
    results = runtime.send(connection, operation, documents, connector_id=connector_id, outbox=args.outbox)
    stop.install()
    return _report_send(results, args.results, runtime.describe_operation(operation, connector_id), stop)


def cmd_check(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime

    print(f"ok: {runtime(args).check(connection_from_args(args), args.connector)}")
    return EXIT_OK


def cmd_describe(args: argparse.Namespace) -> int:
    from connector.harness.commands import runtime
    from connector.harness.describe import describe_text

    manifest = runtime(args).manifest(args.connector)
    if args.json:
        print(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False))
    else:
        print(describe_text(manifest))
    return EXIT_OK


def cmd_connectors(args: argparse.Namespace) -> int:
    from connector.harness.commands import cmd_connectors

    return cmd_connectors(args)


COMMANDS = {"send": cmd_send, "listen": cmd_listen, "run": cmd_run, "check": cmd_check,
            "describe": cmd_describe, "connectors": cmd_connectors}


def _utf8_streams() -> None:
    """Everything printed is UTF-8, whatever PYTHONIOENCODING or the locale say (the JSON lines of a
    Listen and the reports bypass these streams; this covers help, errors and log lines)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(encoding="utf-8", errors="backslashreplace")
            except (OSError, ValueError):
                pass


def main(argv: Sequence[str] | None = None, *, default_connector: str | None = None, prog: str = "connector") -> int:
    """Run one command; ``default_connector`` is the connector used when several are installed and
    ``--connector`` is not given, ``prog`` the name the command line goes by."""
    from connector.harness.commands import needs_connector_commands

    _utf8_streams()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = dict(COMMANDS)
    try:
        parser = build_parser(prog, default_connector,
                              connector_commands=commands if needs_connector_commands(argv) else None)
    except Exception as exc:  # an installed connector is broken (PluginError: exit 2)
        return _fail_known(exc, "--verbose" in argv or "-v" in argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    args.default_connector = default_connector
    _setup_logging(args.verbose)
    try:
        _check_text_args(args)
        return commands[args.command](args)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except UsageError as exc:
        return _fail(EXIT_BAD_INPUT, str(exc))
    except BrokenPipeError:  # the reader of stdout went away (describe | head -1): quietly, as Unix tools do
        from connector.harness.output import silence

        silence(1)
        return EXIT_CLOSED
    except Exception as exc:
        return _fail_known(exc, args.verbose)


def _fail(code: int, message: str) -> int:
    for secret in _redact.secrets:
        message = message.replace(secret, "********")
    sys.stderr.write(f"error: {message}\n")
    return code


def _fail_known(exc: Exception, verbose: bool) -> int:
    from connector.sdk.errors import ConfigError, ConnectError, PluginError

    if isinstance(exc, ConfigError | PluginError):
        return _fail(EXIT_BAD_INPUT, str(exc))
    if isinstance(exc, ConnectError):
        return _fail(EXIT_CONNECT, str(exc))
    if verbose:
        logging.getLogger("connector").exception("unexpected failure")
    return _fail(EXIT_FAILED, f"unexpected failure: {type(exc).__name__}: {exc} (run with --verbose for details)")
