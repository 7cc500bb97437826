"""What the kit's tests share: the command line as a user runs it, waits with a deadline, and
configurations built from the connector's own schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from connector.sdk.errors import ConfigError
from connector.sdk.manifest import Manifest

T = TypeVar("T")

#: Values tried in turn to make a field invalid: the first its schema refuses is used.
WRONG_VALUES: tuple[Any, ...] = ("kit: not a valid value", 12345, True, [], {"kit": 1}, None)
#: The command line a user runs (``--connector ID`` is added to every command).
COMMAND = (sys.executable, "-m", "connector")


@dataclass
class Ran:
    """A finished command: its exit code and what it wrote."""

    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class CommandLine:
    """Runs ``python -m connector COMMAND ... --connector ID`` in a subprocess, as a user would."""

    def __init__(self, connector_id: str, folder: Path) -> None:
        self.connector_id = connector_id
        self.folder = folder

    def file(self, name: str, content: Any) -> str:
        """A JSON file in the test's folder, readable by its owner only (it may hold a secret)."""
        path = self.folder / name
        path.write_text(json.dumps(content), encoding="utf-8")
        path.chmod(0o600)
        return str(path)

    def run(self, command: str, *args: str, input: bytes = b"", timeout: float = 60) -> Ran:
        argv = [*COMMAND, command, *args, "--connector", self.connector_id]
        try:
            done = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, cwd=self.folder,
                                  env=dict(os.environ))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"'{' '.join(argv[2:])}' did not end within {timeout:g} s") from None
        return Ran(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))


def within(seconds: float, what: str, work: Callable[[], T]) -> T:
    """``work()``'s result, or an AssertionError naming ``what`` when it takes longer than
    ``seconds`` (it goes on in a daemon thread: a connector that hangs does not hang the kit)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="acceptance-kit", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(f"{what} did not end within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    return dict(schema.get("properties", {})) if isinstance(schema, Mapping) else {}


def _refused(schema: Mapping[str, Any], name: str, value: Any) -> bool:
    """Whether the property ``name`` of ``schema`` alone refuses ``value``."""
    from jsonschema import Draft202012Validator

    alone = {"properties": {name: schema["properties"][name]}, "$defs": schema.get("$defs", {})}
    return not Draft202012Validator(alone).is_valid({name: value})


def broken(schema: Mapping[str, Any], config: Mapping[str, Any], action: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """``config`` with every field its schema constrains (those of ``action``) given a value the
    field refuses; returns it and the names of the broken fields."""
    out, names = dict(config), []
    for name, prop in properties(schema).items():
        if name == "action" or not isinstance(prop, Mapping):
            continue
        if action is not None and action not in prop.get("x-actions", (action,)):
            continue
        wrong = next((v for v in WRONG_VALUES if _refused(schema, name, v)), _NONE)
        if wrong is not _NONE:
            out[name] = wrong
            names.append(name)
    return out, names


_NONE = object()


def tuned(manifest: Manifest, operation: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """``operation`` with each of ``fields`` the operation schema declares set to its value, where
    the schema accepts it (None: the field's own "none", else left out)."""
    out = dict(operation)
    declared = properties(manifest.operation_schema)
    for name, value in fields.items():
        if name not in declared:
            continue
        trial = {**out, name: value}
        if value is None and not _valid(manifest, trial):
            trial.pop(name)
        if _valid(manifest, trial):
            out = trial
    return out


def _valid(manifest: Manifest, operation: Mapping[str, Any]) -> bool:
    try:
        manifest.validate_operation(operation)
    except ConfigError:
        return False
    return True


def secret_values(manifest: Manifest) -> dict[str, str]:
    """A unique value for every secret (``writeOnly``) field of the connection schema."""
    return {name: f"kit-secret-{uuid.uuid4().hex}" for name, prop in properties(manifest.connection_schema).items()
            if isinstance(prop, Mapping) and prop.get("writeOnly")}


def unique(what: str) -> bytes:
    """A payload no other test sends."""
    return f"{what} {uuid.uuid4().hex}".encode()
