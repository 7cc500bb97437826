"""The send, listen and check flags as the command line wrote them by hand before they were
generated from the schemas (version 0.1.0's connector/harness/cli.py): tests/test_flags.py checks
that every one of them is still there, with the same type, and that README's command lines give
what they gave."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from connector.harness.flagtypes import number  # as the hand-written flags read numbers

PASSWORD_ENV = "MQTT_PASSWORD"
KEY_PASSWORD_ENV = "MQTT_KEY_PASSWORD"


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
    g.add_argument("--wait-for-broker", type=number, metavar="S",
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


def _qos(p: argparse.ArgumentParser) -> None:
    p.add_argument("--qos", type=int, choices=(0, 1, 2), help="quality of service: 0 at most once (default), "
                   "1 at least once, 2 exactly once")


def _key_value(text: str) -> list[str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return [key, value]


def _listen_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("when the process fails for a message")
    g.add_argument("--max-attempts", type=int, metavar="N",
                   help="hand a message to the process at most N times (default 3)")
    g.add_argument("--retry-delay", type=number, metavar="S",
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


def handwritten_parsers(harness_flags: Callable[[argparse.ArgumentParser, str], None] | None = None
                        ) -> dict[str, argparse.ArgumentParser]:
    """send, listen and check with their connection and operation flags as they were parsed; with
    ``harness_flags``, which adds a command's own flags (--message, --count...), those too."""
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    p = sub.add_parser("send", help="the Send action: publish documents to a topic")
    p.add_argument("--topic", required=True, help="topic to publish to (no wildcards)")
    _qos(p)
    p.add_argument("--retained", action="store_true", default=None,
                   help="the broker keeps the last message of the topic for new subscriptions")
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

    p = sub.add_parser("listen", help="the Listen action: write each message as a JSON line")
    p.add_argument("--topic", required=True, action="append", metavar="FILTER",
                   help="topic filter, '+' and '#' allowed (repeatable)")
    _qos(p)
    p.add_argument("--persistent", action="store_true",
                   help="keep the broker session so that messages published while away arrive later (needs --client-id)")
    _listen_args(p)
    _connection_args(p)

    p = sub.add_parser("check")
    _connection_args(p)
    for command, parser in sub.choices.items():
        if harness_flags is not None:
            harness_flags(parser, command)
    return dict(sub.choices)
