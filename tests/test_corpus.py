"""The bad-input corpus: one row per rule, input -> exit code and the words of its one error line.

Every row asserts what CONTRACT.md promises for bad input and for a broker that cannot be reached:
the exit code (2 bad input, 3 cannot connect), exactly one stderr line, starting ``error:``, no
traceback, the words that say what is wrong, done within seconds. A Send that is refused also
proves that nothing reached the broker: a Listen on the row's topics watches the embedded broker
and sees only a marker sent after the command ended.

Most rows run ``connector.__main__.main(argv)`` (the console script) in this process (fast); rows marked ``process``
run ``python -m connector`` as a user would. A new rule adds a row.

Tokens in a row: ``@D`` the row's folder (files written there first), ``@U`` a topic prefix only
this row uses, ``@BROKER`` the embedded broker's ``--host/--port``, ``@REFUSED`` a port nobody
listens on, ``@SILENT`` a TCP server that never answers. Prepared in every folder: ``conn.json``
(the embedded broker), ``refused.json``, ``silent.json``, ``dns.json``, ``send.json`` (a Send to
``@U/x``, QoS 1), ``listen.json`` (a Listen on ``@U/#``) and ``here.txt``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from connector.__main__ import main as console_main
from connector.mqtt.broker import BrokerThread, free_port
from connector.harness.runtime import Runtime
from brokers import MosquittoBroker, silent_tcp_server
from clirun import run_cli

SECONDS = 5.0
WAIT = 10.0


@dataclass
class Row:
    argv: list[str]
    code: int
    words: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)
    stdin: bytes = b""
    process: bool = False  # run as a real subprocess
    skip_as_root: str = ""  # reason, when root's powers make the row meaningless
    seconds: float = SECONDS  # the row's time limit (input refused before connecting: 1 s)
    sparse: dict[str, int] = field(default_factory=dict)  # files of this size, holes only
    links: dict[str, str] = field(default_factory=dict)  # symbolic links, name -> target
    memory: int = 0  # with process: its address space limit in bytes (a blow-up fails the row)


def row(argv: str | list[str], code: int, *words: str, **kw: object) -> Row:
    return Row(argv.split() if isinstance(argv, str) else argv, code, words, **kw)  # type: ignore[arg-type]


SEND = "send --topic @U/x --message m @BROKER"
SEND_F = "send --topic @U/x --qos 1 @BROKER"  # and --file
CHECK_C = "check --connection @D/c.json"
SEND_C = "send --topic @U/x --message m --connection @D/c.json"
LONG_TOPIC = "é" * 40_000
TOO_LONG = "é" * 40_000  # 80,000 bytes in UTF-8 in 40,000 characters: within every character count
GIB = 1 << 30

CORPUS: dict[str, Row] = {
    # -- topic names (Send) ------------------------------------------------------------------
    "send topic with +": row("send --topic @U/+/x --message m @BROKER", 2, "error: --topic:", "wildcards '+' and '#' are for Listen",
                             process=True),
    "send topic with #": row("send --topic @U/# --message m @BROKER", 2, "wildcards '+' and '#' are for Listen"),
    "send topic with + inside a level": row("send --topic @U/a+b --message m @BROKER", 2, "wildcards"),
    "send empty topic": row(["send", "--topic", "", "--message", "m", "@BROKER"], 2, "error: --topic: the topic is empty"),
    "send topic with NUL": row(["send", "--topic", "@U/a\x00b", "--message", "m", "@BROKER"], 2, "NUL"),
    "send topic over 65,535 bytes": row(["send", "--topic", LONG_TOPIC, "--message", "m", "@BROKER"], 2,
                                        "80,000 bytes long in UTF-8; MQTT allows at most 65,535"),
    "send topic with a tab": row(["send", "--topic", "@U/a\tb", "--message", "m", "@BROKER"], 2,
                                 "U+0009", "control character"),
    "send topic with a C1 control": row(["send", "--topic", "@U/\x85", "--message", "m", "@BROKER"], 2, "U+0085"),
    "send topic with a non-character": row(["send", "--topic", "@U/\ufffe", "--message", "m", "@BROKER"], 2,
                                           "U+FFFE", "non-character"),
    "send topic with a lone surrogate (operation file)": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "lone surrogate",
        files={"op.json": '{"action": "send", "topic": "@U/\\ud800"}'}),
    "send topic list (operation file)": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "error: 'topic' in the operation file", "one topic, not a list",
        files={"op.json": '{"action": "send", "topic": ["@U/a", "@U/b"]}'}),
    # -- topic filters (Listen) --------------------------------------------------------------
    "listen # not last": row("listen --topic @U/#/b @BROKER", 2, "error: --topic:", "'#' only the last one"),
    "listen # inside a level": row("listen --topic @U/a# @BROKER", 2, "'#' must each be a whole level"),
    "listen + inside a level": row("listen --topic @U/+a @BROKER", 2, "'+' and '#' must each be a whole level"),
    "listen empty filter": row(["listen", "--topic", "", "@BROKER"], 2, "the topic is empty"),
    "listen second filter bad": row("listen --topic @U/# --topic @U/#/c @BROKER", 2, "error: the 2nd --topic:"),
    "listen filter with a newline": row(["listen", "--topic", "@U/a\nb", "@BROKER"], 2, "U+000A"),
    "listen filter over 65,535 bytes": row(["listen", "--topic", LONG_TOPIC + "/#", "@BROKER"], 2, "bytes long in UTF-8"),
    "shared subscription, empty group": row("listen --topic $share//a @BROKER", 2, "group name"),
    "shared subscription, + in group": row("listen --topic $share/g+/a @BROKER", 2, "group name without '+' or '#'"),
    "shared subscription, # as group": row("listen --topic $share/#/a @BROKER", 2, "group name"),
    "shared subscription, no filter": row("listen --topic $share/g @BROKER", 2, "no filter after the group"),
    "shared subscription, empty filter": row("listen --topic $share/g/ @BROKER", 2, "no filter after the group"),
    "shared subscription, bad filter": row("listen --topic $share/g/a/#/b @BROKER", 2, "'#' only the last one"),
    "listen filter list empty (operation file)": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "error: 'topic' in the operation file", "op.json': must not be an empty list",
        files={"op.json": '{"action": "listen", "topic": []}'}),
    # -- QoS, action, retained ---------------------------------------------------------------
    "send --qos 3": row(f"{SEND} --qos 3", 2, "argument --qos: invalid choice: 3", process=True),
    "send --qos x": row(f"{SEND} --qos x", 2, "argument --qos: invalid int value: 'x'"),
    "qos 3 (operation file)": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "error: 'qos' in the operation file", "op.json': must be one of 0 (At most once)",
        "not 3", files={"op.json": '{"action": "send", "topic": "@U/x", "qos": 3}'}),
    "qos \"1\" as a string (operation file)": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "error: 'qos' in the operation file", 'not "1"', process=True,
        files={"op.json": '{"action": "send", "topic": "@U/x", "qos": "1"}'}),
    "qos 1.5 (operation file)": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "error: 'qos' in the operation file", "not 1.5",
        files={"op.json": '{"action": "send", "topic": "@U/x", "qos": 1.5}'}),
    "qos true (operation file)": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "error: 'qos' in the operation file", "not true",
        files={"op.json": '{"action": "send", "topic": "@U/x", "qos": true}'}),
    "unknown action": row(
        "run --connection @D/conn.json --operation @D/op.json", 2,
        "error: 'action' in the operation file", 'op.json\': must be one of "listen" (Listen), "send" (Send), not "publish"',
        files={"op.json": '{"action": "publish", "topic": "@U/x"}'}),
    "missing action": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "'action' is required",
        files={"op.json": '{"topic": "@U/x"}'}),
    "missing topic": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "'topic' is required",
        files={"op.json": '{"action": "send"}'}),
    "retained with listen": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "error: 'retained' in the operation file", "for Send only",
        files={"op.json": '{"action": "listen", "topic": "@U/#", "retained": true}'}),
    "retained not a boolean": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "error: 'retained' in the operation file", 'must be true or false, not "yes"',
        files={"op.json": '{"action": "send", "topic": "@U/x", "retained": "yes"}'}),
    "unknown operation field, with a suggestion": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "unknown field 'qoss' (did you mean 'qos'?)",
        files={"op.json": '{"action": "send", "topic": "@U/x", "qoss": 1}'}),
    "every operation problem at once": row(
        "run --connection @D/conn.json --operation @D/op.json", 2, "'qos' in the operation file", "'retained' in the operation file",
        "unknown field 'extra'", files={"op.json": '{"action": "send", "topic": "@U/x", "qos": 3, "retained": 1, "extra": 0}'}),
    "listen --retained": row("listen --topic @U/# --retained @BROKER", 2, "unrecognized arguments: --retained"),
    # -- connection ----------------------------------------------------------------------------
    "port 0": row("send --topic @U/x --message m --host 127.0.0.1 --port 0", 2, "error: --port: must be at least 1, not 0"),
    "port 70000": row("send --topic @U/x --message m --host 127.0.0.1 --port 70000", 2, "must be at most 65535, not 70000"),
    "port x": row("send --topic @U/x --message m --port x", 2, "argument --port: invalid int value: 'x'"),
    "port \"x\" (connection file)": row(
        "send --topic @U/x --message m --connection @D/c.json", 2, "error: 'port' in the connection file", 'c.json\': must be a whole number, not "x"',
        files={"c.json": '{"port": "x"}'}),
    "empty host": row(["send", "--topic", "@U/x", "--message", "m", "--host", ""], 2, "error: --host: must not be empty"),
    "keep_alive 0": row("send --topic @U/x --message m --connection @D/c.json", 2,
                        "error: 'keep_alive' in the connection file", "must be at least 1, not 0", files={"c.json": '{"keep_alive": 0}'}),
    "connect_timeout 0": row("check --connection @D/c.json", 2, "error: 'connect_timeout' in the connection file", "must be more than 0",
                             files={"c.json": '{"connect_timeout": 0}'}),
    "unknown connection field, with a suggestion": row(
        "check --connection @D/c.json", 2, "unknown field 'hots' (did you mean 'host'?)", files={"c.json": '{"hots": "x"}'}),
    "every connection problem at once": row(
        "run --connection @D/c.json --operation @D/op.json", 2, "'host' in the connection file", "'port' in the connection file",
        "'qos' in the operation file", files={"c.json": '{"host": "", "port": 0}', "op.json": '{"action": "send", "topic": "@U/x", "qos": 9}'}),
    # -- files ---------------------------------------------------------------------------------
    "connection file missing": row("send --topic @U/x --message m --connection @D/nope.json", 2,
                                   "cannot read the connection file", "No such file"),
    "connection file not JSON": row("send --topic @U/x --message m --connection @D/c.json", 2,
                                    "the connection file", "is not valid JSON", "line 1 column",
                                    files={"c.json": '{"port": }'}, process=True),
    "connection file empty": row("check --connection @D/c.json", 2, "is empty", files={"c.json": ""}),
    "connection file not an object": row("send --topic @U/x --message m --connection @D/c.json", 2,
                                         "must hold a JSON object", files={"c.json": "[1883]"}),
    "connection file not an object (run)": row("run --connection @D/c.json --operation @D/send.json", 2,
                                               "error: the connection file", "c.json': must be an object", files={"c.json": '"x"'}),
    "connection file not UTF-8": row("check --connection @D/c.json", 2, "is not UTF-8 text",
                                     files={"c.json": b'{"host": "\xff"}'}),
    "connection file is a folder": row("check --connection @D", 2, "cannot read the connection file", "directory"),
    "operation file missing": row("run --connection @D/conn.json --operation @D/nope.json", 2,
                                  "cannot read the operation file", "No such file"),
    "operation file not JSON": row("run --connection @D/conn.json --operation @D/op.json", 2,
                                   "the operation file", "is not valid JSON", files={"op.json": "action: send"}),
    "operation file not an object": row("run --connection @D/conn.json --operation @D/op.json", 2,
                                        "error: the operation file", "op.json': must be an object", files={"op.json": '"send a/b"'}),
    "operation file not UTF-8": row("run --connection @D/conn.json --operation @D/op.json", 2, "is not UTF-8 text",
                                    files={"op.json": b'{"action": "send", "topic": "\xe9"}'}),
    "input file missing": row("send --topic @U/x --qos 1 --file @D/here.txt --file @D/missing.txt @BROKER", 2,
                              "the input file", "does not exist"),
    "input file is a folder": row("send --topic @U/x --file @D @BROKER", 2, "is not a file"),
    "input file unreadable": row("send --topic @U/x --file @D/here.txt --file @D/secret.txt @BROKER", 2,
                                 "cannot be read: permission denied", files={"secret.txt": "no"},
                                 skip_as_root="root reads a chmod 000 file anyway"),
    "run INPUT missing": row("run --connection @D/conn.json --operation @D/send.json @D/here.txt @D/missing.txt", 2,
                             "does not exist"),
    "--file without a path": row("send --topic @U/x --file", 2, "argument --file: expected one argument"),
    "send without documents": row("send --topic @U/x @BROKER", 2, "one of the arguments --message --file --lines is required"),
    "--message with --lines": row("send --topic @U/x --message m --lines @BROKER", 2, "not allowed with argument"),
    "results file in a missing folder": row(f"{SEND} --results @D/no/such/results.jsonl", 2,
                                            "cannot write the results file"),
    # -- command line --------------------------------------------------------------------------
    "listen --count 0": row("listen --topic @U/# --count 0 @BROKER", 2, "--count must be at least 1"),
    "listen --timeout -1": row("listen --topic @U/# --timeout -1 @BROKER", 2, "--timeout: must be more than 0"),
    "listen --timeout x": row("listen --topic @U/# --timeout x @BROKER", 2, "argument --timeout: invalid float value"),
    "listen --persistent without --client-id": row("listen --topic @U/# --persistent --timeout 2 @BROKER", 2,
                                                   "--persistent needs a stable --client-id"),
    "run listen with INPUT": row("run --connection @D/conn.json --operation @D/listen.json @D/here.txt", 2,
                                 "a Listen takes no INPUT"),
    "run send with --count": row("run --connection @D/conn.json --operation @D/send.json --count 1", 2,
                                 "--count, --timeout, --format, --output, --health-* and --metrics are for a Listen"),
    "send without --topic": row("send --message m @BROKER", 2, "one of the arguments --topic --topic-file is required"),
    "unknown command": row("publish --topic a", 2, "invalid choice: 'publish'"),
    "unknown flag": row(f"{SEND} --colour blue", 2, "unrecognized arguments: --colour blue"),
    "unknown connector": row("describe --connector nope", 2, "nope"),
    **{name: row(argv, code, *words, **{"seconds": 1.0, **kw}) for name, (argv, code, words, kw) in {
        # -- JSON files: strict (one loader for every file) -----------------------------------------
        "connection file nested 100,000 deep": (CHECK_C, 2, ("nests lists and objects more than 64 levels",),
                                                {"files": {"c.json": "[" * 100_000 + "]" * 100_000}, "process": True,
                                                 "memory": GIB}),
        "connection file nested 100,000 deep in a field": (CHECK_C, 2, ("more than 64 levels",),
                                                           {"files": {"c.json": '{"failover": ' + "[" * 100_000
                                                                      + "]" * 100_000 + "}"}}),
        "connection file nested 65 deep": (CHECK_C, 2, ("more than 64 levels",),
                                           {"files": {"c.json": '{"failover": ' + "[" * 64 + "]" * 64 + "}"}}),
        "connect_timeout NaN": (CHECK_C, 2, ("holds NaN, which is not a number in JSON",),
                                {"files": {"c.json": '{"connect_timeout": NaN}'}}),
        "ack_timeout NaN (run)": (f"run --connection @D/c.json --operation @D/send.json", 2, ("holds NaN",),
                                  {"files": {"c.json": '{"port": @PORT, "ack_timeout": NaN}'}}),
        "ack_timeout Infinity": (SEND_C, 2, ("holds Infinity",), {"files": {"c.json": '{"ack_timeout": Infinity}'}}),
        "keep_alive -Infinity": (SEND_C, 2, ("holds -Infinity",), {"files": {"c.json": '{"keep_alive": -Infinity}'}}),
        "connect_timeout 1e400 (overflows to infinity)": (CHECK_C, 2, ("holds the number 1e400, too large",),
                                                          {"files": {"c.json": '{"connect_timeout": 1e400}'}}),
        "connect_timeout 1e300 (finite, beyond the schema)": (CHECK_C, 2, ("'connect_timeout' in the connection file", "must be at most"),
                                                              {"files": {"c.json": '{"connect_timeout": 1e300}'}}),
        "qos NaN (operation file)": ("run --connection @D/conn.json --operation @D/op.json", 2, ("operation file", "NaN"),
                                     {"files": {"op.json": '{"action": "send", "topic": "@U/x", "qos": NaN}'}}),
        "port of 5,000 digits": (SEND_C, 2, ("a whole number of 5,000 digits",),
                                 {"files": {"c.json": '{"port": ' + "9" * 5_000 + "}"}, "process": True}),
        "keep_alive of 5,000 digits": (CHECK_C, 2, ("5,000 digits",),
                                       {"files": {"c.json": '{"keep_alive": -' + "1" * 5_000 + "}"}}),
        "port of 21 digits": (CHECK_C, 2, ("21 digits: at most 20",), {"files": {"c.json": '{"port": ' + "1" * 21 + "}"}}),
        "duplicate key (connection file)": (CHECK_C, 2, ('gives the key "port" twice',),
                                            {"files": {"c.json": '{"port": 1883, "host": "x", "port": @PORT}'}}),
        "duplicate key, nested (operation file)": (
            "run --connection @D/conn.json --operation @D/op.json", 2, ('the operation file', 'gives the key "a/#" twice'),
            {"files": {"op.json": '{"action": "listen", "topic": ["a/#"], "filter_qos": {"a/#": 1, "a/#": 2}}'}}),
        "connection file with a BOM": (CHECK_C, 2, ("byte order mark",), {"files": {"c.json": "\ufeff{}"}}),
        "connection file of spaces": (CHECK_C, 2, ("is empty",), {"files": {"c.json": " \n\t "}}),
        "connection file not UTF-8 (latin-1)": (CHECK_C, 2, ("is not UTF-8 text",),
                                                {"files": {"c.json": b'{"username": "Jos\xe9"}'}}),
        "connection file a JSON number": (CHECK_C, 2, ("must hold a JSON object",), {"files": {"c.json": "1883"}}),
        "connection file null (run)": ("run --connection @D/c.json --operation @D/send.json", 2, ("must be an object",),
                                       {"files": {"c.json": "null"}}),
        "connection file a symlink loop": (CHECK_C, 2, ("cannot read the connection file", "symbolic links"),
                                           {"links": {"c.json": "c2.json", "c2.json": "c.json"}}),
        "password file not UTF-8": (["check", "--password-file", "@D/pw", "--username", "u", "@BROKER"], 2,
                                    ("the password file", "is not UTF-8 text"), {"files": {"pw": b"\xff\xfe"}}),
        # -- command-line numbers: finite, in range ---------------------------------------------------
        "listen --timeout nan": ("listen --topic @U/# --timeout nan @BROKER", 2, ("--timeout: must be a finite number",),
                                 {}),
        "listen --timeout inf": ("listen --topic @U/# --timeout inf @BROKER", 2, ("--timeout: must be a finite number",),
                                 {"process": True}),
        "listen --timeout -inf": ("listen --topic @U/# --timeout=-inf @BROKER", 2, ("finite number",), {}),
        "listen --timeout 1e309": ("listen --topic @U/# --timeout 1e309 @BROKER", 2, ("finite number",), {}),
        "listen --timeout 1e300": ("listen --topic @U/# --timeout 1e300 @BROKER", 2, ("at most 31,536,000 seconds",), {}),
        "listen --timeout 0": ("listen --topic @U/# --timeout 0 @BROKER", 2, ("--timeout: must be more than 0",), {}),
        "run listen --timeout nan": ("run --connection @D/conn.json --operation @D/listen.json --timeout nan", 2,
                                     ("--timeout: must be a finite number",), {}),
        "--wait-for-broker nan": ("check --wait-for-broker nan @REFUSED", 2, ("--wait-for-broker: must be a finite",),
                                  {"process": True}),
        "--wait-for-broker -1": (f"check --wait-for-broker -1 @REFUSED", 2, ("error: --wait-for-broker: must be at least 0",), {}),
        "--wait-for-broker 1e300": ("check --wait-for-broker 1e300 @REFUSED", 2, ("error: --wait-for-broker: must be at most",), {}),
        "--retry-delay nan": ("listen --topic @U/# --retry-delay nan @BROKER", 2, ("--retry-delay: must be a finite",), {}),
        "--retry-delay inf": ("listen --topic @U/# --retry-delay inf @BROKER", 2, ("--retry-delay: must be a finite",), {}),
        "--retry-delay 61": ("listen --topic @U/# --retry-delay 61 @BROKER", 2, ("error: --retry-delay: must be at most 60",), {}),
        "--port -1": (f"{SEND} --port -1", 2, ("port: must be at least 1",), {}),
        "--port 65536": ("send --topic @U/x --message m --port 65536", 2, ("at most 65535, not 65536",), {}),
        "--port of 30 digits": ("send --topic @U/x --message m --port " + "9" * 30, 2, ("at most 20 digits",), {}),
        "--session-expiry -1": (f"{SEND} --protocol 5 --session-expiry -1", 2, ("error: --session-expiry: must be at least 0",), {}),
        "--receive-maximum 0": (f"listen --topic @U/# --protocol 5 --receive-maximum 0 @BROKER", 2,
                                ("error: --receive-maximum: must be at least 1",), {}),
        "--receive-maximum 65536": ("listen --topic @U/# --protocol 5 --receive-maximum 65536 @BROKER", 2,
                                    ("error: --receive-maximum: must be at most 65535",), {}),
        "--max-attempts 0": ("listen --topic @U/# --max-attempts 0 @BROKER", 2, ("error: --max-attempts: must be at least 1",), {}),
        "--dedupe-window -1": ("listen --topic @U/# --protocol 5 --dedupe-window -1 @BROKER", 2,
                               ("error: --dedupe-window: must be at least 0",), {}),
        "--message-expiry -1": (f"{SEND} --protocol 5 --message-expiry -1", 2,
                                ("error: --message-expiry: must be at least 0",), {}),
        "--message-expiry 2**32": (f"{SEND} --protocol 5 --message-expiry 4294967296", 2,
                                   ("error: --message-expiry: must be at most 4294967295",), {}),
        # -- strings MQTT carries with a 16-bit length --------------------------------------------------
        "--username over 65,535 bytes": (["check", "--username", TOO_LONG, "@BROKER"], 2,
                                         ("error: --username: the user name is 80,000 bytes long in UTF-8",), {}),
        "password over 65,535 bytes (file)": (["check", "--username", "u", "--password-file", "@D/pw", "@BROKER"], 2,
                                              ("error: --password-file: the password is 80,000 bytes",),
                                              {"files": {"pw": TOO_LONG}}),
        "password over 65,535 bytes (connection file)": (CHECK_C, 2, ("the password is 80,000 bytes",),
                                                         {"files": {"c.json": json.dumps({"password": TOO_LONG})}}),
        "--client-id over 65,535 bytes": (["check", "--client-id", TOO_LONG, "@BROKER"], 2,
                                          ("error: --client-id: the client ID is 80,000 bytes",), {}),
        "client ID over 65,535 bytes with {random}": (["check", "--client-id", "é" * 32_765 + "{random}", "@BROKER"], 2,
                                                       ("the client ID is 65,538 bytes",), {}),
        "--will-topic over 65,535 bytes": (["check", "--will-topic", TOO_LONG, "@BROKER"], 2,
                                           ("error: --will-topic:", "80,000 bytes"), {}),
        "--will-payload over 65,535 bytes": (["check", "--will-topic", "@U/will", "--will-payload", TOO_LONG, "@BROKER"],
                                             2, ("error: --will-payload: the will payload is 80,000 bytes",), {}),
        "--user-property key over 65,535 bytes": (["send", "--topic", "@U/x", "--message", "m", "--protocol", "5",
                                                   "--user-property", TOO_LONG + "=v", "@BROKER"], 2,
                                                  ("error: --user-property: the user property's key is 80,000",), {}),
        "--user-property value over 65,535 bytes": (["send", "--topic", "@U/x", "--message", "m", "--protocol", "5",
                                                     "--user-property", "k=" + TOO_LONG, "@BROKER"], 2,
                                                    ("user property 'k''s value is 80,000 bytes",), {}),
        "--user-property key with a control character": (["send", "--topic", "@U/x", "--message", "m", "--protocol",
                                                          "5", "--user-property", "k\x07=v", "@BROKER"], 2,
                                                         ("U+0007", "control character"), {}),
        "--content-type over 65,535 bytes": (["send", "--topic", "@U/x", "--message", "m", "--protocol", "5",
                                              "--content-type", TOO_LONG, "@BROKER"], 2,
                                             ("error: --content-type: the content type is 80,000 bytes",), {}),
        "--correlation-data over 65,535 bytes": (["send", "--topic", "@U/x", "--message", "m", "--protocol", "5",
                                                  "--correlation-data", TOO_LONG, "@BROKER"], 2,
                                                 ("error: --correlation-data:", "80,000 bytes"), {}),
        "--response-topic over 65,535 bytes": (["send", "--topic", "@U/x", "--message", "m", "--protocol", "5",
                                                "--response-topic", TOO_LONG, "@BROKER"], 2,
                                               ("error: --response-topic:", "80,000 bytes"), {}),
        "--dead-letter-topic over 65,535 bytes": (["listen", "--topic", "@U/#", "--dead-letter-topic", TOO_LONG,
                                                   "@BROKER"], 2, ("error: --dead-letter-topic:", "80,000 bytes"), {}),
        "username over 65,535 bytes (run)": ("run --connection @D/c.json --operation @D/send.json", 2,
                                             ("'username' in the connection file", "80,000 bytes"),
                                             {"files": {"c.json": json.dumps({"port": "@PORT", "username": TOO_LONG})
                                                        .replace('"@PORT"', "@PORT")}}),
        # -- the client ID template --------------------------------------------------------------------
        "client ID {pid:>999999999}": (["check", "--client-id", "x-{pid:>999999999}", "@BROKER"], 2,
                                       ("names {pid:>999999999}: it may hold only {hostname}, {pid}, {random}",),
                                       {"process": True, "memory": GIB}),
        "client ID {pid!r}": (["check", "--client-id", "x-{pid!r}", "@BROKER"], 2, ("names {pid!r}",), {}),
        "client ID {pid.real}": (["check", "--client-id", "x-{pid.real}", "@BROKER"], 2, ("names {pid.real}",), {}),
        "client ID {random[0]}": (["check", "--client-id", "x-{random[0]}", "@BROKER"], 2, ("names {random[0]}",), {}),
        "client ID {}": (["check", "--client-id", "x-{}", "@BROKER"], 2, ("names {}",), {}),
        "client ID {0}": (["check", "--client-id", "x-{0}", "@BROKER"], 2, ("names {0}",), {}),
        "client ID with a lone }": (["check", "--client-id", "x}", "@BROKER"], 2, ("write '{{' for a brace",), {}),
        "client ID with a control character": (["check", "--client-id", "x\x01y", "@BROKER"], 2,
                                               ("error: --client-id: the client ID contains U+0001",), {}),
        "client ID with NUL (connection file)": (CHECK_C, 2, ("client ID contains a NUL character",),
                                                 {"files": {"c.json": '{"client_id": "a\\u0000b"}'}}),
        "client ID with a non-character": (["check", "--client-id", "x\ufffe", "@BROKER"], 2, ("U+FFFE",), {}),
        "username with a control character": (["check", "--username", "u\x1b", "@BROKER"], 2,
                                              ("error: --username: the user name contains U+001B",), {}),
        "username a lone surrogate (connection file)": (CHECK_C, 2, ("'username' in the connection file", "lone surrogate"),
                                                        {"files": {"c.json": '{"username": "\\ud800"}'}}),
        # -- text arguments that are not UTF-8 ---------------------------------------------------------
        "--username not UTF-8": (["check", "--username", "u\udcff", "@BROKER"], 2,
                                 ("--username is not valid UTF-8 text (the byte 0xFF at character 2)",), {"process": True}),
        "second --message not UTF-8": (["send", "--topic", "@U/x", "--qos", "1", "--message", "first", "--message",
                                        "bad\udcff", "@BROKER"], 2, ("--message is not valid UTF-8 text",),
                                       {"process": True}),
        "--topic not UTF-8": (["send", "--topic", "@U/\udce9", "--message", "m", "@BROKER"], 2,
                              ("--topic is not valid UTF-8 text (the byte 0xE9",), {}),
        "--password not UTF-8": (["check", "--username", "u", "--password", "p\udcff", "@BROKER"], 2,
                                 ("--password is not valid UTF-8",), {}),
        "--client-id not UTF-8": (["check", "--client-id", "c\udc80", "@BROKER"], 2, ("--client-id is not valid",), {}),
        "--user-property not UTF-8": (["send", "--topic", "@U/x", "--message", "m", "--protocol", "5",
                                       "--user-property", "k=\udcff", "@BROKER"], 2, ("--user-property is not valid",), {}),
        "--will-payload not UTF-8": (["check", "--will-topic", "@U/w", "--will-payload", "\udcff", "@BROKER"], 2,
                                     ("--will-payload is not valid",), {}),
        "--filter-qos not UTF-8": (["listen", "--topic", "@U/#", "--filter-qos", "\udcff=1", "@BROKER"], 2,
                                   ("--filter-qos is not valid",), {}),
        # -- hosts and ports -----------------------------------------------------------------------------
        "--failover port 0": ("check --failover 127.0.0.1:0 @BROKER", 2,
                              ("error: --failover: '127.0.0.1:0': the port must be 1 to 65535",), {"process": True}),
        "--failover port 99999": ("check --failover 127.0.0.1:99999 @BROKER", 2, ("the port must be 1 to 65535",), {}),
        "second --failover port 65536": ("check --failover 127.0.0.1:1884 --failover h:65536 @BROKER", 2,
                                         ("error: the 2nd --failover:",), {}),
        "failover port 0 (connection file)": (CHECK_C, 2, ("'failover/0' in the connection file", "1 to 65535"),
                                              {"files": {"c.json": '{"failover": ["127.0.0.1:0"]}'}}),
        "port 99999 (connection file)": (CHECK_C, 2, ("'port' in the connection file", "must be at most 65535, not 99999"),
                                         {"files": {"c.json": '{"port": 99999}'}}),
        "port -1 (connection file)": (CHECK_C, 2, ("'port' in the connection file", "must be at least 1"),
                                      {"files": {"c.json": '{"port": -1}'}}),
        "--host with a control character": (["check", "--host", "broker\x01", "--port", "1883"], 2,
                                            ("error: --host:", "U+0001"), {}),
        "--host with a space": (["check", "--host", "my broker"], 2, ("error: --host:", "U+0020"), {}),
        "--host with a 64-character label": (["check", "--host", "a" * 64 + ".example"], 2,
                                             ("is not a valid host name",), {}),
        "failover host with a control character": (CHECK_C, 2, ("'failover/0' in the connection file", "U+0001"),
                                         {"files": {"c.json": '{"failover": ["a\\u0001b:1883"]}'}}),
        "--ws-path with a line break": (["check", "--transport", "websockets", "--ws-path", "/mqtt\r\nX-A: 1",
                                         "@BROKER"], 2, ("error: --ws-path:", "U+000D"), {}),
        "broker --port 99999": ("broker --port 99999", 2, ("--port 99999 is not a TCP port: give 1 to 65535",), {}),
        "broker --port -1": ("broker --port=-1", 2, ("--port -1 is not a TCP port: give 1 to 65535",), {}),
        # -- input files ----------------------------------------------------------------------------------
        "--file of 2 GB (sparse): refused by its size, unread": (f"{SEND_F} --file @D/huge.bin", 2,
                                                                 ("is 2,147,483,648 bytes", "larger than"),
                                                                 {"sparse": {"huge.bin": 2 << 30}, "process": True,
                                                                  "memory": GIB}),
        "--file over max_packet_size": ("send --topic @U/x --file @D/big.bin --connection @D/small.json", 2,
                                        ("is 2,000 bytes: larger than", "a document can carry"),
                                        {"files": {"big.bin": b"x" * 2000, "small.json": '{"port": @PORT, "max_packet_size": 1000}'}}),
        "run INPUT of 2 GB (sparse)": ("run --connection @D/conn.json --operation @D/send.json @D/here.txt @D/huge.bin", 2,
                                       ("is 2,147,483,648 bytes",), {"sparse": {"huge.bin": 2 << 30}}),
        "--file a symlink loop": (f"{SEND_F} --file @D/loop", 2, ("cannot be read", "symbolic links"),
                                  {"links": {"loop": "loop2", "loop2": "loop"}}),
        "--file a dangling symlink": (f"{SEND_F} --file @D/dangling", 2, ("does not exist",),
                                      {"links": {"dangling": "nowhere"}}),
        "--file a directory (second)": (f"{SEND_F} --file @D/here.txt --file @D", 2, ("it is a directory",), {}),
        # -- outputs ----------------------------------------------------------------------------------------
        "--results is the --file": (f"{SEND_F} --file @D/here.txt --results @D/here.txt", 2,
                                    ("--results", "is the same file as --file", "give the output another name"), {}),
        "--results a link to the --file": (f"{SEND_F} --file @D/here.txt --results @D/link", 2,
                                           ("is the same file as --file",), {"links": {"link": "here.txt"}}),
        "--results is the --connection": ("send --topic @U/x --message m --connection @D/conn.json "
                                          "--results @D/conn.json", 2, ("is the same file as --connection",), {}),
        "--results is the run INPUT": ("run --connection @D/conn.json --operation @D/send.json @D/here.txt "
                                       "--results @D/here.txt", 2, ("is the same file as INPUT",), {}),
        "--results is the --operation": ("run --connection @D/conn.json --operation @D/send.json "
                                         "--results @D/send.json", 2, ("is the same file as --operation",), {}),
        "--outbox is the --file": (f"{SEND_F} --file @D/here.txt --outbox @D/./here.txt", 2,
                                   ("--outbox", "is the same file as --file",), {}),
        "--outbox writes its lock over the --file": (f"{SEND_F} --file @D/box.lock --outbox @D/box", 2,
                                                     ("--outbox", "writes", "box.lock", "the same file as --file"),
                                                     {"files": {"box.lock": "an input"}}),
        "unknown field of a megabyte": (CHECK_C, 2, ("unknown field 'hhhhhhhh", "...'"),
                                        {"files": {"c.json": json.dumps({"h" * 1_000_000: 1})}}),
        "--outbox is the --results": (f"{SEND} --results @D/out --outbox @D/out", 2,
                                      ("--outbox", "is the same file as --results",), {}),
        "--results on /dev/full": (f"{SEND} --qos 1 --results /dev/full", 2,
                                   ("cannot write the results file '/dev/full': No space left on device",),
                                   {"process": True}),
        "--results a directory": (f"{SEND} --results @D", 2, ("cannot write the results file", "Is a directory"), {}),
        "--results in a read-only place": (f"{SEND} --results /proc/version", 2, ("cannot write the results file",), {}),
        "--results in a folder that is a file": (f"{SEND} --results @D/here.txt/r.jsonl", 2,
                                                 ("cannot write the results file",), {}),
        "--outbox not SQLite": (f"{SEND} --qos 1 --outbox @D/box", 2, ("cannot use", "as an outbox", "not a database"),
                                {"files": {"box": "just text, not a database " * 100}}),
        "--outbox of garbage bytes": (f"{SEND} --qos 1 --outbox @D/box", 2, ("as an outbox",),
                                      {"files": {"box": bytes(range(256)) * 64}}),
        "--outbox on /dev/full": (f"{SEND} --qos 1 --outbox /dev/full", 2, ("is not a regular file",), {}),
        "--outbox in a missing folder": (f"{SEND} --qos 1 --outbox @D/no/box", 2, ("cannot use", "as an outbox"), {}),
    }.items()},
    # -- cannot connect: exit 3 ----------------------------------------------------------------
    "send to a refused port": row("send --topic @U/x --message m @REFUSED", 3, "connection refused", process=True),
    "listen to a refused port": row("listen --topic @U/# --timeout 5 @REFUSED", 3, "connection refused"),
    "check a refused port": row("check @REFUSED", 3, "connection refused"),
    "run to a refused port": row("run --connection @D/refused.json --operation @D/send.json", 3, "connection refused"),
    "send to a silent server": row("send --topic @U/x --message m --connection @D/silent.json", 3,
                                   "sent no MQTT answer within 1 s"),
    "listen to a silent server": row("listen --topic @U/# --connection @D/silent.json", 3, "sent no MQTT answer"),
    "check a silent server": row("check --connection @D/silent.json", 3, "is it an MQTT broker"),
    "send to an unknown host": row("send --topic @U/x --message m --host no-such-host.invalid", 3,
                                   "cannot find the host 'no-such-host.invalid'", process=True),
    "check an unknown host": row("check --connection @D/dns.json", 3, "cannot find the host"),
}


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 50
    assert {r.code for r in CORPUS.values()} == {2, 3}
    assert sum(r.process for r in CORPUS.values()) >= 5


# -- running a row ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word (not an MQTT broker)."""
    with silent_tcp_server() as port:
        yield port


