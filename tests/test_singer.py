"""The Singer adapter's promises, through its console scripts: the target's records reach the
endpoint once each (templates per record, failures per record, STATE only after success), the
tap's streams, bounds and acknowledgements (a message is acknowledged only once its RECORD was
written), persistent sessions across runs, and the configuration Singer tools see."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


from singer_support import (BIN, error_lines, need_singer_sdk, record, run_script, schema, state,
                            singer_lines, stdout_messages)

need_singer_sdk()

from connector.harness.runtime import Runtime  # noqa: E402
from connector.mqtt.broker import BrokerThread  # noqa: E402

RUNTIME = Runtime(default_connector="mqtt")
DEVICES = schema("devices", {"id": {"type": "integer"}, "device_id": {"type": ["string", "null"]},
                             "command": {"type": "string"}}, ("id",))


def _listen(broker: BrokerThread, topic: str, count: int) -> Any:
    bg = RUNTIME.listen_in_background({"port": broker.port}, {"action": "listen", "topic": topic, "qos": 1},
                                      count=count, timeout=20)
    bg.wait_ready(10)
    return bg


def _publish(broker: BrokerThread, topic: str, payloads: list[bytes], retained: bool = False) -> None:
    op = {"action": "send", "topic": topic, "qos": 1, "retained": retained}
    assert all(r.ok for r in RUNTIME.send({"port": broker.port}, op, payloads))


def test_target_sends_each_record_once_to_its_templated_topic(broker: BrokerThread, tmp_path: Path) -> None:
    bg = _listen(broker, "t1/#", 3)
    lines = singer_lines(DEVICES, *(record("devices", {"id": i, "device_id": f"d{i}", "command": "on"})
                                    for i in range(3)), state({"done": 3}))
    run = run_script("target-mqtt", {"port": broker.port, "topic": "t1/{device_id}/cmd", "qos": 1}, tmp_path,
                     input=lines)
    assert run.returncode == 0, run.stderr
    assert stdout_messages(run.stdout) == [{"done": 3}]
    outcome = bg.join(20)
    assert outcome.accepted == 3
    got = [(d.properties["topic"], json.loads(d.payload)) for d in bg.documents]
    assert got == [(f"t1/d{i}/cmd", {"id": i, "device_id": f"d{i}", "command": "on"}) for i in range(3)]


def test_target_payload_field_sends_that_field_only(broker: BrokerThread, tmp_path: Path) -> None:
    bg = _listen(broker, "t2", 2)
    lines = singer_lines(DEVICES, record("devices", {"id": 1, "command": "on"}),
                         record("devices", {"id": 2, "command": "off"}))
    run = run_script("target-mqtt", {"port": broker.port, "topic": "t2", "qos": 1, "payload_field": "command"},
                     tmp_path, input=lines)
    assert run.returncode == 0, run.stderr
    bg.join(20)
    assert [d.payload for d in bg.documents] == [b"on", b"off"]


def test_a_record_that_cannot_be_sent_fails_alone_and_stops_state(broker: BrokerThread, tmp_path: Path) -> None:
    """A template field the record lacks, and a filled-in topic the topic rules refuse ('+'): each is
    that record's APPLICATION_ERROR; the others are sent; STATE before them is passed on, none after;
    the target reports them and exits 1 with one line."""
    bg = _listen(broker, "t3/#", 3)
    lines = singer_lines(DEVICES, record("devices", {"id": 1, "device_id": "a"}), state({"n": 1}),
                         record("devices", {"id": 2, "device_id": None}), state({"n": 2}),
                         record("devices", {"id": 3, "device_id": "b"}),
                         record("devices", {"id": 4, "device_id": "+"}), state({"n": 4}),
                         record("devices", {"id": 5, "device_id": "c"}), state({"n": 5}))
    run = run_script("target-mqtt", {"port": broker.port, "topic": "t3/{device_id}", "qos": 1}, tmp_path,
                     input=lines)
    assert run.returncode == 1, run.stderr
    assert stdout_messages(run.stdout) == [{"n": 1}]
    errors = error_lines(run.stderr)
    assert len(errors) == 1 and "2 of 5 records failed" in errors[0] and "device_id" in errors[0], errors
    assert "APPLICATION_ERROR" in run.stderr and "wildcard" in run.stderr.lower()
    bg.join(20)
    assert [d.properties["topic"] for d in bg.documents] == ["t3/a", "t3/b", "t3/c"]
    assert "Traceback" not in run.stderr


def test_target_with_the_broker_down_fails_with_one_line_and_no_state(tmp_path: Path) -> None:
    with BrokerThread() as gone:
        port = gone.port
    lines = singer_lines(DEVICES, record("devices", {"id": 1, "device_id": "a"}), state({"n": 1}))
    run = run_script("target-mqtt", {"port": port, "topic": "t4", "qos": 1}, tmp_path, input=lines)
    assert run.returncode == 3
    assert run.stdout == ""
    assert error_lines(run.stderr) == [f"error: connection refused by 127.0.0.1:{port}: is the broker running, "
                                       "and is the port right?"]
    assert "Traceback" not in run.stderr


def test_target_on_disk_stops_state_at_a_file_the_connector_refuses(tmp_path: Path) -> None:
    """The connector's own refusal (a file that exists, overwrite off) fails that record only."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "2.json").write_text("kept", encoding="utf-8")
    rows = schema("rows", {"id": {"type": "integer"}}, ("id",))
    lines = singer_lines(rows, record("rows", {"id": 1}), state({"n": 1}), record("rows", {"id": 2}),
                         state({"n": 2}), record("rows", {"id": 3}), state({"n": 3}))
    run = run_script("target-disk", {"directory": str(tmp_path), "folder": "out", "file_name": "{index}.json"},
                     tmp_path, input=lines)
    # {index} counts from 0: record 3 (index 2) meets the file 2.json
    assert run.returncode == 1, run.stderr
    passed = stdout_messages(run.stdout)
    assert passed[-1] == {"n": 2} and {"n": 3} not in passed  # each passed on once safe; none after the failure
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.json", "1.json", "2.json"]
    assert (tmp_path / "out" / "2.json").read_text(encoding="utf-8") == "kept"


