"""Tiny file-drop connectors for the acceptance kit's own tests (tests/test_acceptance_kit.py):
one that keeps every promise, and one per broken promise. A message is a file ``*.msg`` in a
box (a folder) of the connection's folder; names sort in the order the files were written.

They are installed like any third-party connector, through a ``.dist-info`` folder with their
entry points, so that the kit's command-line runs find them too.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from connector.acceptance import Endpoint
from connector.sdk import hookimpl
from connector.sdk.documents import Document, Result, Status
from connector.sdk.errors import ConnectError
from connector.sdk.listener import Listener
from connector.sdk.manifest import Manifest
from connector.sdk.retry import Endpoint as RetryEndpoint, Retries

CONNECTION = {
    "type": "object", "x-order": ["folder", "token"], "required": ["folder"], "additionalProperties": False,
    "properties": {
        "folder": {"type": "string", "minLength": 1, "title": "Folder", "description": "Where the boxes are."},
        "token": {"type": "string", "writeOnly": True, "default": "", "title": "Token",
                  "description": "A secret the fake never needs."},
    },
}
OPERATION = {
    "type": "object", "required": ["action", "box"], "additionalProperties": False,
    "x-order": ["action", "box", "max_attempts", "retry_delay", "dead_letter_topic"],
    "properties": {
        "action": {"title": "Action", "description": "Send or Listen.",
                   "oneOf": [{"const": "send", "title": "Send"}, {"const": "listen", "title": "Listen"}]},
        "box": {"type": "string", "minLength": 1, "title": "Box", "description": "The folder of the messages."},
        "max_attempts": {"type": "integer", "minimum": 1, "default": 3, "x-actions": ["listen"],
                         "title": "Attempts", "description": "How often a refused message is handed over."},
        "retry_delay": {"type": "number", "minimum": 0, "default": 1, "x-actions": ["listen"],
                        "title": "Retry Delay", "description": "Seconds before the second attempt."},
        "dead_letter_topic": {"type": ["string", "null"], "default": None, "x-actions": ["listen"],
                              "title": "Dead Letter Box", "description": "Where a message refused every attempt goes."},
    },
}
_ACTION = {"title": "-", "description": "-", "reads": [], "writes": []}
_sequence = itertools.count()


def drop(box: Path, payload: bytes) -> None:
    """Write a message into ``box``, whole (a temporary name, then renamed)."""
    box.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{next(_sequence):06d}-{uuid.uuid4().hex[:6]}"
    (box / f"{name}.tmp").write_bytes(payload)
    (box / f"{name}.tmp").rename(box / f"{name}.msg")


def messages(box: Path) -> list[Path]:
    return sorted(box.glob("*.msg"))


class Folder(contextlib.closing):  # type: ignore[type-arg]
    """The open connection: a folder that exists; a context manager that closes it."""

    def __init__(self, connection: Mapping[str, Any]) -> None:
        super().__init__(self)
        self.root = Path(connection["folder"])
        if not self.root.is_dir():
            raise ConnectError(f"there is no folder {str(self.root)!r}")

    def close(self) -> None:
        pass


class Fake:
    """A connector keeping every promise; a subclass breaks one."""

    def __init__(self, connector_id: str) -> None:
        self.id = connector_id

    @hookimpl
    def connector_manifest(self) -> Manifest:
        raw = {"id": self.id, "name": f"Fake {self.id}", "version": "1.0", "description": "A test double.",
               "connection_schema": "connection.json", "operation_schema": "operation.json",
               "actions": {"send": _ACTION, "listen": _ACTION},
               "document_properties": {"name": {"type": "string", "title": "Name", "description": "The file."}}}
        return Manifest(id=self.id, name=raw["name"], version="1.0", description=raw["description"],
                        actions=raw["actions"], document_properties=raw["document_properties"],
                        connection_schema=CONNECTION, operation_schema=OPERATION, raw=raw)

    @hookimpl
    def connector_open(self, connection: Mapping[str, Any]) -> Folder:
        return Folder(connection)

    @hookimpl
    def connector_check(self, connection: Mapping[str, Any]) -> str:
        with Folder(connection) as folder:
            return f"the folder {str(folder.root)!r}"

    @hookimpl
    def connector_send(self, connection: Folder, operation: Mapping[str, Any],
                       documents: Iterable[Document]) -> Iterator[Result]:
        box = connection.root / operation["box"]
        return (self.deliver(box, index, document) for index, document in enumerate(documents))

    def deliver(self, box: Path, index: int, document: Document) -> Result:
        drop(box, document.payload)
        return Result(index, Status.SUCCESS)

    @hookimpl
    def connector_listen(self, connection: Folder, operation: Mapping[str, Any], listener: Listener) -> int:
        box = connection.root / operation["box"]
        box.mkdir(parents=True, exist_ok=True)
        endpoint = RetryEndpoint(acknowledge=Path.unlink, publish_dead_letter=lambda where, letter, message: drop(
            connection.root / where, letter))
        retries = Retries(operation, listener, endpoint)
        listener.listening(f"the box {operation['box']!r}")
        accepted = 0
        while not self.stopped(listener):
            for path in messages(box):
                if listener.stopping.is_set():
                    break
                accepted += self.hand_over(retries, listener, path)
            time.sleep(0.02)
        return accepted

    def stopped(self, listener: Listener) -> bool:
        return listener.stopping.is_set()

    def hand_over(self, retries: Retries[Path], listener: Listener, path: Path) -> int:
        return retries.deliver([path], [Document(path.read_bytes(), {"name": path.name})])


class Leaky(Fake):
    """Says the secret when it cannot reach its folder."""

    @hookimpl
    def connector_check(self, connection: Mapping[str, Any]) -> str:
        if not Path(connection["folder"]).is_dir():
            raise ConnectError(f"no folder {connection['folder']!r} for the token {connection['token']!r}")
        return "ok"


class Short(Fake):
    """Yields no Result for the last document."""

    @hookimpl
    def connector_send(self, connection: Folder, operation: Mapping[str, Any],
                       documents: Iterable[Document]) -> Iterator[Result]:
        box = connection.root / operation["box"]
        results = (self.deliver(box, index, document) for index, document in enumerate(documents))
        pending = next(results, None)
        for result in results:
            yield pending
            pending = result


class AcknowledgesRefused(Fake):
    """Removes a message whatever the process said."""

    def hand_over(self, retries: Retries[Path], listener: Listener, path: Path) -> int:
        accepted = listener.submit(Document(path.read_bytes(), {"name": path.name}))
        path.unlink()
        return int(accepted)


class Eager(Fake):
    """Reads its whole input before it sends anything."""

    @hookimpl
    def connector_send(self, connection: Folder, operation: Mapping[str, Any],
                       documents: Iterable[Document]) -> Iterator[Result]:
        return super().connector_send(connection, operation, list(documents))


class Deaf(Fake):
    """Ends its Listen 4 s after it was asked to."""

    def stopped(self, listener: Listener) -> bool:
        if not listener.stopping.is_set():
            self.asked: float | None = None
            return False
        self.asked = getattr(self, "asked", None) or time.monotonic()
        return time.monotonic() - self.asked > 4


CONNECTORS = {"good": Fake, "leaky": Leaky, "short": Short, "acknowledges-refused": AcknowledgesRefused,
              "eager": Eager, "deaf": Deaf}
good, leaky, short, acknowledges_refused, eager, deaf = (kind(cid) for cid, kind in CONNECTORS.items())


def endpoint(folder: Path) -> Endpoint:
    """A fresh place for one test of the kit."""
    folder.mkdir(parents=True)
    return Endpoint(connection={"folder": str(folder)},
                    send_operation={"action": "send", "box": "sent"},
                    listen_operation={"action": "listen", "box": "listened"},
                    put=lambda payloads: _put(folder / "listened", payloads),
                    arrived=lambda count, timeout: _arrived(folder / "sent", count, timeout),
                    unreachable={"folder": str(folder / "missing")},
                    dead_letter_topic="sent")


def _put(box: Path, payloads: list[bytes]) -> None:
    for payload in payloads:
        drop(box, payload)


def _arrived(box: Path, count: int, timeout: float) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while len(messages(box)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return [path.read_bytes() for path in messages(box)]
