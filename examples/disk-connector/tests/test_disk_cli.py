"""The disk connector on the command line, installed like any third-party connector."""

from __future__ import annotations

import json
from pathlib import Path

from disk_helpers import cli, files, write_json

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.json"


def test_connectors_lists_disk_and_mqtt() -> None:
    done = cli("connectors")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "disk 0.1.0: send, listen" in lines
    assert any(line.startswith("mqtt ") for line in lines)


def test_describe_serves_the_manifest_and_schemas_of_the_top_level(tmp_path: Path) -> None:
    done = cli("describe", "--connector", "disk", "--json")
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert {k: v for k, v in described.items() if not k.endswith("_schema")} == {
        k: v for k, v in json.loads(MANIFEST.read_text()).items() if not k.endswith("_schema")}
    schemas = MANIFEST.parent / "schemas"
    assert described["operation_schema"] == json.loads((schemas / "operation.schema.json").read_text())


def test_run_sends_files_into_a_folder_and_listens_to_one(tmp_path: Path) -> None:
    root = tmp_path / "exchange"
    (root / "out").mkdir(parents=True)
    connection = write_json(tmp_path / "connection.json", {"directory": str(root)})
    send = write_json(tmp_path / "send.json", {"action": "send", "folder": "out", "file_name": "order-{index:02d}.csv"})
    inputs = []
    for n, text in enumerate(["a;1\n", "b;2\n"]):
        inputs.append(tmp_path / f"input{n}")
        inputs[-1].write_text(text)
    done = cli("run", "--connector", "disk", "--connection", str(connection), "--operation", str(send), *map(str, inputs))
    assert done.returncode == 0, done.stderr
    assert "sent 2 of 2 documents to the folder 'out' (files named 'order-{index:02d}.csv')" in done.stderr
    assert files(root / "out") == ["order-00.csv", "order-01.csv"]
    assert (root / "out" / "order-01.csv").read_text() == "b;2\n"

    listen = write_json(tmp_path / "listen.json", {"action": "listen", "folder": "out", "pattern": "*.csv",
                                                   "settle_time": 0})
    done = cli("run", "--connector", "disk", "--connection", str(connection), "--operation", str(listen),
               "--count", "2", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["payload"], line["properties"]["path"]) for line in lines] == [
        ("a;1\n", "out/order-00.csv"), ("b;2\n", "out/order-01.csv")]
    assert files(root / "done") == ["order-00.csv", "order-01.csv"] and files(root / "out") == []


def test_a_refused_document_makes_exit_1_and_a_bad_operation_exit_2(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "taken.txt").write_text("keep me")
    connection = write_json(tmp_path / "connection.json", {"directory": str(tmp_path)})
    send = write_json(tmp_path / "send.json", {"action": "send", "folder": "out", "file_name": "taken.txt"})
    item = tmp_path / "item"
    item.write_text("new")
    done = cli("run", "--connector", "disk", "--connection", str(connection), "--operation", str(send), str(item))
    assert done.returncode == 1
    assert (f"error: document 1 (file {str(item)!r}): APPLICATION_ERROR: a file named 'taken.txt' exists already"
            in done.stderr)
    assert (tmp_path / "out" / "taken.txt").read_text() == "keep me"
    bad = write_json(tmp_path / "bad.json", {"action": "send", "folder": "../x", "file_name": "a/{index}"})
    done = cli("run", "--connector", "disk", "--connection", str(connection), "--operation", str(bad), str(item))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (f"'folder' in the operation file {str(bad)!r}: '../x' must stay inside the connection's directory"
            in done.stderr)
    assert "'file_name' in the operation file: must make a file name" in done.stderr


def test_check_says_ok_or_exits_3(tmp_path: Path) -> None:
    good = write_json(tmp_path / "good.json", {"directory": str(tmp_path)})
    done = cli("check", "--connector", "disk", "--connection", str(good))
    assert (done.returncode, done.stdout) == (0, f"ok: the directory '{tmp_path}' is readable and writable\n")
    assert files(tmp_path) == ["good.json"]  # the probe file is gone
    for directory, why in ((tmp_path / "missing", "does not exist"), (good, "is not a directory")):
        bad = write_json(tmp_path / "bad.json", {"directory": str(directory)})
        done = cli("check", "--connector", "disk", "--connection", str(bad))
        assert (done.returncode, done.stdout) == (3, "")
        assert done.stderr == f"error: the directory '{directory}' {why}\n"
