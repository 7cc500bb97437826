"""docs/architecture.svg is what docs/architecture.py draws now, and docs/architecture.md shows it."""

from __future__ import annotations

import runpy
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_picture_is_what_its_source_draws() -> None:
    drawn = runpy.run_path(str(ROOT / "docs" / "architecture.py"))["draw"]()
    assert (ROOT / "docs" / "architecture.svg").read_text(encoding="utf-8") == drawn, \
        "docs/architecture.svg is out of date: run `python docs/architecture.py` and commit it"


def test_the_picture_is_svg_with_the_parts_and_the_flow() -> None:
    svg = ElementTree.parse(ROOT / "docs" / "architecture.svg").getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    for part in ("Process", "Runtime", "Plugin manager", "Connector", "Broker"):
        assert part in texts
    assert "6  PUBACK / PUBREC: only now" in texts
    assert "](architecture.svg)" in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
