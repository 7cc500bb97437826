"""Listen: which files are taken (pattern, dot-names, the settle rule), what a document holds,
moves to done only after acceptance, retries then the failed folder, one Listen per folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from disk_helpers import files, listen_operation, runtime

from connector.harness.sinks import CollectingSink
from connector.sdk.documents import Document
from connector.sdk.errors import ConfigError, ConnectError
from disk_connector.listen import Settle


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    return tmp_path


def connection(root: Path) -> dict:
    return {"directory": str(root)}


def listen(root: Path, sink, count: int | None = None, timeout: float | None = 10, **operation):
    return runtime().listen(connection(root), listen_operation(**operation), sink, count=count, timeout=timeout,
                            connector_id="disk")


# -- the settle rule -----------------------------------------------------------------------------

def test_a_file_is_taken_once_two_looks_saw_it_unchanged_and_old_enough(root: Path) -> None:
    folder, settle = root / "in", Settle(1.0)
    growing, old = folder / "growing.csv", folder / "old.csv"
    old.write_bytes(b"done long ago")
    os.utime(old, (time.time() - 60, time.time() - 60))
    growing.write_bytes(b"part")
    assert settle.ready(folder, "*.csv") == []  # first look: nothing is known to be unchanged
    assert [f.path.name for f in settle.ready(folder, "*.csv")] == ["old.csv"]  # modified a minute ago
    with growing.open("ab") as f:
        f.write(b" more")
    assert settle.ready(folder, "*.csv")[0].path.name == "old.csv"
    assert len(settle.ready(folder, "*.csv")) == 1  # growing: modified just now
    os.utime(growing, (time.time() - 2, time.time() - 2))  # the writer stopped two seconds ago
    assert [f.path.name for f in settle.ready(folder, "*.csv")] == ["old.csv"]  # its mtime changed: look again
    assert [f.path.name for f in settle.ready(folder, "*.csv")] == ["old.csv", "growing.csv"]  # oldest first


def test_a_file_modified_in_the_future_is_taken_once_seen_unchanged_for_the_settle_time(root: Path) -> None:
    future = root / "in" / "a.csv"
    future.write_bytes(b"from a clock an hour ahead")
    os.utime(future, (time.time() + 3600, time.time() + 3600))
    settle = Settle(0.3)
    assert settle.ready(root / "in", "*") == []
    assert settle.ready(root / "in", "*") == []
    time.sleep(0.35)
    assert [f.path.name for f in settle.ready(root / "in", "*")] == ["a.csv"]


def test_a_settle_time_of_zero_takes_files_at_first_sight_but_never_dot_names(root: Path) -> None:
    for name in ("a.csv", "b.txt", ".a.csv.1234.tmp", ".hidden.csv"):
        (root / "in" / name).write_bytes(b"x")
    (root / "in" / "sub.csv").mkdir()
    os.symlink(root / "in" / "a.csv", root / "in" / "link.csv")
    assert [f.path.name for f in Settle(0).ready(root / "in", "*.csv")] == ["a.csv"]


def test_a_file_still_being_written_is_not_taken_until_it_settles(root: Path) -> None:
    path = root / "in" / "slow.csv"
    with runtime().listen_in_background(connection(root), listen_operation(settle_time=1.5), count=1,
                                        timeout=20, connector_id="disk") as bg:
        sink = bg.collected
        bg.wait_ready(5)
        with path.open("wb") as f:
            for part in range(5):  # written in pieces, well within the settle time of each other
                f.write(b"%d," % part)
                f.flush()
                time.sleep(0.1)
        assert len(sink) == 0
        assert sink.wait_for(1, 10)
    assert sink.documents[0].payload == b"0,1,2,3,4,"


# -- documents, acknowledgement --------------------------------------------------------------------

def test_each_file_is_one_document_moved_to_done_after_the_process_took_it(root: Path) -> None:
    (root / "in" / "b.csv").write_bytes(b"\x00\xffbinary")
    (root / "in" / "a.csv").write_bytes(b"text")
    os.utime(root / "in" / "a.csv", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    (root / "in" / "skip.txt").write_bytes(b"not matched")
    seen: list[tuple[Document, list[str]]] = []

    def sink(document: Document) -> None:  # what is in done while the process holds the document
        seen.append((document, files(root / "done")))

    outcome = listen(root, sink, count=2, pattern="*.csv")
    assert outcome.accepted == 2 and outcome.reason == "count"
    first, second = (document for document, _ in seen)
    assert first.payload == b"text" and second.payload == b"\x00\xffbinary"
    assert first.properties == {"name": "a.csv", "path": "in/a.csv", "size": 4,
                                "modified": "2023-11-14T22:13:20+00:00"}
    assert [done for _, done in seen] == [[], []]  # moved only after the batch was accepted
    assert files(root / "done") == ["a.csv", "b.csv"] and files(root / "in") == ["skip.txt"]


def test_a_name_already_in_done_is_kept(root: Path) -> None:
    (root / "done").mkdir()
    (root / "done" / "a.csv").write_bytes(b"yesterday's")
    (root / "done" / "a.1.csv").write_bytes(b"and the day before")
    (root / "in" / "a.csv").write_bytes(b"today's")
    listen(root, CollectingSink(), count=1)
    assert (root / "done" / "a.2.csv").read_bytes() == b"today's"
    assert (root / "done" / "a.csv").read_bytes() == b"yesterday's"


def test_a_refused_file_is_retried_then_moved_to_failed_with_its_error(root: Path) -> None:
    (root / "in" / "bad.csv").write_bytes(b"poison")
    (root / "in" / "good.csv").write_bytes(b"fine")
    os.utime(root / "in" / "good.csv", (time.time() + 1, time.time() + 1))  # after bad.csv
    attempts: list[bytes] = []
    taken = CollectingSink()

    def process(document: Document) -> None:
        attempts.append(document.payload)
        if document.payload == b"poison":
            raise ValueError("cannot parse line 1")
        taken(document)

    outcome = listen(root, process, count=1, max_attempts=3)
    assert outcome.accepted == 1 and outcome.dead_lettered == 1
    assert attempts == [b"poison", b"poison", b"poison", b"fine"]
    assert files(root / "failed") == ["bad.csv", "bad.csv.error.json"]
    assert (root / "failed" / "bad.csv").read_bytes() == b"poison"
    note = json.loads((root / "failed" / "bad.csv.error.json").read_text())
    assert note["error"] == "ValueError: cannot parse line 1" and note["attempts"] == 3
    assert note["properties"]["path"] == "in/bad.csv" and "payload" not in note
    assert files(root / "done") == ["good.csv"] and files(root / "in") == []


def test_without_a_failed_folder_the_listen_stops_and_the_file_stays(root: Path) -> None:
    (root / "in" / "bad.csv").write_bytes(b"poison")

    def refuse(document: Document) -> None:
        raise ValueError("no")

    outcome = listen(root, refuse, max_attempts=2, dead_letter_topic=None)
    assert outcome.reason == "refused" and outcome.error == "ValueError: no"
    assert files(root / "in") == ["bad.csv"] and not (root / "failed").exists()


def test_a_file_replaced_after_it_was_read_is_not_moved_but_taken_again(root: Path) -> None:
    path = root / "in" / "a.csv"
    path.write_bytes(b"first version")
    payloads: list[bytes] = []

    def sink(document: Document) -> None:
        payloads.append(document.payload)
        if len(payloads) == 1:  # a writer replaces the file while the process holds the first version
            replacement = root / "in" / ".a.csv.tmp"
            replacement.write_bytes(b"second version")
            os.replace(replacement, path)

    listen(root, sink, count=2)
    assert payloads == [b"first version", b"second version"]
    assert (root / "done" / "a.csv").read_bytes() == b"second version" and files(root / "in") == []


# -- configuration, readiness, one Listen per folder ---------------------------------------------------

def test_listening_says_what_in_the_connector_s_words(root: Path) -> None:
    said: list[str] = []
    from connector.harness.runtime import ProcessListener

    listener = ProcessListener(CollectingSink(), on_listening=said.append)
    runtime().listen(connection(root), listen_operation(pattern="*.csv"), listener.sink, timeout=0.3,
                     listener=listener, connector_id="disk")
    assert said == [f"files matching '*.csv' in '{root / 'in'}'"]
    assert runtime().describe_operation(listen_operation(pattern="*.csv"), "disk") == "on files matching '*.csv' in 'in'"


def test_every_listen_configuration_problem_is_reported_at_once(root: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        listen(root, CollectingSink(), pattern="sub/*.csv", done_folder="in/.", dead_letter_topic="../failed",
               settle_time=-1)
    assert caught.value.problems == ["operation settle_time: must be at least 0, not -1"]
    with pytest.raises(ConfigError) as caught:
        listen(root, CollectingSink(), pattern="sub/*.csv", done_folder="in/.", dead_letter_topic="../failed")
    assert caught.value.problems == [
        "operation dead_letter_topic: '../failed' must stay inside the connection's directory: '..' is not allowed",
        "operation pattern: matches file names in the folder: it must not hold '/' (name the folder in 'folder')"]
    with pytest.raises(ConfigError, match="operation done_folder: must differ from the folder 'in'"):
        listen(root, CollectingSink(), done_folder="in/.")


def test_a_second_listen_on_the_same_folder_is_refused(root: Path) -> None:
    with runtime().listen_in_background(connection(root), listen_operation(), timeout=10, connector_id="disk") as bg:
        bg.wait_ready(5)
        with pytest.raises(ConnectError, match=r"another Listen takes the files of '.*/in' already"):
            listen(root, CollectingSink(), timeout=1)
        bg.stop()


def test_a_listen_stops_within_a_second(root: Path) -> None:
    with runtime().listen_in_background(connection(root), listen_operation(poll_interval=60), timeout=30,
                                        connector_id="disk") as bg:
        bg.wait_ready(5)
        started = time.monotonic()
        bg.stop()
        bg.join(5)
    assert time.monotonic() - started < 1.0


def test_a_move_cut_short_by_a_kill_is_completed_without_a_second_copy(root: Path) -> None:
    """Killed between the link into done and the unlink from in: one file under both names. It is
    handed over again (at least once), and its move then completes."""
    (root / "done").mkdir()
    (root / "in" / "a.csv").write_bytes(b"accepted, not yet moved")
    os.link(root / "in" / "a.csv", root / "done" / "a.csv")
    sink = CollectingSink()
    listen(root, sink, count=1)
    assert [d.payload for d in sink.documents] == [b"accepted, not yet moved"]
    assert files(root / "done") == ["a.csv"] and files(root / "in") == []
