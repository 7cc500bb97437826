"""docs/sdk.md's tutorial is the disk connector's code (examples/disk-connector/), and followed from an
empty folder it ends with a connector that passes the acceptance kit.

How the tutorial marks a file: the line right before a fenced code block is an HTML comment naming
the file by its path in this repository (invisible on a rendered page):

- ``<!-- file: PATH -->``: the block is the whole file, or one of its parts. All the blocks marked
  with one PATH, joined in the order the tutorial shows them, are exactly the file. No line numbers
  and no markers in the source: editing a file means editing the block that shows that part of it.
- ``<!-- file: PATH, excerpt -->``: the block is some whole lines of the file, shown for illustration
  (the start of the example's README, a property of the MQTT connector's schema); the file is not
  shown whole.

Every file of the example's package, its manifest, its schemas, its pyproject.toml and its acceptance
test must be shown whole (in one block or in parts), so that a file cannot be added or changed
without the tutorial. The slow tests write every file the tutorial shows of the example into an
empty folder (from the blocks only), install it in a new virtual environment beside this checkout,
run the tutorial's commands and the acceptance kit there.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from freshinstall import clean_env as _clean_env, pip_install

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "sdk.md"
EXAMPLE = "examples/disk-connector"

MARKER = re.compile(r"<!-- file: (?P<path>[^\s,]+)(?P<excerpt>, excerpt)? -->")
FENCE = re.compile(r"(?P<fence>`{3,}|~{3,})[^`]*")

#: The kit's tests that are skipped for the disk connector by design, and why.
KIT_SKIPS = {
    "test_secrets_never_show_in_the_python_api": "the connection schema declares no secret (writeOnly) field",
    "test_secrets_never_show_on_the_command_line": "the connection schema declares no secret (writeOnly) field",
}


@dataclass(frozen=True)
class Shown:
    path: str  # relative to the repository
    excerpt: bool
    line: int  # of the marker in the tutorial
    text: str  # the block's lines, each ending with a newline


def shown_blocks(markdown: str) -> list[Shown]:
    """The marked blocks of a tutorial, in order; AssertionError for a marker without its block."""
    lines = markdown.split("\n")
    blocks = []
    for number, line in enumerate(lines):
        marker = MARKER.fullmatch(line.strip())
        if marker is None:
            continue
        opening = FENCE.fullmatch(lines[number + 1]) if number + 1 < len(lines) else None
        assert opening is not None, f"docs/sdk.md:{number + 1}: the file marker is not right before a code block"
        fence = opening["fence"]
        end = next((i for i in range(number + 2, len(lines))
                    if lines[i].startswith(fence[0] * len(fence)) and not lines[i].strip(fence[0]).strip()), None)
        assert end is not None, f"docs/sdk.md:{number + 2}: the code block is not closed"
        body = lines[number + 2:end]
        blocks.append(Shown(marker["path"], bool(marker["excerpt"]), number + 1, "".join(f"{b}\n" for b in body)))
    return blocks


def joined(blocks: list[Shown]) -> dict[str, str]:
    """Each file the blocks show, as a reader who writes them down in order gets it."""
    files: dict[str, str] = {}
    for block in blocks:
        files[block.path] = files.get(block.path, "") + block.text
    return files


def must_be_shown() -> set[str]:
    """The example's files the tutorial shows whole: its package, manifest, schemas, project, kit test."""
    root = ROOT / EXAMPLE
    files = {p for p in (root / "disk_connector").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    files |= {root / "manifest.json", root / "pyproject.toml", root / "tests" / "test_acceptance.py"}
    files |= set((root / "schemas").glob("*"))
    return {p.relative_to(ROOT).as_posix() for p in files}


@pytest.fixture(scope="module")
def blocks() -> list[Shown]:
    found = shown_blocks(TUTORIAL.read_text(encoding="utf-8"))
    assert found, "docs/sdk.md marks no code block with its file"
    return found


# -- the parser ----------------------------------------------------------------------------------

def test_the_parser_reads_whole_files_parts_and_excerpts() -> None:
    text = ("intro\n<!-- file: a/b.py -->\n```python\nx = 1\n\n```\n<!-- file: a/b.py -->\n````python\n```\n````\n"
            "<!-- file: c.md, excerpt -->\n```\n# C\n```\n```python\nnot marked\n```\n")
    assert shown_blocks(text) == [Shown("a/b.py", False, 2, "x = 1\n\n"), Shown("a/b.py", False, 7, "```\n"),
                                  Shown("c.md", True, 11, "# C\n")]
    assert joined(shown_blocks(text)) == {"a/b.py": "x = 1\n\n```\n", "c.md": "# C\n"}


@pytest.mark.parametrize("text", ["<!-- file: a.py -->\n\n```python\nx\n```\n", "<!-- file: a.py -->\n```\nx\n"])
def test_the_parser_refuses_a_marker_without_its_block(text: str) -> None:
    with pytest.raises(AssertionError):
        shown_blocks(text)


# -- the tutorial is the example's code ---------------------------------------------------------------

def test_every_block_shows_its_file_exactly(blocks: list[Shown]) -> None:
    whole = [b for b in blocks if not b.excerpt]
    for path, text in joined(whole).items():
        assert (ROOT / path).is_file(), f"docs/sdk.md shows {path}, which does not exist"
        actual = (ROOT / path).read_text(encoding="utf-8")
        if text != actual:
            shown, real = text.splitlines(), actual.splitlines()
            line = next((i for i, (a, b) in enumerate(zip(shown, real)) if a != b), min(len(shown), len(real)))
            lines = [b.line for b in whole if b.path == path]
            pytest.fail(f"docs/sdk.md's blocks of {path} (markers at lines {lines}), joined, differ from the file "
                        f"at its line {line + 1}: {shown[line] if line < len(shown) else '(end)'!r} vs "
                        f"{real[line] if line < len(real) else '(end)'!r}")


def test_every_excerpt_is_lines_of_its_file(blocks: list[Shown]) -> None:
    excerpts = [b for b in blocks if b.excerpt]
    assert excerpts
    for block in excerpts:
        actual = (ROOT / block.path).read_text(encoding="utf-8")
        assert actual.startswith(block.text) or f"\n{block.text}" in actual, \
            f"docs/sdk.md:{block.line}: the excerpt is not lines of {block.path}"
        assert block.path not in {b.path for b in blocks if not b.excerpt}, \
            f"docs/sdk.md:{block.line}: {block.path} is shown whole elsewhere; show it in parts, not excerpts"


def test_every_file_of_the_example_is_shown_whole(blocks: list[Shown]) -> None:
    shown = {b.path for b in blocks if not b.excerpt}
    missing = sorted(must_be_shown() - shown)
    assert not missing, f"docs/sdk.md does not show {missing}: add them to the tutorial (the whole file, or parts)"
    assert all(path.startswith(f"{EXAMPLE}/") for path in shown), "only the example's files are shown whole"


# -- the tutorial followed from an empty folder ---------------------------------------------------

def write_example(blocks: list[Shown], folder: Path) -> list[str]:
    """Write every file the tutorial shows of the example into ``folder``; their paths there."""
    written = []
    for path, text in joined(blocks).items():
        if path.startswith(f"{EXAMPLE}/"):
            relative = path[len(EXAMPLE) + 1:]
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text, encoding="utf-8")
            written.append(relative)
    return sorted(written)


