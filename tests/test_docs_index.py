"""docs/index.md links every page of docs/ (and the README of the project and of the disk connector),
each link to a file that exists, each with a line saying what it answers."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDEX = ROOT / "docs" / "index.md"
LINK = re.compile(r"\[[^\]]+\]\(([^)#]+)(?:#[^)]*)?\)")


def _linked() -> set[Path]:
    return {(INDEX.parent / target).resolve() for target in LINK.findall(INDEX.read_text(encoding="utf-8"))
            if "://" not in target}


def test_every_page_of_docs_is_linked_from_the_index() -> None:
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md")} - {INDEX.resolve()}
    missing = sorted(p.name for p in pages - _linked())
    assert missing == [], f"docs/index.md does not link {missing}: add a line saying what each answers"


def test_the_index_links_the_readmes() -> None:
    assert {(ROOT / "README.md").resolve(), (ROOT / "examples/disk-connector/README.md").resolve()} <= _linked()


def test_every_link_of_the_index_leads_to_a_file() -> None:
    assert sorted(str(p.relative_to(ROOT)) for p in _linked() if not p.is_file()) == []


def test_each_page_has_a_line_saying_what_it_answers() -> None:
    items = [line for line in INDEX.read_text(encoding="utf-8").splitlines() if line.startswith("- [")]
    assert items and all(re.match(r"- \[[^\]]+\]\([^)]+\): \w", line) for line in items), items
