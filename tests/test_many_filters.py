"""A Listen with many filters: 10,000 given in a --topic-file, subscribed in SUBSCRIBE packets that fit
the broker's packet limit (Mosquitto closes the connection on a larger one), receives exactly the
messages they match; a filter the broker refuses is reported among many."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from brokers import MosquittoBroker
from connector.mqtt.broker import BrokerThread
from connector.mqtt.connection import SUBSCRIBE_PACKET_BYTES, subscribe_packets
from connector.mqtt.topics import matches
from clirun import run_cli
from raw_mqtt import packet, string

# -- the packets ---------------------------------------------------------------------------------


def encoded(subscriptions: list[tuple[str, int]], mqtt5: bool) -> bytes:
    """The SUBSCRIBE packet as MQTT 3.1.1 section 3.8 (MQTT 5 section 3.8: an empty property list) lays it out."""
    body = b"\x00\x01" + (b"\x00" if mqtt5 else b"")
    body += b"".join(string(f.encode("utf-8")) + bytes([qos]) for f, qos in subscriptions)
    return packet(0x82, body)


@pytest.mark.parametrize("mqtt5", [False, True])
@pytest.mark.parametrize("limit", [SUBSCRIBE_PACKET_BYTES, 16_390, 300])
def test_subscribe_packets_are_full_within_the_limit_and_keep_every_filter_in_order(limit: int, mqtt5: bool) -> None:
    rng = random.Random(limit)
    pieces = ["a", "é", "日本", "\U0001F600", "sensors", "+", "x" * 60]
    subscriptions = [("/".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))), rng.randint(0, 2))
                     for _ in range(6000)]
    subscriptions.insert(3000, ("long/" + "y" * 65_525, 1))  # 65,530 bytes: with its header over 64 KiB, alone
    packets = subscribe_packets(subscriptions, limit, mqtt5)
    assert [s for p in packets for s in p] == subscriptions
    sizes = [len(encoded(p, mqtt5)) for p in packets]
    assert all(size <= limit or len(p) == 1 for size, p in zip(sizes, packets))
    for p, following in zip(packets, packets[1:]):  # full: the next filter would not have fitted
        assert len(encoded(p + following[:1], mqtt5)) > limit
    assert len(packets) > 3 and [subscriptions[3000]] in packets


def test_a_few_filters_go_in_one_packet() -> None:
    assert subscribe_packets([("a", 0), ("b/#", 1)], SUBSCRIBE_PACKET_BYTES) == [[("a", 0), ("b/#", 1)]]
    assert subscribe_packets([], SUBSCRIBE_PACKET_BYTES) == []


# -- 10,000 filters on Mosquitto -----------------------------------------------------------------

def many_filters() -> list[str]:
    """10,000 filters of every kind: exact, '+', '#', shared."""
    return ([f"many/e{i}" for i in range(4000)] + [f"many/p{i}/+/x" for i in range(4000)]
            + [f"many/h{i}/#" for i in range(1500)] + [f"$share/g/many/s{i}/+" for i in range(500)])


def topics_to_publish(rng: random.Random) -> list[tuple[str, bool]]:
    """Topics near the filters of :func:`many_filters`, each with whether one of them matches it."""
    out = []
    for _ in range(150):
        i = rng.randrange(4000)
        out += [(f"many/e{i}", True), (f"many/e{i}/more", False), (f"many/e{i + 4000}", False),
                (f"many/p{i}/a/x", True), (f"many/p{i}/a/y", False), (f"many/p{i}/x", False), (f"many/p{i}//x", True),
                (f"$SYS/many/e{i}", False)]
        h, s = rng.randrange(3000), rng.randrange(1000)
        out += [(f"many/h{h}", h < 1500), (f"many/h{h}/a/b", h < 1500), (f"many/s{s}/a", s < 500),
                (f"many/s{s}/a/b", False)]
    return out


def publish_all(port: int, topics: list[str]) -> None:
    """Publish each topic (its index as the payload) at QoS 1, in order, each confirmed."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for n, topic in enumerate(topics):
            client.publish(topic, str(n), qos=1).wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