def test_tap_has_a_stream_per_filter_with_the_message_fields(broker: BrokerThread, tmp_path: Path) -> None:
    _publish(broker, "t5/a/1", [b"21.5"], retained=True)
    _publish(broker, "t5/b/1", [b"\x00\xff"], retained=True)
    run = run_script("tap-mqtt", {"port": broker.port, "topic": ["t5/a/#", "t5/b/+"], "qos": 1,
                                  "idle_seconds": 0.5}, tmp_path)
    assert run.returncode == 0, run.stderr
    records = [(m["stream"], m["record"]) for m in stdout_messages(run.stdout) if m["type"] == "RECORD"]
    assert [(s, r["topic"], r["payload"], r["encoding"], r["qos"], r["retained"]) for s, r in records] == [
        ("t5_a", "t5/a/1", "21.5", "utf-8", 1, True), ("t5_b", "t5/b/1", "AP8=", "base64", 1, True)]
    assert all(r["received_at"].endswith("+00:00") for _, r in records)


def test_tap_keeps_a_persistent_session_between_runs(broker: BrokerThread, tmp_path: Path) -> None:
    """Messages published between two runs arrive in the next run, once; max_records bounds a run
    and leaves the rest for the next one."""
    config = {"port": broker.port, "topic": "t6/#", "qos": 1, "client_id": "tap-t6-{stream}",
              "clean_session": False, "idle_seconds": 0.5}

    def payloads(**bounds: Any) -> list[str]:
        run = run_script("tap-mqtt", {**config, **bounds}, tmp_path)
        assert run.returncode == 0, run.stderr
        return [m["record"]["payload"] for m in stdout_messages(run.stdout) if m["type"] == "RECORD"]

    assert payloads() == []  # the first run makes the session
    _publish(broker, "t6/x", [b"1", b"2", b"3"])
    assert payloads(max_records=2) == ["1", "2"]
    _publish(broker, "t6/x", [b"4"])
    assert payloads() == ["3", "4"]
    assert payloads() == []


def test_tap_acknowledges_nothing_it_could_not_write(broker: BrokerThread, tmp_path: Path) -> None:
    """Standard output closed at once: no RECORD was written, so none was acknowledged."""
    config = {"port": broker.port, "topic": "t7/#", "qos": 1, "client_id": "tap-t7", "clean_session": False,
              "idle_seconds": 0.5}
    assert run_script("tap-mqtt", config, tmp_path).returncode == 0
    _publish(broker, "t7/x", [b"a", b"b"])
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    proc = subprocess.Popen([str(BIN / "tap-mqtt"), "--config", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.wait(30) != 0
    run = run_script("tap-mqtt", config, tmp_path)
    assert [m["record"]["payload"] for m in stdout_messages(run.stdout) if m["type"] == "RECORD"] == ["a", "b"]


def test_tap_with_the_broker_down_fails_with_one_line(tmp_path: Path) -> None:
    with BrokerThread() as gone:
        port = gone.port
    run = run_script("tap-mqtt", {"port": port, "topic": "t8"}, tmp_path)
    assert run.returncode == 3
    assert error_lines(run.stderr) == [f"error: connection refused by 127.0.0.1:{port}: is the broker running, "
                                       "and is the port right?"]


def test_bad_configuration_is_one_line_naming_every_problem(tmp_path: Path) -> None:
    lines = singer_lines(DEVICES, record("devices", {"id": 1}))
    run = run_script("target-mqtt", {"port": 1883, "topic": "a/#", "password": "s3cret-pw", "keep_alive": 0},
                     tmp_path, input=lines)
    assert run.returncode == 2, run.stderr
    [line] = error_lines(run.stderr)
    assert "operation topic" in line and "connection keep_alive" in line
    assert "s3cret-pw" not in run.stderr + run.stdout


def test_about_shows_the_connectors_fields_with_secrets_marked() -> None:
    about = json.loads(subprocess.run([str(BIN / "target-mqtt"), "--about", "--format", "json"],
                                      capture_output=True, text=True, check=True).stdout)
    props = about["settings"]["properties"]
    assert props["password"]["secret"] is True and props["password"]["writeOnly"] is True
    assert props["port"]["default"] == 1883 and props["qos"]["enum"] == [0, 1, 2]
    assert "max_attempts" not in props and "payload_field" in props  # Listen-only fields are the tap's
    tap = json.loads(subprocess.run([str(BIN / "python"), "-m", "connector.singer", "tap", "--connector", "disk",
                                     "--about", "--format", "json"], capture_output=True, text=True,
                                    check=True).stdout)
    assert tap["name"] == "tap-disk" and tap["settings"]["required"] == ["directory"]
    assert {"pattern", "idle_seconds", "max_records"} <= set(tap["settings"]["properties"])


def test_a_script_named_for_no_connector_says_so(tmp_path: Path) -> None:
    run = subprocess.run([str(BIN / "python"), "-m", "connector.singer", "tap", "--connector", "nope", "--about"],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert error_lines(run.stderr) and "nope" in run.stderr and "Traceback" not in run.stderr
