"""The shape of the code: the harness and the console name no connector (``grep -rni mqtt
connector/harness connector/console`` finds nothing; the SDK has MQTT words only in docstring
examples, ``#:`` ones too), and the modules and functions of the harness, the SDK, the Singer
adapter and the console stay small."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The longest module and function, in lines (the project's rule, docs: GUIDE.md).
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 60
PACKAGES = ("connector/harness", "connector/sdk", "connector/singer", "connector/console")


def _files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.mark.parametrize("package", ["connector/harness", "connector/console"])
def test_the_harness_and_the_console_name_no_connector(package: str) -> None:
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in _files(package)
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if re.search("mqtt", line, re.IGNORECASE)]
    assert found == []


def _docstring_lines(source: str) -> set[int]:
    """The lines of every docstring (a module's, a class's, a function's)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def _doc_comment_lines(source: str) -> set[int]:
    """The lines of ``#:`` comments: an attribute's docstring (Sphinx's autodoc reads them so)."""
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT and tok.string.startswith("#:")}


def test_the_sdk_names_mqtt_only_in_docstring_examples() -> None:
    found = []
    for path in _files("connector/sdk"):
        text = path.read_text(encoding="utf-8")
        allowed = _docstring_lines(text) | _doc_comment_lines(text) if path.suffix == ".py" else set()
        found += [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                  for number, line in enumerate(text.splitlines(), 1)
                  if re.search("mqtt", line, re.IGNORECASE) and number not in allowed]
    assert found == []


def test_the_docstring_scanner_sees_docstrings_and_not_code() -> None:
    source = 'def f():\n    """An example:\n\n    MQTT\n    """\n    x = "MQTT"  # MQTT\n    #: MQTT\n    y = 1\n'
    assert _docstring_lines(source) == {2, 3, 4, 5}
    assert _doc_comment_lines(source) == {7}


def _too_long(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    problems = []
    if len(source.splitlines()) > MAX_MODULE_LINES:
        problems.append(f"{path.relative_to(ROOT)}: {len(source.splitlines())} lines")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}() {length} lines")
    return problems


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_and_functions_are_small(package: str) -> None:
    problems = [p for path in _files(package) if path.suffix == ".py" for p in _too_long(path)]
    assert problems == [], f"longer than {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function"


def test_the_singer_adapter_imports_no_connector_and_nothing_imports_it() -> None:
    """connector/singer works for any installed connector (found through the SDK), and the SDK and
    the harness run without it (it is an optional extra)."""
    imports = re.compile(r"^\s*(from|import)\s+(connector\.mqtt|disk_connector)\b", re.MULTILINE)
    found = [str(path.relative_to(ROOT)) for path in _files("connector/singer") if path.suffix == ".py"
             and imports.search(path.read_text(encoding="utf-8"))]
    assert found == []
    singer = re.compile(r"^\s*(from|import)\s+connector\.singer\b", re.MULTILINE)
    found = [str(path.relative_to(ROOT)) for package in ("connector/harness", "connector/sdk", "connector/mqtt")
             for path in _files(package) if path.suffix == ".py" and singer.search(path.read_text(encoding="utf-8"))]
    assert found == []