class Listening:
    """``mqtt-connector listen --topic-file FILE ... --verbose`` once it said it listens (every SUBACK
    came); its stderr read on in a thread, so that the pipe never fills with debug lines."""

    def __init__(self, port: int, filters: list[str], folder: Path, count: int, *more: str, windows: bool = False) -> None:
        text = "".join(f + ("\r\n" if windows else "\n") for f in filters)  # windows: a byte-order mark, CRLF
        (folder / "filters.txt").write_bytes(("\ufeff" + text if windows else text).encode())
        self.proc = subprocess.Popen([sys.executable, "-m", "connector", "listen", "--connector", "mqtt", "--port",
                                      str(port), "--topic-file", str(folder / "filters.txt"), "--qos", "1", "--count",
                                      str(count), "--timeout", "120", "--verbose", "--format", "{topic} {payload}",
                                      *more], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.said: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.said.append(line.decode())
            if line.startswith(b"listening on "):
                break
        self.reader = threading.Thread(target=lambda: self.said.extend(map(bytes.decode, self.proc.stderr)),  # type: ignore[arg-type]
                                       daemon=True)
        self.reader.start()

    def documents(self) -> list[tuple[str, ...]]:
        """``(topic, payload)`` of each document, once the Listen ended (exit 0)."""
        try:
            out, _ = self.proc.communicate(timeout=120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(10)
        assert self.proc.returncode == 0, "".join(self.said)[-3000:]
        assert "Traceback" not in "".join(self.said)
        return [tuple(line.split(" ", 1)) for line in out.decode().splitlines()]


@pytest.fixture(scope="module")
def limited(mosquitto_factory: Callable[..., MosquittoBroker]) -> Callable[[int], MosquittoBroker]:
    """Mosquitto closing the connection of a client that sends a packet over ``limit`` bytes (one
    SUBSCRIBE of the 10,000 filters below is about 150 KB); to MQTT 5 clients it announces the limit
    in its CONNACK (Maximum Packet Size). One broker per limit, for the module."""
    started: dict[int, MosquittoBroker] = {}

    def broker(limit: int) -> MosquittoBroker:
        if limit not in started:
            started[limit] = mosquitto_factory(extra=f"max_packet_size {limit}")
        return started[limit]

    return broker


@pytest.mark.parametrize("protocol,limit", [
    ("3.1.1", SUBSCRIBE_PACKET_BYTES),  # the connector's own limit
    ("5", 20_000),  # the limit the broker announces, lower than the connector's
])
def test_a_listen_with_10000_filters_receives_exactly_the_messages_they_match(
        limited: Callable[[int], MosquittoBroker], tmp_path: Path, protocol: str, limit: int) -> None:
    broker = limited(limit)
    filters = many_filters()
    topics = topics_to_publish(random.Random(8))
    for topic, matched in topics[::40]:  # the rule above, checked the slow way
        assert any(matches(f, topic) for f in filters) is matched, topic
    topics.append(("many/e0", True))  # the last one: every message before it was delivered first
    expected = [(topic, str(n)) for n, (topic, matched) in enumerate(topics) if matched]
    assert 500 < len(expected) < len(topics) - 500
    listen = Listening(broker.port, filters, tmp_path, len(expected), "--protocol", protocol)
    assert listen.said[-1] == ("listening on 'many/e0' (QoS 1), 'many/e1' (QoS 1), 'many/e2' (QoS 1) and 9,997 more "
                               "(10,000 filters: 10,000 QoS 1); Ctrl-C to stop\n"), "".join(listen.said)[-3000:]
    # paho's debug lines: one per SUBSCRIBE; each at most the limit, so at least this many
    whole = len(encoded([(f, 1) for f in filters], protocol == "5"))
    assert sum("Sending SUBSCRIBE" in line for line in listen.said) >= -(-whole // limit) >= 3
    publish_all(broker.port, [topic for topic, _ in topics])
    assert listen.documents() == expected


# -- a refused filter among many -------------------------------------------------------------------

def test_filters_refused_among_many_packets_are_each_reported_and_the_rest_listen(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ok/#\n")
    filters = [f"ok/{i}/+" for i in range(300)]
    refused = ["secret/a", "secret/+/b", "secret/#"]
    for at, topic_filter in zip((0, 150, 302), refused):  # in the first, a middle and the last SUBSCRIBE
        filters.insert(at, topic_filter)
    with BrokerThread(acl_file=acl, allow_anonymous=True) as broker:
        # at most 1,000 bytes a packet: about 90 of these filters a SUBSCRIBE
        listen = Listening(broker.port, filters, tmp_path, 2, "--max-packet-size", "1000", windows=True)
        publish_all(broker.port, ["secret/a", "ok/299/z", "ok/0/a"])
        documents = listen.documents()
    assert documents == [("ok/299/z", "1"), ("ok/0/a", "2")]
    told = "".join(listen.said)
    assert ("listening on 'secret/a' (refused), 'ok/0/+' (QoS 1), 'ok/1/+' (QoS 1) and 300 more (303 filters: "
            "300 QoS 1, 3 refused); Ctrl-C to stop\n") in told, told[-3000:]
    for topic_filter in refused:
        assert f"the broker refused the subscription to {topic_filter!r}\n" in told


# -- the filters file: bad input is exit 2 with one line, before connecting --------------------------

@pytest.mark.parametrize("text,words", [
    ("", "the topic file '{path}' is empty: give one a line"),
    ("a/#\n\nb\n", "error: line 2 of --topic-file '{path}': the topic is empty"),
    ("a/#\r\nb/#c\r\n", "error: line 2 of --topic-file '{path}': '+' and '#' must each be a whole level"),
    ("b\na/\x01\n", "error: line 2 of --topic-file '{path}': the topic filter contains U+0001 at character 3"),
    ("a/\x01", "error: --topic-file '{path}': the topic filter contains U+0001 at character 3"),  # one line: no number
    (b"a/\xff\n", "error: the topic file '{path}' is not UTF-8 text (byte 3)"),
])
def test_a_bad_filters_file_is_one_line_naming_it(tmp_path: Path, text: str | bytes, words: str) -> None:
    path = tmp_path / "filters.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    done = run_cli("listen", "--connector", "mqtt", "--port", "1", "--topic-file", str(path))
    assert done.returncode == 2 and done.stdout == b""
    err = done.stderr.decode()
    assert err.count("\n") == 1 and words.format(path=path) in err, err


def test_the_filters_come_from_the_flag_or_the_file_not_both(tmp_path: Path) -> None:
    (tmp_path / "filters.txt").write_text("a\n")
    both = run_cli("listen", "--connector", "mqtt", "--topic", "a", "--topic-file", str(tmp_path / "filters.txt"))
    neither = run_cli("listen", "--connector", "mqtt", "--qos", "1")
    missing = run_cli("listen", "--connector", "mqtt", "--topic-file", str(tmp_path / "none.txt"))
    assert (both.returncode, neither.returncode, missing.returncode) == (2, 2, 2)
    assert b"argument --topic-file: not allowed with argument --topic" in both.stderr
    assert b"one of the arguments --topic --topic-file is required" in neither.stderr
    assert missing.stderr.startswith(b"error: cannot read the topic file ") and missing.stderr.count(b"\n") == 1
