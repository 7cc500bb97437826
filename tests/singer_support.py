"""Helpers of the Singer adapter's tests: singer-sdk (the extra ``singer``) and Meltano are needed;
the tests skip without them on a user's machine and fail in CI, which installs them (.ci/run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from brokers import missing

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def need_singer_sdk() -> None:
    """Skip the calling test module without singer-sdk (fail it in CI)."""
    try:
        import singer_sdk  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("singer-sdk not installed: pip install -e '.[singer]'", allow_module_level=True)


def meltano_program() -> str:
    """Meltano: $MELTANO, else .venv-meltano/bin/meltano (as .ci/run installs it), else on PATH."""
    for candidate in (os.environ.get("MELTANO"), str(ROOT / ".venv-meltano" / "bin" / "meltano"),
                      shutil.which("meltano")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing("Meltano not installed (python3 -m venv .venv-meltano && .venv-meltano/bin/pip install meltano)")


def singer_lines(*messages: dict[str, Any]) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


def schema(stream: str, properties: dict[str, Any], key: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "SCHEMA", "stream": stream, "schema": {"type": "object", "properties": properties},
            "key_properties": list(key)}


def record(stream: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": fields}


def state(value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "STATE", "value": value}


def run_script(name: str, config: dict[str, Any], tmp_path: Path, *args: str, input: str = "",
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the console script ``name`` (tap-mqtt, target-disk, ...) with ``config`` as its --config."""
    path = tmp_path / f"{name}-config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_"))}
    return subprocess.run([str(BIN / name), "--config", str(path), *args], input=input, capture_output=True,
                          text=True, timeout=timeout, env=env)


def stdout_messages(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]
