"""A second connector for tests: a file drop (id "drop"), written from docs/sdk.md.

Its operation schema has no ``action`` property (the manifest's actions are the choices), it
declares an action the harness does not run (``archive``), and a document property that carries
bytes (``fingerprint``). Send "writes" each document into memory; Listen hands over ``FILES``.
Its hooks take no connector id: it is registered on its own (tests) or as an installed plugin."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from connector.sdk import hookimpl
from connector.sdk.documents import Document, Result, Status
from connector.sdk.listener import Listener
from connector.sdk.manifest import Manifest

ID = "drop"

_ACTION = {"title": "-", "description": "-", "reads": [], "writes": []}
RAW = {
    "id": ID, "name": "File drop", "version": "1", "description": "Files in a folder.",
    "connection_schema": "-", "operation_schema": "-",
    "actions": {"send": _ACTION, "listen": _ACTION, "archive": _ACTION},
    "document_properties": {
        "name": {"type": "string", "title": "Name", "description": "The file's name."},
        "fingerprint": {"type": "string", "contentEncoding": "base64", "title": "Fingerprint",
                        "description": "The file's digest: bytes (text when UTF-8, else base64)."},
    },
}
CONNECTION_SCHEMA = {"type": "object", "properties": {"folder": {"type": "string", "default": "/drop"}},
                     "additionalProperties": False}
OPERATION_SCHEMA = {
    "type": "object",
    "properties": {
        "pattern": {"type": "string", "default": "*"},
        "keep": {"type": "boolean", "default": False, "x-actions": ["listen"]},
    },
    "additionalProperties": False,
}
#: What a Listen finds in the folder.
FILES = [Document(b"first", {"name": "a.txt", "fingerprint": b"\x9f\x00\x01"}),
         Document(b"second", {"name": "b.txt", "fingerprint": b"plain"})]
#: What Sends wrote.
WRITTEN: list[Document] = []


class Folder:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    def close(self) -> None:
        pass

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@hookimpl
def connector_manifest() -> Manifest:
    return Manifest(id=ID, name=RAW["name"], version="1", description=RAW["description"], actions=RAW["actions"],
                    document_properties=RAW["document_properties"], connection_schema=CONNECTION_SCHEMA,
                    operation_schema=OPERATION_SCHEMA, raw=RAW)


@hookimpl
def connector_validate(connection: Mapping[str, Any], operation: Mapping[str, Any] | None) -> list[str]:
    return []


@hookimpl
def connector_open(connection: Mapping[str, Any]) -> Folder:
    return Folder(connection)


@hookimpl
def connector_send(connection: Folder, operation: Mapping[str, Any], documents: Iterable[Document]) -> Iterator[Result]:
    def results() -> Iterator[Result]:
        for index, document in enumerate(documents):
            WRITTEN.append(document)
            yield Result(index, Status.SUCCESS)
    return results()


@hookimpl
def connector_listen(connection: Folder, operation: Mapping[str, Any], listener: Listener) -> int:
    return listener.submit_batch(list(FILES))
