"""Every example of README.md (and of docs/*.md) gives the output the document shows.

The examples of one section run in order, in one temporary working folder, against one broker the test
started on a free port (never 127.0.0.1:1883): they share state, as they do for a reader who types them
one after the other (a retained message sent in one is what a later Listen shows). What a document shows
after a command is what the terminal shows: stdout and stderr. Every example runs unless one of the
lists below says otherwise, with its reason; a list naming an example the documents no longer hold fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from brokers import find_program
from certs import make_certs
from connector.mqtt.broker import BrokerThread, free_port
from readme_examples import Example, Started, interleaves, read_examples, run_shell, shell_command, with_ports

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [example for document in DOCUMENTS for example in read_examples(document, ROOT)]

BROKER_STARTED = re.compile(rb"^embedded MQTT broker listening on ")
LISTENING = re.compile(rb"listening on '")

# -- the decisions, keyed by the command exactly as the document shows it ----------------------------

#: Examples that cannot run on this machine alone.
NOT_OFFLINE = {
    "mqtt-connector check --host broker.example --port 8883 --ca-file ca.pem --cert-file me.pem --key-file me.key":
        "a remote broker (broker.example) and the certificates it trusts",
    "mqtt-connector check --host 10.0.0.7 --port 8883 --ca-file ca.pem":
        "a remote broker at 10.0.0.7 whose certificate does not name its address",
}

#: Commands that run until Ctrl-C (a broker; a Listen without --count/--timeout, or with a --count no
#: example reaches): started, checked to have started (the sign), stopped with Ctrl-C, exit 0.
WAITS_FOREVER = {
    "mqtt-connector broker --port 1883": BROKER_STARTED,
    "mqtt-connector broker --host 0.0.0.0 --port 8883 --password-file passwords --acl-file acl \\\n"
    "      --cert-file server.pem --key-file server.key [--ca-file ca.pem]": BROKER_STARTED,
    "mqtt-connector listen --topic 'orders/#' --qos 1 --persistent --client-id orders-listener": LISTENING,
    "mqtt-connector listen --topic 'orders/#' --qos 1 --persistent --client-id orders-1 \\\n"
    "      --max-attempts 5 --dead-letter-topic dead-letter/orders": LISTENING,
    "mqtt-connector run --connection conn.json --operation listen.json --count 10": LISTENING,
}

#: Brokers started with `&` that the next examples of their section connect to (on the port the document
#: gives the broker): they run until the section ends, then Ctrl-C stops them, exit 0.
KEPT_RUNNING = {"mqtt-connector broker --port 8883 --cert-file server.pem --key-file server.key &"}

#: Examples the documents show failing, with the exit code of README's table of exit codes.
FAILS = {
    "mqtt-connector check --port 8883 --tls": 3,  # cannot connect: TLS, the CA is not trusted
    "mqtt-connector check --port 1884": 3,  # cannot connect: refused
    "mqtt-connector run --connection conn.json --operation bad.json order-1.xml": 2,  # bad input: configuration
}

#: Notation that is not shell: `[--ca-file ca.pem]` is an optional part, given here.
REWRITES = {
    "mqtt-connector broker --host 0.0.0.0 --port 8883 --password-file passwords --acl-file acl \\\n"
    "      --cert-file server.pem --key-file server.key [--ca-file ca.pem]": ("[--ca-file ca.pem]", "--ca-file ca.pem"),
}

#: Programs other than ours (skipped when missing, failed in CI) and what a user types into them. What
#: they print is theirs (mosquitto_passwd's prompts): only their exit code is checked, and what they make
#: is used by the next examples (the broker reads the password file).
TLS_CA = 'openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 -subj "/CN=Local test CA"'
TLS_REQUEST = 'openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"'
TLS_SIGN = ("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile server.ext "
            "-out server.pem")
PROGRAMS = {"mosquitto_passwd -c passwords alice": "mosquitto_passwd",
            TLS_CA: "openssl", TLS_REQUEST: "openssl", TLS_SIGN: "openssl"}
STDIN = {"mosquitto_passwd -c passwords alice": b"Alice-Pass-42\nAlice-Pass-42\n"}  # asked twice

#: Sections whose examples need a broker the embedded one is not: it speaks MQTT 3.1.1 only. Mosquitto
#: forwards what is left of a message's expiry interval, in whole seconds as of the loop turn that
#: received it; it delivers to a subscriber that is online in that same turn, so 60 stays 60.
MOSQUITTO_SECTIONS = {"MQTT 5: message properties, request/reply, subscription options", "Request/reply with MQTT 5",
                      "Sharing the work between several Listens"}

#: The `listen` section's example shows the retained message the `send` section's first example leaves
#: (the `send` section's last example clears it again): it runs first, its output checked too.
REPLAY = {"`listen`: the Listen action": ["mqtt-connector send --topic sensors/a/temperature --qos 1 --retained --message 21"]}

OUTBOX_SEND = "mqtt-connector send --topic jobs/new --qos 1 --lines --outbox jobs.outbox < jobs.txt"
#: Sections with an example that takes more than a few seconds (30,000 documents through a broker).
SLOW_SECTIONS = {"When things break: retries, dead letters, reconnects, the outbox"}


def _files_to_send(folder: Path, port: int) -> None:
    (folder / "report.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(5000) + b"\xff\xd9")


def _tls_broker_files(folder: Path, port: int) -> None:
    make_certs(folder)  # ca.pem, server.pem, server.key (and more)
    (folder / "acl").write_text("user alice\ntopic readwrite sensors/#\npattern read replies/%u/#\n")


def _orders(folder: Path, port: int) -> None:
    for n in (1, 2):
        (folder / f"order-{n}.xml").write_text(f'<?xml version="1.0"?>\n<order id="{n}"><item sku="A-{n}"/></order>\n')


def _jobs_and_an_earlier_run(folder: Path, port: int) -> None:
    """30,000 jobs, and an outbox in which an earlier run confirmed the first 10,149: the same command
    on the first 10,149 lines (as a run killed after them leaves it, without waiting for a kill)."""
    lines = [f"job {n}\n" for n in range(1, 30_001)]
    (folder / "jobs.txt").write_text("".join(lines[:10_149]))
    earlier = run_shell(shell_command(OUTBOX_SEND, {}, port), folder, None)
    assert earlier.returncode == 0, earlier.stderr
    (folder / "jobs.txt").write_text("".join(lines))


#: Stand-ins for the files an example names that the document does not make.
STAND_INS: dict[str, Callable[[Path, int], None]] = {
    "mqtt-connector send --topic files/in --qos 1 --file report.pdf --file photo.jpg   # bytes exact": _files_to_send,
    "mqtt-connector broker --host 0.0.0.0 --port 8883 --password-file passwords --acl-file acl \\\n"
    "      --cert-file server.pem --key-file server.key [--ca-file ca.pem]": _tls_broker_files,
    "mqtt-connector run --connection conn.json --operation send.json order-1.xml order-2.xml": _orders,
    OUTBOX_SEND: _jobs_and_an_earlier_run,
}

# -- running a section ---------------------------------------------------------------------------------


@dataclass
class Section:
    folder: Path
    port: int  # the broker's
    closed_port: int  # where nothing listens (README: 1884)
    background: list[tuple[Example, Started]] = field(default_factory=list)
    kept: list[tuple[Example, Started]] = field(default_factory=list)  # KEPT_RUNNING brokers
    kept_ports: dict[str, str] = field(default_factory=dict)  # their ports: as shown, as started

    def ports(self, command: str) -> dict[str, str]:
        if re.search(r"\bmqtt-connector broker\b", command):  # a broker of its own, on a free port
            shown = re.search(r"--port (\d+)", command)
            return {shown.group(1): str(free_port())} if shown else {}
        return {"1883": str(self.port), "1884": str(self.closed_port), **self.kept_ports}


def run_example(example: Example, section: Section) -> None:
    command = example.command
    if command in REWRITES:
        command = command.replace(*REWRITES[command])
    if example.command in PROGRAMS:
        find_program(PROGRAMS[example.command])  # skips the rest of the section when missing (fails in CI)
    if example.command in STAND_INS:
        STAND_INS[example.command](section.folder, section.port)
    ports = section.ports(command)
    shell = shell_command(command, ports, section.port)
    shown = with_ports(example.shown, ports)
    if example.command in KEPT_RUNNING:
        keep_running(example, shell, shown, section, ports)
        return
    if example.command in WAITS_FOREVER or command.endswith(" &"):
        start_example(example, shell, shown, section)
        return
    proc = run_shell(shell, section.folder, STDIN.get(example.command))
    out, err = proc.stdout.decode(), proc.stderr.decode()
    streams = [out.splitlines(), err.splitlines()]
    for earlier, started in section.background:
        assert started.finish() == 0, f"{earlier}: exit {started.proc.returncode}"
        streams.append(started.stdout.decode().splitlines())
    section.background.clear()
    expected = FAILS.get(example.command, 0)
    assert proc.returncode == expected, f"{example}: exit {proc.returncode}, not {expected}\n{out}{err}"
    assert "Traceback" not in out + err, f"{example}\n{err}"
    if example.command in PROGRAMS:
        return
    assert interleaves(shown, streams), f"{example}\nshown: {list(shown)}\nprinted: {streams}"
    if expected:  # the one `error:` line is on stderr
        assert [line for line in err.splitlines() if line.startswith("error:")] == \
               [line for line in shown if line.startswith("error:")], f"{example}\n{err}"


def start_example(example: Example, shell: str, shown: tuple[str, ...], section: Section) -> None:
    """A command that runs on: it must show the sign that it started (a broker's first line on stdout, a
    Listen's "listening on" on the terminal). One started with `&` goes on while the next example runs;
    any other is stopped with Ctrl-C and must exit 0, its stdout being what the document shows (the
    terminal, stderr, holds what it says only to a person at a terminal, which the documents leave out)."""
    started = Started(shell.removesuffix(" &"), section.folder)
    sign = WAITS_FOREVER.get(example.command, LISTENING)
    if not started.wait_for(sign):
        started.stop()
        pytest.fail(f"{example}: never started ({started.stdout!r}, {started.terminal!r})")
    if shell.endswith(" &"):  # what it prints shows under the next example, with what that one prints
        section.background.append((example, started))
        return
    code = started.stop()
    assert code == 0, f"{example}: exit {code} on Ctrl-C"
    assert interleaves(shown, [started.stdout.decode().splitlines()]), (str(example), shown, started.stdout)


def keep_running(example: Example, shell: str, shown: tuple[str, ...], section: Section,
                 ports: dict[str, str]) -> None:
    """A broker the next examples connect to: started, its first line what the document shows."""
    started = Started(shell.removesuffix(" &"), section.folder)
    section.kept.append((example, started))
    assert started.wait_for(BROKER_STARTED), f"{example}: never started ({started.stdout!r}, {started.terminal!r})"
    assert interleaves(shown, [started.stdout.decode().splitlines()]), (str(example), shown, started.stdout)
    section.kept_ports.update(ports)


def _sections() -> Iterator[object]:
    names = list(dict.fromkeys((e.document, e.section) for e in EXAMPLES))
    for document, name in names:
        marks = [pytest.mark.slow] if name in SLOW_SECTIONS else []
        yield pytest.param(document, name, id=f"{document}: {name}", marks=marks)


@pytest.fixture
def section_broker(request: pytest.FixtureRequest) -> Iterator[int]:
    """The section's broker: the embedded one, or Mosquitto where the examples need MQTT 5."""
    if request.node.callspec.params["name"] in MOSQUITTO_SECTIONS:
        yield request.getfixturevalue("mosquitto_factory")().port
        return
    with BrokerThread() as broker:
        yield broker.port


@pytest.mark.parametrize(("document", "name"), list(_sections()))
def test_examples_of_a_section(document: str, name: str, section_broker: int, tmp_path: Path) -> None:
    section = Section(tmp_path, section_broker, free_port())
    by_command = {e.command: e for e in EXAMPLES}
    examples = [by_command[c] for c in REPLAY.get(name, [])]
    examples += [e for e in EXAMPLES if (e.document, e.section) == (document, name)]
    offline = [e for e in examples if e.command not in NOT_OFFLINE]
    try:
        for example in offline:
            run_example(example, section)
        assert not section.background, "a command started with `&` and no example after it"
        for example, started in section.kept:
            assert started.stop() == 0, f"{example}: exit {started.proc.returncode} on Ctrl-C"
    finally:
        for _, started in section.background + section.kept:
            started.stop()
    if not offline:
        pytest.skip("; ".join(f"{e}: needs {NOT_OFFLINE[e.command]}" for e in examples))


def test_every_decision_names_an_example_of_the_documents() -> None:
    commands = {e.command for e in EXAMPLES}
    listed = [*NOT_OFFLINE, *WAITS_FOREVER, *KEPT_RUNNING, *FAILS, *REWRITES, *PROGRAMS, *STDIN, *STAND_INS,
              *(c for replayed in REPLAY.values() for c in replayed)]
    assert sorted(set(listed) - commands) == []
    sections = {e.section for e in EXAMPLES}
    assert (MOSQUITTO_SECTIONS | SLOW_SECTIONS | set(REPLAY)) - sections == set()
    # An example shown failing is listed with its exit code, so that it is checked for it.
    shown_failing = {e.command for e in EXAMPLES if any(line.startswith("error:") for line in e.shown)}
    assert shown_failing - set(NOT_OFFLINE) == set(FAILS)


def test_examples_are_read_as_a_reader_reads_them() -> None:
    """The reader of the documents finds commands, their continuation lines and their output."""
    first = EXAMPLES[0]
    assert (first.document, first.section, first.command) == \
           ("README.md", "`broker`: the embedded broker", "mqtt-connector broker --port 1883")
    assert first.shown == ("embedded MQTT broker listening on mqtt://127.0.0.1:1883 (MQTT 3.1.1 only; Ctrl-C to stop)",)
    results = [e for e in EXAMPLES if e.command == "cat results.jsonl"]
    assert [e.shown for e in results] == [('{"index": 0, "status": "SUCCESS"}', '{"index": 1, "status": "SUCCESS"}')]
    assert sum(1 for e in EXAMPLES if "\\\n" in e.command) >= 3
    assert len(EXAMPLES) >= 25
