"""End to end under Meltano: a temporary Meltano project whose custom plugins install this checkout
(``pip_url: -e <checkout>[singer]``) and meltanolabs-target-csv from PyPI, installed once per session
(``meltano install``), then ``meltano run``:

- a fixture tap (a Singer tap script emitting N records) into target-mqtt: every record reaches a
  Listen once; with the broker down the run fails with our one-line reason and records no state;
- tap-mqtt into target-csv: each run's CSV holds every message published since the last run, once.

Skipped without Meltano on a user's machine, failed in CI (which installs it: .ci/run)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from singer_support import ROOT, meltano_program, need_singer_sdk

need_singer_sdk()

from connector.harness.runtime import Runtime  # noqa: E402
from connector.mqtt.broker import BrokerThread  # noqa: E402
from connector.singer.config import SingerConfig  # noqa: E402
from connector.sdk.plugins import installed_connectors  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
RUNTIME = Runtime(default_connector="mqtt")

#: The fixture tap: N records of one stream, a STATE after each, then exits.
FIXTURE_TAP = '''#!{python}
import argparse, json, sys
parser = argparse.ArgumentParser()
parser.add_argument("--config"); parser.add_argument("--state"); parser.add_argument("--catalog")
parser.add_argument("--discover", action="store_true"); parser.add_argument("--about", action="store_true")
args = parser.parse_args()
config = json.load(open(args.config))
def emit(message):
    sys.stdout.write(json.dumps(message) + "\\n")
emit({{"type": "SCHEMA", "stream": "devices", "key_properties": ["id"], "schema": {{"type": "object",
      "properties": {{"id": {{"type": "integer"}}, "device_id": {{"type": "string"}}}}}}}})
for i in range(int(config["count"])):
    emit({{"type": "RECORD", "stream": "devices", "record": {{"id": i, "device_id": "dev-%d" % i}}}})
    emit({{"type": "STATE", "value": {{"last_id": i}}}})
'''

_KINDS = {"integer": "integer", "boolean": "boolean", "array": "array", "object": "object"}


def _settings(kind: str) -> list[dict[str, Any]]:
    """The plugin's settings for meltano.yml, from the adapter's own config schema."""
    action = "listen" if kind == "tap" else "send"
    schema = SingerConfig(installed_connectors().get("mqtt").manifest, action).jsonschema()
    settings = []
    for name, prop in schema["properties"].items():
        types = prop.get("type", ["string"])
        types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
        setting: dict[str, Any] = {"name": name}
        if prop.get("secret"):
            setting["kind"] = "password"
        elif len(types) == 1 and types[0] in _KINDS:
            setting["kind"] = _KINDS[types[0]]
        settings.append(setting)
    return settings


class Meltano:
    """One Meltano project for the session; each test sets the plugins' config and runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.program = meltano_program()
        self.env = self.environment()
        self.fixture_tap = path / "tap-fixture"
        self.fixture_tap.write_text(FIXTURE_TAP.format(python=sys.executable), encoding="utf-8")
        self.fixture_tap.chmod(0o755)
        self.configure()

    @staticmethod
    def environment() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_", "MELTANO_"))}
        env.update(MELTANO_SEND_ANONYMOUS_USAGE_STATS="false", MELTANO_ENVIRONMENT="dev", NO_COLOR="1")
        return env

    def configure(self, **configs: dict[str, Any]) -> None:
        checkout = f"-e {ROOT}[singer]"
        plugin = {"namespace": "", "pip_url": checkout}
        project = {
            "version": 1, "default_environment": "dev", "project_id": "mqtt-connector-e2e",
            "send_anonymous_usage_stats": False, "environments": [{"name": "dev"}],
            "plugins": {
                "extractors": [
                    {"name": "tap-fixture", "namespace": "tap_fixture", "executable": str(self.fixture_tap),
                     "capabilities": ["state"], "settings": [{"name": "count", "kind": "integer"}],
                     "config": configs.get("tap-fixture", {"count": 1})},
                    {**plugin, "name": "tap-mqtt", "namespace": "tap_mqtt", "executable": "tap-mqtt",
                     "capabilities": ["discover", "catalog", "state", "about"], "settings": _settings("tap"),
                     "config": configs.get("tap-mqtt", {"topic": "unused"})},
                ],
                "loaders": [
                    {**plugin, "name": "target-mqtt", "namespace": "target_mqtt", "executable": "target-mqtt",
                     "capabilities": ["about"], "settings": _settings("target"),
                     "config": configs.get("target-mqtt", {"topic": "unused"})},
                    {"name": "target-csv", "namespace": "target_csv", "pip_url": "meltanolabs-target-csv==0.5.0",
                     "executable": "target-csv", "settings": [{"name": "output_path"}],
                     "config": configs.get("target-csv", {"output_path": str(self.path / "output")})},
                ],
            },
        }
        # JSON is YAML: meltano.yml as json.dumps writes it
        (self.path / "meltano.yml").write_text(json.dumps(project, indent=2), encoding="utf-8")

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.program, *args], cwd=self.path, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def state(self, state_id: str) -> dict[str, Any] | None:
        listed = self("state", "list")
        assert listed.returncode == 0, listed.stderr
        if state_id not in listed.stdout.split():
            return None
        got = self("state", "get", state_id)
        assert got.returncode == 0, got.stderr
        return json.loads(got.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meltano]:
    project = Meltano(tmp_path_factory.mktemp("meltano"))
    started = time.monotonic()
    installed = project("install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    print(f"meltano install: {time.monotonic() - started:.1f} s", file=sys.stderr)
    yield project


def test_fixture_tap_into_target_mqtt_delivers_every_record_once(meltano: Meltano, broker: BrokerThread) -> None:
    n = 25
    topic = f"e2e/{uuid.uuid4().hex[:8]}"
    meltano.configure(**{"tap-fixture": {"count": n},
                         "target-mqtt": {"port": broker.port, "topic": topic + "/{device_id}", "qos": 1}})
    with RUNTIME.listen_in_background({"port": broker.port}, {"action": "listen", "topic": topic + "/#", "qos": 1},
                                      count=n, timeout=120) as bg:
        bg.wait_ready(10)
        run = meltano("run", "tap-fixture", "target-mqtt")
        assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(d.properties["topic"] for d in bg.documents) == sorted(f"{topic}/dev-{i}" for i in range(n))
    assert [json.loads(d.payload)["id"] for d in bg.documents] == list(range(n))
    assert meltano.state("dev:tap-fixture-to-target-mqtt") == {"singer_state": {"last_id": n - 1}}
    cleared = meltano("state", "clear", "--force", "dev:tap-fixture-to-target-mqtt")
    assert cleared.returncode == 0, cleared.stderr


def test_target_mqtt_with_the_broker_down_fails_with_our_reason_and_no_state(meltano: Meltano) -> None:
    with BrokerThread() as gone:
        port = gone.port
    meltano.configure(**{"tap-fixture": {"count": 3}, "target-mqtt": {"port": port, "topic": "e2e/down", "qos": 1}})
    run = meltano("run", "tap-fixture", "target-mqtt")
    assert run.returncode != 0
    reason = f"error: connection refused by 127.0.0.1:{port}: is the broker running, and is the port right?"
    assert reason in run.stdout + run.stderr
    assert meltano.state("dev:tap-fixture-to-target-mqtt") is None


def _make_session(port: int, client_id: str, topic: str) -> None:
    """The persistent session a tap's first run would make, made at once (a Meltano run takes seconds)."""
    outcome = RUNTIME.listen({"port": port, "client_id": client_id, "clean_session": False},
                             {"action": "listen", "topic": topic, "qos": 1}, lambda document: None, timeout=0.3)
    assert outcome.accepted == 0


def _csv_payloads(meltano: Meltano, stream: str) -> list[str]:
    path = meltano.path / "output" / f"{stream}.csv"
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [row["payload"] for row in csv.DictReader(f)]


def test_tap_mqtt_into_target_csv_writes_what_was_published_since_the_last_run(meltano: Meltano,
                                                                             broker: BrokerThread) -> None:
    topic = f"e2e-csv-{uuid.uuid4().hex[:8]}"
    meltano.configure(**{"tap-mqtt": {"port": broker.port, "topic": [topic + "/#"], "qos": 1,
                                      "client_id": f"meltano-{topic}", "clean_session": False, "idle_seconds": 1}})
    stream = topic.replace("-", "_")

    def run_and_read() -> list[str]:
        run = meltano("run", "tap-mqtt", "target-csv")
        assert run.returncode == 0, run.stdout + run.stderr
        return _csv_payloads(meltano, stream)

    _make_session(broker.port, f"meltano-{topic}", topic + "/#")  # as a first run would
    op = {"action": "send", "topic": topic + "/a", "qos": 1}
    assert all(r.ok for r in RUNTIME.send({"port": broker.port}, op, [f"m{i}".encode() for i in range(5)]))
    assert run_and_read() == [f"m{i}" for i in range(5)]
    assert all(r.ok for r in RUNTIME.send({"port": broker.port}, op, [b"m5", b"m6", b"m7"]))
    assert run_and_read() == ["m5", "m6", "m7"]


def test_the_meltano_yml_of_the_docs_works(tmp_path: Path, broker: BrokerThread) -> None:
    """docs/runtimes.md's meltano.yml, pointed at this checkout and the embedded broker: installs and runs."""
    import yaml

    text = (ROOT / "docs" / "runtimes.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    project = yaml.safe_load("\n".join(line[3:] for line in block.splitlines()))
    topic = f"docs-{uuid.uuid4().hex[:8]}"
    for plugin in project["plugins"]["extractors"] + project["plugins"]["loaders"]:
        if plugin["pip_url"] == "mqtt-connector[singer]":
            plugin["pip_url"] = f"-e {ROOT}[singer]"
        if plugin["name"] == "tap-mqtt":
            plugin["config"].update(host="127.0.0.1", port=broker.port, topic=[f"{topic}/a/#", f"{topic}/b/#"],
                                    client_id=f"{topic}-{{stream}}", idle_seconds=1)
    (tmp_path / "meltano.yml").write_text(json.dumps(project), encoding="utf-8")
    docs = Meltano.__new__(Meltano)
    docs.path, docs.program, docs.env = tmp_path, meltano_program(), Meltano.environment()
    assert docs("install").returncode == 0
    for stream in ("a", "b"):  # the sessions a first run would make
        _make_session(broker.port, f"{topic}-{topic.replace('-', '_')}_{stream}", f"{topic}/{stream}/#")
    op = {"action": "send", "topic": f"{topic}/b/1", "qos": 1}
    assert all(r.ok for r in RUNTIME.send({"port": broker.port}, op, [b"x", b"y"]))
    run = docs("run", "tap-mqtt", "target-csv")
    assert run.returncode == 0, run.stdout + run.stderr
    assert _csv_payloads(docs, "docs_" + topic[5:] + "_b") == ["x", "y"]
    assert _csv_payloads(docs, "docs_" + topic[5:] + "_a") == []
