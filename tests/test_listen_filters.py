"""A Listen's filters: Skip Retained (mosquitto_sub -R), Retained Only (a snapshot of the last
known values, then the Listen ends) and Filter Out (mosquitto_sub -T). Skipped messages are
acknowledged and counted. On the embedded broker, in this process."""

from __future__ import annotations

import time

import pytest

from clirun import run_cli
from connector.harness.runtime import Runtime
from connector.mqtt.broker import BrokerThread
from connector.sdk.errors import ConfigError


def send(runtime: Runtime, connection: dict, topic: str, payload: str, retained: bool = False) -> None:
    (result,) = runtime.send(connection, {"action": "send", "topic": topic, "qos": 1, "retained": retained}, [payload])
    assert result.ok, result


def listen(runtime: Runtime, connection: dict, unique: str, **options: object) -> dict:
    return {"action": "listen", "topic": f"{unique}/#", "qos": 1, **options}


def test_skip_retained_leaves_out_the_stored_messages_and_counts_them(runtime: Runtime, connection: dict,
                                                                     unique: str) -> None:
    send(runtime, connection, f"{unique}/a", "stored", retained=True)
    with runtime.listen_in_background(connection, listen(runtime, connection, unique, skip_retained=True),
                                      count=1, timeout=10) as bg:
        bg.wait_ready()
        send(runtime, connection, f"{unique}/a", "live")
    outcome = bg.join()
    assert [d.text for d in bg.documents] == ["live"]
    assert outcome.skipped == {"retained": 1}


def test_filter_out_leaves_out_matching_topics(runtime: Runtime, connection: dict, unique: str) -> None:
    operation = listen(runtime, connection, unique, filter_out=[f"{unique}/debug/#", f"{unique}/+/noise"])
    with runtime.listen_in_background(connection, operation, count=1, timeout=10) as bg:
        bg.wait_ready()
        for topic in ("debug/x", "debug", "b/noise", "kept"):
            send(runtime, connection, f"{unique}/{topic}", topic)
    assert [d.text for d in bg.documents] == ["kept"]
    assert bg.join().skipped == {"filtered out": 3}


def test_retained_only_ends_once_no_stored_message_comes(runtime: Runtime, connection: dict, unique: str) -> None:
    for name in ("a", "b", "c"):
        send(runtime, connection, f"{unique}/{name}", name, retained=True)
    started = time.monotonic()
    outcome = runtime.listen(connection, listen(runtime, connection, unique, retained_only=True), lambda d: None,
                             timeout=10)
    assert (outcome.accepted, outcome.reason, outcome.done) == (3, "done", "every retained message was read")
    assert 1.0 <= time.monotonic() - started < 5  # the quiet second, not the timeout


def test_retained_only_ends_at_the_first_live_message_without_taking_it(runtime: Runtime, connection: dict,
                                                                         unique: str) -> None:
    send(runtime, connection, f"{unique}/a", "stored", retained=True)
    operation = listen(runtime, connection, unique, retained_only=True)
    with runtime.listen_in_background(connection, operation, timeout=10) as bg:
        bg.wait_ready()
        send(runtime, connection, f"{unique}/a", "live")
        outcome = bg.join()
    assert [d.text for d in bg.documents] == ["stored"]
    assert outcome.reason == "done"


def test_skip_retained_and_retained_only_exclude_each_other(runtime: Runtime, connection: dict, unique: str) -> None:
    with pytest.raises(ConfigError, match="Skip Retained and Retained Only exclude each other"):
        runtime.listen(connection, listen(runtime, connection, unique, skip_retained=True, retained_only=True),
                       lambda d: None, timeout=1)


def test_the_filter_flags_and_the_count_of_skipped_messages(runtime: Runtime, connection: dict,
                                                            broker: BrokerThread, unique: str) -> None:
    send(runtime, connection, f"{unique}/a", "stored", retained=True)
    send(runtime, connection, f"{unique}/debug", "noise", retained=True)
    done = run_cli("listen", "--host", broker.host, "--port", str(broker.port), "--topic", f"{unique}/#",
                   "--only-retained", "--filter-out", f"{unique}/debug", "--format", "payload")
    assert (done.returncode, done.stdout) == (0, b"stored\n"), done.stderr
    assert done.stderr.decode() == "received 1 document (every retained message was read); 1 skipped (filtered out)\n"


def test_clear_retained_clears_under_the_filter_and_lists_each_topic(runtime: Runtime, connection: dict,
                                                                     broker: BrokerThread, unique: str) -> None:
    for name in ("in/a", "in/b/c", "out"):
        send(runtime, connection, f"{unique}/{name}", name, retained=True)
    done = run_cli("clear-retained", "--host", broker.host, "--port", str(broker.port), "--topic", f"{unique}/in/#")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.decode().splitlines()) == [f"{unique}/in/a", f"{unique}/in/b/c"]
    assert done.stderr.decode() == f"cleared 2 retained messages under '{unique}/in/#'\n"
    left = runtime.listen_in_background(connection, listen(runtime, connection, unique, retained_only=True), timeout=10)
    left.join()
    assert [d.properties["topic"] for d in left.documents] == [f"{unique}/out"]


@pytest.mark.parametrize(("topic_filter", "words"), [
    ("a/#/b", "'#' must be the whole last level"), ("", "is empty"), ("a/b+", "'+' must be a whole level"),
    ("a\tb", "U+0009"), ("$share/g", "shared subscription"),
])
def test_clear_retained_names_its_flag_for_a_bad_filter(topic_filter: str, words: str) -> None:
    done = run_cli("clear-retained", "--port", "1", "--topic", topic_filter)  # refused before connecting
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode().splitlines() == [done.stderr.decode().strip()]
    line = done.stderr.decode().strip()
    assert line.startswith(f"error: --topic {topic_filter!r}: ") and words in line, line
