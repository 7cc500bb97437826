"""Send: file names from the template, atomic durable writes, no overwrite unless told, one
Result per document (APPLICATION_ERROR for a name it cannot make, FAILURE for an I/O error)."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from disk_helpers import files, send

from connector.sdk.documents import Document, Status
from connector.sdk.errors import ConfigError, ConnectError
from disk_connector import send as send_module
from disk_connector.folders import Directory
from disk_connector.naming import Unnamable, render, template_problem


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path


# -- the template ----------------------------------------------------------------------------------

def test_the_template_fills_index_uuid_timestamp_and_properties() -> None:
    assert render("order-{index:04d}.csv", 7, {}) == "order-0007.csv"
    assert re.fullmatch(r"[0-9a-f]{32}\.json", render("{uuid}.json", 0, {}))
    assert render("{uuid}", 0, {}) != render("{uuid}", 0, {})
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-3", render("{timestamp}-{index}", 3, {}))
    assert render("{name}", 0, {"name": "a.csv"}) == "a.csv"
    assert render("{customer}-{index}.txt", 1, {"customer": "acme"}) == "acme-1.txt"


@pytest.mark.parametrize(("template", "properties", "why"), [
    ("{customer}.txt", {}, "needs the document property 'customer'"),
    ("{name}", {"name": "../escape"}, "holds a path separator"),
    ("{name}", {"name": "a/b"}, "holds a path separator"),
    ("{name}", {"name": "..\\b"}, "holds a path separator"),
    ("{name}", {"name": ".."}, "is not a file name"),
    ("{name}", {"name": ""}, "is empty"),
    ("{name}", {"name": ".hidden"}, "starts with '.'"),
    ("{name}", {"name": "x" * 201}, "longer than 200 bytes"),
    ("{size:05d}", {"size": "text"}, "does not take the format"),
])
def test_a_name_the_template_cannot_make_is_refused(template: str, properties: dict, why: str) -> None:
    with pytest.raises(Unnamable, match=re.escape(why)):
        render(template, 0, properties)


@pytest.mark.parametrize(("template", "why"), [
    ("{}", "is not a field"), ("{0}", "is not a field"), ("{name.upper}", "is not a field"),
    ("{name[0]}", "is not a field"), ("{name!r}", "is not allowed"), ("{index", "expected '}'"),
    ("out/{index}", "path separator"), ("{index:q}", "Unknown format code"),
])
def test_a_template_that_can_never_work_is_a_configuration_error(template: str, why: str) -> None:
    problem = template_problem(template)
    assert problem is not None and why in problem


def test_refused_names_are_that_document_s_application_error_and_nothing_leaves_the_folder(root: Path) -> None:
    documents = [Document(b"a", {"name": "ok.txt"}), Document(b"b", {"name": "../../escaped.txt"}),
                 Document(b"c", {}), Document(b"d", {"name": "fine.txt"})]
    results = send(root, documents, folder="out", file_name="{name}")
    assert [(r.index, r.status) for r in results] == [
        (0, Status.SUCCESS), (1, Status.APPLICATION_ERROR), (2, Status.APPLICATION_ERROR), (3, Status.SUCCESS)]
    assert "path separator" in results[1].error and "'name'" in results[2].error
    assert files(root / "out") == ["fine.txt", "ok.txt"]
    assert sorted(p.name for p in root.parent.iterdir() if p.name.startswith("escaped")) == []
    assert sorted(os.listdir(root)) == ["out"]


def test_every_configuration_problem_is_reported_at_once(root: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        send(root, [b"x"], folder="/etc", file_name="{name!r}")
    assert caught.value.problems == [
        "operation folder: '/etc' must be relative to the connection's directory, not absolute",
        "operation file_name: '{name!r}' is not allowed: write '{name}'"]
    with pytest.raises(ConfigError, match=r"operation folder: 'a/\.\./\.\.' must stay inside"):
        send(root, [b"x"], folder="a/../..")


def test_a_missing_folder_is_a_connect_error_before_anything_is_read(root: Path) -> None:
    def never() -> Iterator[bytes]:
        raise AssertionError("read")
        yield b""

    with pytest.raises(ConnectError, match=r"the folder '.*/missing' does not exist"):
        send(root, never(), folder="missing")


# -- atomic, durable writes ---------------------------------------------------------------------

def test_a_file_appears_whole_only_after_its_bytes_are_on_disk(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the file's fsync its name does not exist yet (only the dot-name); after the rename the
    folder is flushed; the payload is exact."""
    events: list[str] = []
    real_fsync, real_link = os.fsync, os.link
    target = root / "out" / "0.bin"

    def fsync(fd: int) -> None:
        events.append("fsync folder" if os.path.isdir(f"/proc/self/fd/{fd}") else
                      f"fsync file (name exists: {target.exists()})")
        real_fsync(fd)

    def link(source: str, destination: str, **kwargs: object) -> None:
        events.append(f"link {Path(source).name[:3]}... -> {Path(destination).name}")
        real_link(source, destination, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    payload = bytes(range(256)) * 1000
    [result] = send(root, [payload], folder="out", file_name="{index}.bin")
    assert result.ok
    assert events == ["fsync file (name exists: False)", "link .0.... -> 0.bin", "fsync folder"]
    assert target.read_bytes() == payload
    assert os.listdir(root / "out") == ["0.bin"]  # the temporary name is gone


def test_a_failed_rename_leaves_nothing_behind_and_is_a_failure(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def link(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "link", link)
    [result] = send(root, [b"x"], folder="out", file_name="a.txt")
    assert result.status is Status.FAILURE
    assert result.error == f"cannot write 'a.txt' in '{root / 'out'}': Input/output error"
    assert os.listdir(root / "out") == []


def test_without_hard_links_the_file_is_renamed_into_place(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def link(*args: object, **kwargs: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", link)
    results = send(root, [b"one", b"two"], folder="out", file_name="a.txt")
    assert [r.status for r in results] == [Status.SUCCESS, Status.APPLICATION_ERROR]
    assert (root / "out" / "a.txt").read_bytes() == b"one" and os.listdir(root / "out") == ["a.txt"]


# -- no overwrite unless told ------------------------------------------------------------------------

def test_an_existing_file_is_kept_unless_overwrite_is_set(root: Path) -> None:
    (root / "out" / "a.txt").write_bytes(b"old")
    [refused] = send(root, [b"new"], folder="out", file_name="a.txt")
    assert refused.status is Status.APPLICATION_ERROR
    assert "a file named 'a.txt' exists already" in refused.error and "set overwrite" in refused.error
    assert (root / "out" / "a.txt").read_bytes() == b"old"
    [replaced] = send(root, [b"new"], folder="out", file_name="a.txt", overwrite=True)
    assert replaced.ok and (root / "out" / "a.txt").read_bytes() == b"new"
    assert os.listdir(root / "out") == ["a.txt"]


def test_a_name_taken_by_another_writer_at_the_last_moment_is_not_replaced(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_link = os.link

    def link(source: str, destination: str, **kwargs: object) -> None:
        Path(destination).write_bytes(b"the other writer's")  # appears between the check and the rename
        real_link(source, destination, **kwargs)

    monkeypatch.setattr(os, "link", link)
    [result] = send(root, [b"mine"], folder="out", file_name="a.txt")
    assert result.status is Status.APPLICATION_ERROR
    assert (root / "out" / "a.txt").read_bytes() == b"the other writer's"
    assert os.listdir(root / "out") == ["a.txt"]


def test_one_result_per_document_in_order_reading_lazily(root: Path) -> None:
    """An endless input: the Send writes as it reads, one Result each, in order."""
    results = iter(send_module.send(
        Directory({"directory": str(root)}),
        {"folder": "out", "file_name": "{index}.txt", "overwrite": False},
        (Document(str(n).encode()) for n in itertools.count())))
    first = list(itertools.islice(results, 5))
    assert [(r.index, r.status) for r in first] == [(n, Status.SUCCESS) for n in range(5)]
    assert files(root / "out") == [f"{n}.txt" for n in range(5)]


# -- a real full disk ---------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of this test's own, unmounted after it (pytest runs the rest after a failure
    too). Mounting needs root and a kernel that allows it: else the test is skipped."""
    disk = tmp_path / "small"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True,
                           text=True)
    if mount.returncode:
        pytest.skip("cannot mount a tmpfs here: " + mount.stderr.strip())
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_fails_that_document_and_leaves_no_partial_file(small_disk: Path) -> None:
    (small_disk / "out").mkdir()
    documents = [b"small", b"x" * (256 * 1024), b"after"]
    results = send(small_disk, documents, folder="out", file_name="{index}.bin")
    assert [r.status for r in results] == [Status.SUCCESS, Status.FAILURE, Status.SUCCESS]
    assert results[1].error == f"cannot write '1.bin' in '{small_disk / 'out'}': No space left on device"
    assert sorted(os.listdir(small_disk / "out")) == ["0.bin", "2.bin"]  # no temporary file left
    assert (small_disk / "out" / "2.bin").read_bytes() == b"after"