@dataclass
class Ran:
    code: int
    out: str
    err: str


def _in_process(argv: list[str], stdin: bytes, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> Ran:
    """``main(argv)`` as the console script runs it; global state it touches is put back."""
    root = logging.getLogger()
    saved_logging = (root.handlers[:], root.level,
                     {name: logging.getLogger(name).level for name in ("amqtt", "transitions", "websockets", "asyncio")})
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        try:
            code = console_main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
    finally:
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
        for name, level in saved_logging[2].items():
            logging.getLogger(name).setLevel(level)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
    out, err = capsys.readouterr()
    return Ran(code, out, err)


def _children_cpu() -> float:
    """CPU seconds (user and system) of the test's finished child processes so far."""
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _as_subprocess(argv: list[str], stdin: bytes, memory: int = 0) -> Ran:
    if memory:  # a blow-up becomes a MemoryError (exit 1), not a slow machine
        import resource
        import subprocess

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

        proc = subprocess.run([sys.executable, "-m", "connector", *argv], input=stdin, capture_output=True,
                              timeout=30, preexec_fn=limit)
    else:
        proc = run_cli(*argv, input=stdin, timeout=30)
    return Ran(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def _prepare(case: Row, folder: Path, unique: str, broker: BrokerThread, silent: int) -> list[str]:
    refused = free_port()
    tokens = {"@D": str(folder), "@U": unique, "@PORT": str(broker.port)}

    def fill(text: str) -> str:
        for token, value in tokens.items():
            text = text.replace(token, value)
        return text

    standard: dict[str, str | bytes] = {
        "conn.json": json.dumps({"host": broker.host, "port": broker.port, "connect_timeout": 5}),
        "refused.json": json.dumps({"host": "127.0.0.1", "port": refused}),
        "silent.json": json.dumps({"host": "127.0.0.1", "port": silent, "connect_timeout": 1}),
        "dns.json": json.dumps({"host": "no-such-host.invalid", "connect_timeout": 1}),
        "send.json": json.dumps({"action": "send", "topic": f"{unique}/x", "qos": 1}),
        "listen.json": json.dumps({"action": "listen", "topic": f"{unique}/#"}),
        "here.txt": "would be sent",
    }
    for name, content in {**standard, **case.files}.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else fill(content).encode("utf-8", "surrogatepass"))
        path.chmod(0o600)  # files holding secrets are warned about otherwise
    for name, size in case.sparse.items():
        with open(folder / name, "wb") as f:
            f.truncate(size)
    for name, target in case.links.items():
        (folder / name).symlink_to(target)
    if "secret.txt" in case.files:
        (folder / "secret.txt").chmod(0)
    expand = {"@BROKER": ["--host", broker.host, "--port", str(broker.port)],
              "@REFUSED": ["--host", "127.0.0.1", "--port", str(refused)]}
    argv: list[str] = []
    for arg in case.argv:
        argv += expand.get(arg, [fill(arg)])
    return argv


def _sends(argv: list[str]) -> bool:
    return argv[:1] == ["send"] or (argv[:1] == ["run"] and "listen.json" not in " ".join(argv))


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus(name: str, broker: BrokerThread, unique: str, tmp_path: Path, silent_port: int,
                capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    case = CORPUS[name]
    if case.skip_as_root and os.geteuid() == 0:
        pytest.skip(case.skip_as_root)
    argv = _prepare(case, tmp_path, unique, broker, silent_port)
    watch = case.code == 2 and _sends(argv)
    runtime = Runtime(default_connector="mqtt")
    watcher = None
    if watch:  # a Listen on everything the row could send, subscribed before the command runs
        watcher = runtime.listen_in_background(
            {"host": broker.host, "port": broker.port, "connect_timeout": 5},
            {"action": "listen", "topic": f"{unique}/#", "qos": 1})
        watcher.wait_ready()
    started, children, own = time.monotonic(), _children_cpu(), time.thread_time()
    try:
        ran = (_as_subprocess(argv, case.stdin, case.memory) if case.process
               else _in_process(argv, case.stdin, capsys, monkeypatch))
        elapsed = time.monotonic() - started
        # The row's work in CPU time, which a busy machine does not stretch (a subprocess's start,
        # 0.2 s of it, can take seconds of wall time when other processes hold the cores): the
        # subprocess's, or this thread's, where the command ran in process. Waiting (a connect
        # attempt, a timeout) costs no CPU: the wall time's own limit (SECONDS) catches that.
        worked = _children_cpu() - children if case.process else time.thread_time() - own
        if watcher is not None:  # everything sent before the marker arrives before it
            results = list(runtime.send({"host": broker.host, "port": broker.port, "connect_timeout": 5},
                                        {"action": "send", "topic": f"{unique}/marker", "qos": 1}, [b"marker"]))
            assert all(r.ok for r in results), results
            assert watcher.collected.wait_for(1, WAIT)
    finally:
        if watcher is not None:
            watcher.stop()
            watcher.join()

    print(f"{name} -> exit {ran.code}, {ran.err.strip()[:300]!r}, {elapsed:.2f} s")  # the table, with -rA
    shown = f"{name}: exit {ran.code}\nstdout: {ran.out[:500]!r}\nstderr: {ran.err[:1000]!r}"
    assert ran.code == case.code, shown
    assert "Traceback" not in ran.out + ran.err, shown
    lines = ran.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    for words in case.words:
        assert words in lines[0], f"{words!r} missing; {shown}"
    assert ran.out == "", shown
    assert worked < case.seconds, f"{name} took {worked:.1f} s" + (" of CPU time" if case.process else "")
    assert elapsed < SECONDS, f"{name} took {elapsed:.1f} s"
    if watcher is not None:
        assert [d.payload for d in watcher.documents] == [b"marker"], f"{name}: something was sent"


# -- payloads too big for the broker or for MQTT: that document APPLICATION_ERROR, the rest sent ----

LIMIT = 1_000


@pytest.fixture(scope="module")
def small_packets(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """Mosquitto that accepts packets of at most LIMIT bytes (it tells MQTT 5 clients in its CONNACK)."""
    return mosquitto_factory(extra=f"max_packet_size {LIMIT}")


def test_a_document_over_the_brokers_maximum_packet_size_is_refused_and_the_rest_sent(
        small_packets: MosquittoBroker, unique: str) -> None:
    from connector.mqtt.send import publish_packet_size

    topic = f"{unique}/big"
    runtime = Runtime(default_connector="mqtt")
    connection = {"host": small_packets.host, "port": small_packets.port, "protocol": "5", "connect_timeout": 5,
                  "ack_timeout": 5}
    fits = max(n for n in range(LIMIT) if publish_packet_size(topic, n, 1, True)[0] <= LIMIT)  # a LIMIT-byte packet
    payloads = [b"first", b"x" * fits, b"y" * (fits + 1), b"z" * 100_000, b"last"]
    with runtime.listen_in_background(connection, {"action": "listen", "topic": topic, "qos": 1},
                                      count=3, timeout=WAIT) as watcher:
        watcher.wait_ready()
        results = list(runtime.send(connection, {"action": "send", "topic": topic, "qos": 1}, payloads))
    assert [r.status.value for r in results] == ["SUCCESS", "SUCCESS", "APPLICATION_ERROR", "APPLICATION_ERROR",
                                                 "SUCCESS"], results
    assert f"{LIMIT + 1:,}-byte packet" in (results[2].error or "") and f"at most {LIMIT:,} bytes" in (results[2].error or "")
    # the connection survived: the documents after the refused ones arrived, nothing else
    assert [d.payload for d in watcher.documents] == [b"first", b"x" * fits, b"last"]


def test_mqtt311_documents_over_the_configured_maximum_packet_size_are_refused_and_the_rest_sent(
        small_packets: MosquittoBroker, unique: str) -> None:
    """MQTT 3.1.1 brokers announce no limit: the connection's max_packet_size tells the connector."""
    from connector.mqtt.send import publish_packet_size

    topic = f"{unique}/big311"
    runtime = Runtime(default_connector="mqtt")
    connection = {"host": small_packets.host, "port": small_packets.port, "connect_timeout": 5, "ack_timeout": 5,
                  "max_packet_size": LIMIT}
    fits = max(n for n in range(LIMIT) if publish_packet_size(topic, n, 1, False)[0] <= LIMIT)
    payloads = [b"first", b"x" * fits, b"y" * (fits + 1), b"last"]
    watch = {"host": small_packets.host, "port": small_packets.port}
    with runtime.listen_in_background(watch, {"action": "listen", "topic": topic, "qos": 1}, count=3,
                                      timeout=WAIT) as watcher:
        watcher.wait_ready()
        results = list(runtime.send(connection, {"action": "send", "topic": topic, "qos": 1}, payloads))
    assert [r.status.value for r in results] == ["SUCCESS", "SUCCESS", "APPLICATION_ERROR", "SUCCESS"], results
    assert f"at most {LIMIT:,} bytes" in (results[2].error or "")
    assert [d.payload for d in watcher.documents] == [b"first", b"x" * fits, b"last"]


def test_mqtts_own_limit_is_checked_without_building_the_packet() -> None:
    from connector.mqtt.send import MAX_PAYLOAD, oversize, publish_packet_size

    class Conn:  # only what the check reads; no 256 MB payload needed
        mqtt5 = False
        max_packet_size = None

    largest = MAX_PAYLOAD - 2 - 1  # topic length field and a one-byte topic, QoS 0
    assert publish_packet_size("a", largest, 0, False) == (1 + 4 + MAX_PAYLOAD, MAX_PAYLOAD)
    assert oversize(Conn(), "a", largest, 0) is None
    assert "MQTT carries at most 268,435,455" in (oversize(Conn(), "a", largest + 1, 0) or "")
    assert oversize(Conn(), "a", largest, 1) is not None  # QoS 1 adds a packet identifier
    assert oversize(Conn(), "é", largest, 0) is not None  # the topic counts in UTF-8 bytes
    assert publish_packet_size("a", 0, 0, True) == (6, 4)  # MQTT 5: one byte of (empty) properties
    assert publish_packet_size("a", 200, 0, False) == (1 + 2 + 203, 203)  # two-byte remaining length