@pytest.fixture(scope="module")
def followed(blocks: list[Shown], fresh_install: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A new virtual environment with this checkout and the tutorial's connector installed (not
    editable), and the connector's folder: ``(venv's bin, folder)``."""
    folder = tmp_path_factory.mktemp("tutorial") / "disk-connector"
    folder.mkdir()
    assert "pyproject.toml" in write_example(blocks, folder)
    pip_install(fresh_install, str(folder))
    return fresh_install, folder


def section(markdown: str, heading: str) -> str:
    start = markdown.index(f"\n### {heading}\n")
    return markdown[start:markdown.index("\n### ", start + 1)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_tutorials_commands_run_the_connector_it_built(followed: tuple[Path, Path], tmp_path: Path) -> None:
    bin_dir, _ = followed
    env = _clean_env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    listed = subprocess.run([str(bin_dir / "mqtt-connector"), "connectors"], capture_output=True, text=True,
                            timeout=60, env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["disk", "mqtt"]
    run = section(TUTORIAL.read_text(encoding="utf-8"), "10. Run it")
    script = "".join(re.findall(r"\n```sh\n(.*?)```", run, re.DOTALL))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, f"the tutorial's commands failed:\n{done.stdout}\n{done.stderr}"
    output = (done.stdout + done.stderr).splitlines()
    for said in re.findall(r"^# (sent .*)$", script, re.MULTILINE):
        assert said in output, f"the tutorial says {said!r}; the commands said:\n{done.stdout}\n{done.stderr}"
    assert sorted(p.name for p in (tmp_path / "exchange" / "done").iterdir()) == [
        "again.json", "order-0000.json", "order-0001.json"]
    assert not [p for p in (tmp_path / "exchange" / "in").iterdir() if not p.name.startswith(".")]
    assert f"ok: the directory '{tmp_path / 'exchange'}' is readable and writable" in output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_connector_the_tutorial_built_passes_the_kit(followed: tuple[Path, Path]) -> None:
    bin_dir, folder = followed
    report = folder / "report.xml"
    done = subprocess.run([str(bin_dir / "pytest"), "-p", "no:cacheprovider", "-rs", f"--junitxml={report}",
                           "tests/test_acceptance.py"], capture_output=True, text=True, timeout=240,
                          env=_clean_env(), cwd=folder)
    assert done.returncode == 0, f"the kit failed on the tutorial's connector:\n{done.stdout}\n{done.stderr}"
    outcomes: dict[str, tuple[str, str]] = {}  # test name -> (outcome, message)
    for case in ET.parse(report).getroot().iter("testcase"):
        marks = [child for child in case if child.tag in ("skipped", "failure", "error")]
        outcomes[case.get("name", "")] = (marks[0].tag, marks[0].get("message", "")) if marks else ("passed", "")
    assert not [name for name, (outcome, _) in outcomes.items() if outcome in ("failure", "error")]
    skipped = {name: message.removeprefix("Skipped: ") for name, (outcome, message) in outcomes.items()
               if outcome == "skipped"}
    assert skipped == KIT_SKIPS
    passed = [name for name, (outcome, _) in outcomes.items() if outcome == "passed"]
    kit = subprocess.run([str(bin_dir / "python"), "-c", "import connector.acceptance as a; print(a.__file__)"],
                         capture_output=True, text=True, timeout=60, env=_clean_env(), cwd=folder.parent)
    assert Path(kit.stdout.strip()).is_relative_to(bin_dir.parent), "the kit ran from elsewhere than the new venv"
    said = re.search(r"# (\d+) passed, (\d+) skipped", section(TUTORIAL.read_text(encoding="utf-8"), "12. Run the kit"))
    assert said is not None, "the tutorial says how many of the kit's tests pass and are skipped"
    assert (len(passed), len(skipped)) == (int(said[1]), int(said[2])), done.stdout
