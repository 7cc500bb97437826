"""docs/troubleshooting.md quotes the messages the command line prints: every `error: …` it shows is
still made by the code (the connector's, the harness's, the SDK's, the schemas' error messages, or
argparse's for usage errors), so that the page cannot keep a message the program no longer prints.
Its TLS recipe and its examples run in tests/test_readme.py like every example of the documents."""

from __future__ import annotations

import argparse
import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "troubleshooting.md"
QUOTED = re.compile(r"`(error: [^`]+)`")
#: What stands for a varying part in a quoted message.
VARIES = "…"


def _templates(source: str) -> Iterator[str]:
    """Every text literal of a module, an f-string's values as VARIES (Python joins the parts of an
    implicitly concatenated literal into one node)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            yield "".join(v.value if isinstance(v, ast.Constant) else VARIES for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def _schema_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _schema_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _schema_strings(item)
    elif isinstance(value, str):
        yield value


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    sources = [*sorted((ROOT / "connector").rglob("*.py")), Path(argparse.__file__)]
    texts = [t for path in sources for t in _templates(path.read_text(encoding="utf-8"))]
    for path in sorted((ROOT / "schemas").glob("*.json")):
        texts += _schema_strings(json.loads(path.read_text(encoding="utf-8")))
    return texts


def fragments(message: str) -> list[str]:
    """The fixed parts of a quoted message: split where it varies and where the program joins a
    prefix to a message (``connection port: must be …``)."""
    parts = [p for piece in message.removeprefix("error: ").split(VARIES) for p in piece.split(": ")]
    return [p.strip() for p in parts if p.strip()]


def quoted() -> list[str]:
    return QUOTED.findall(PAGE.read_text(encoding="utf-8"))


def test_the_page_quotes_many_messages() -> None:
    assert len(quoted()) >= 80


@pytest.mark.parametrize("message", quoted())
def test_each_quoted_message_is_made_by_the_code(message: str, corpus: list[str]) -> None:
    parts = fragments(message)
    assert any(len(p) >= 10 for p in parts), f"{message!r} quotes too little to be checked"
    missing = [p for p in parts if not any(p in text for text in corpus)]
    assert missing == [], f"docs/troubleshooting.md quotes {message!r}, but no code makes {missing}"


def test_a_changed_message_is_found(corpus: list[str]) -> None:
    made = "error: connection refused by …: is the broker running, and is the port right?"
    changed = "error: connection refused by …: is the broker up?"
    assert all(any(p in text for text in corpus) for p in fragments(made))
    assert not all(any(p in text for text in corpus) for p in fragments(changed))
