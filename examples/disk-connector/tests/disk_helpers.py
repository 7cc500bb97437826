"""What the disk connector's tests share: configurations, a Runtime, the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from connector.harness.runtime import Runtime
from connector.sdk.documents import Document, Result

#: The command line, as a user runs it (``python -m connector`` is ``mqtt-connector``).
CLI = [sys.executable, "-m", "connector"]


def runtime() -> Runtime:
    return Runtime(default_connector="disk")


def send(root: Path, documents: Iterable[Document | bytes | str], **operation: Any) -> list[Result]:
    """A disk Send into ``root`` (the connection's directory); its Results."""
    op = {"action": "send", **operation}
    return list(runtime().send({"directory": str(root)}, op, documents, connector_id="disk"))


def listen_operation(**operation: Any) -> dict[str, Any]:
    """A Listen on ``in`` that takes files at first sight and looks often (tests)."""
    return {"action": "listen", "folder": "in", "settle_time": 0, "poll_interval": 0.05, "retry_delay": 0,
            **operation}


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=env, **kwargs)


def files(folder: Path) -> list[str]:
    """The names in ``folder`` that a Listen could take (no dot-names), sorted."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))
