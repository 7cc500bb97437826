"""docs/deploy.md: its systemd unit passes ``systemd-analyze verify``, and every command it gives (the
unit's, the compose file's, the console examples) parses with the flags the command line has, with
the settings its lossless rules ask for. (Docker cannot run where the tests run: the image and the
compose file are checked, not built.)"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

from brokers import missing
from connector.harness.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
#: The connection's default ack_timeout: the longest a drain waits for a dead letter's confirmation.
ACK_TIMEOUT = 30


def block(first_line: str) -> str:
    """The fenced block of docs/deploy.md whose first line is ``first_line``."""
    found = [b for b in re.findall(r"^```\w*\n(.*?)^```", DEPLOY, re.MULTILINE | re.DOTALL)
             if b.splitlines()[0] == first_line]
    assert len(found) == 1, first_line
    return found[0]


def unit_settings(unit: str) -> dict[str, str]:
    joined = unit.replace("\\\n", " ")
    return dict(line.split("=", 1) for line in joined.splitlines() if "=" in line and not line.startswith("#"))


def parses(argv: list[str]) -> None:
    """``mqtt-connector ARGV`` parses (argparse exits 2 on an unknown flag or a bad value)."""
    build_parser("mqtt-connector", "mqtt", argv=argv).parse_args(argv)


UNIT = block("# /etc/systemd/system/mqtt-listen@.service")


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze not installed (Debian package systemd)")
    program = Path(sysconfig.get_path("scripts")) / "mqtt-connector"
    assert program.exists()
    unit = tmp_path / "mqtt-listen@.service"
    unit.write_text(UNIT.replace("/opt/mqtt-connector/bin/mqtt-connector", str(program)))
    result = subprocess.run([analyze, "verify", str(tmp_path / "mqtt-listen@1.service")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "mqtt-listen@" not in result.stderr, result.stderr  # verify warns (and exits 0) on unknown keys


def test_the_unit_drains_restarts_and_keeps_one_session_per_worker() -> None:
    settings = unit_settings(UNIT)
    assert settings["KillSignal"] == "SIGTERM" and int(settings["TimeoutStopSec"]) > ACK_TIMEOUT
    assert settings["Restart"] == "on-failure" and settings["RestartPreventExitStatus"] == "2"
    program, *argv = shlex.split(settings["ExecStart"].replace("$$", "$").replace("%i", "3").replace("%H", "host"))
    assert program == "/opt/mqtt-connector/bin/mqtt-connector"
    parses(argv)
    assert argv[0] == "listen" and "--persistent" in argv
    assert argv[argv.index("--client-id") + 1] == "orders-host-3"
    assert argv[argv.index("--topic") + 1] == "$share/orders/orders/#"
    assert argv[argv.index("--qos") + 1] in ("1", "2")
    assert argv[argv.index("--health-port") + 1] == "9103"


def test_the_compose_workers_have_stable_unique_client_ids_and_drain() -> None:
    try:
        import yaml
    except ImportError:
        missing("PyYAML not installed (the singer extra brings it)")
    compose = yaml.safe_load(block("# compose.yaml"))
    services = compose["services"]
    assert len(services) >= 2
    assert len({s["hostname"] for s in services.values()}) == len(services)  # {hostname}: one ID each
    assert len({tuple(s["volumes"]) for s in services.values()}) == len(services)  # an output each
    dockerfile = block("# Dockerfile")
    for service in services.values():
        argv = [arg.replace("$$", "$") for arg in service["command"]]
        parses(argv)
        assert argv[0] == "listen" and "--persistent" in argv
        assert argv[argv.index("--client-id") + 1] == "orders-{hostname}"
        assert service["stop_signal"] == "SIGTERM" and int(service["stop_grace_period"].rstrip("s")) > ACK_TIMEOUT
        assert f"127.0.0.1:{argv[argv.index('--health-port') + 1]}/healthz" in dockerfile
    assert "STOPSIGNAL SIGTERM" in dockerfile and 'ENTRYPOINT ["mqtt-connector"]' in dockerfile


def test_every_console_command_parses() -> None:
    commands = [c.replace("\\\n", " ") for c in re.findall(r"^\$ (mqtt-connector (?:.*\\\n)*.*)$", DEPLOY,
                                                            re.MULTILINE)]
    assert commands
    for command in commands:
        parses(shlex.split(command)[1:])


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: systemd-analyze says so for each broken setting (one run: it is slow)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze not installed (Debian package systemd)")
    program = Path(sysconfig.get_path("scripts")) / "mqtt-connector"
    text = UNIT.replace("/opt/mqtt-connector/bin/mqtt-connector", str(program))
    for broken in ("Restart=bogus", "KillSignal=SIGNOPE", "TimeoutStopSec=soon"):
        text = re.sub(rf"^{broken.split('=')[0]}=.*$", broken, text, flags=re.MULTILINE)
    (tmp_path / "mqtt-listen@.service").write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / "mqtt-listen@1.service")], capture_output=True,
                            text=True, timeout=60)
    complaints = [line for line in result.stderr.splitlines() if "mqtt-listen@" in line]
    assert len(complaints) == 3, result.stderr
