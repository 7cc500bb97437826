"""The acceptance kit fails a connector that breaks a promise, and only the test of that promise.

The kit runs, in a pytest subprocess, on tiny file-drop connectors (tests/acceptance_fakes.py)
installed through their entry points like third-party connectors: one keeps every promise, each
other breaks one (says a secret in an error, yields fewer Results than documents, acknowledges a
refused document, reads its input eagerly, ignores being asked to stop).
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from acceptance_fakes import CONNECTORS
from connector.acceptance import ConnectorAcceptance

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "connector" / "acceptance"
KIT_TESTS = sorted(name for name in dir(ConnectorAcceptance) if name.startswith("test_"))

#: For each fake connector: the kit tests that must fail, each with a phrase of its failure.
FAILS = {
    "good": {},
    "leaky": {"test_secrets_never_show_in_the_python_api": "token in"},
    "short": {"test_send_yields_one_result_per_document_in_order": "== [0, 1, 2, 3, 4]"},
    "acknowledges-refused": {"test_listen_hands_a_refused_document_over_again": "AssertionError",
                             "test_listen_never_acknowledges_a_refused_document": "AssertionError",
                             "test_listen_dead_letters_a_document_refused_every_attempt": "AssertionError"},
    "eager": {"test_send_reads_its_input_lazily": "documents to yield 5"},
    "deaf": {"test_listen_stops_within_a_second": "to stop"},
}

TEST_MODULE = '''
import pytest

import acceptance_fakes
from connector.acceptance import ConnectorAcceptance


def kit_for(connector_id):
    class Kit(ConnectorAcceptance):
        @pytest.fixture
        def endpoint(self, tmp_path):
            return acceptance_fakes.endpoint(tmp_path / "place")

    Kit.connector_id = connector_id
    return Kit

{classes}
'''


def class_name(connector_id: str) -> str:
    return "Test" + "".join(part.title() for part in connector_id.split("-"))


@pytest.fixture(scope="module")
def kit_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[str, str]]:
    """(class, test) -> (PASSED/FAILURE/SKIPPED/ERROR, the failure's message and traceback) of one pytest run
    of the kit on every fake connector."""
    folder = tmp_path_factory.mktemp("kit")
    shutil.copy(Path(__file__).with_name("acceptance_fakes.py"), folder)
    info = folder / "kit_fakes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kit-fakes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[connector_sdk.connectors]\n" + "".join(
        f"{cid} = acceptance_fakes:{cid.replace('-', '_')}\n" for cid in CONNECTORS))
    (folder / "test_kit.py").write_text(TEST_MODULE.format(classes="\n".join(
        f"{class_name(cid)} = kit_for({cid!r})" for cid in CONNECTORS)))
    env = {**os.environ, "PYTHONPATH": str(folder)}
    runs = [subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--timeout", "300",
                              f"--junitxml={cid}.xml", f"test_kit.py::{class_name(cid)}"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder, env=env)
            for cid in CONNECTORS]  # at once: most of their time is spent waiting
    output = "".join(run.communicate(timeout=900)[0] for run in runs)
    outcomes: dict[tuple[str, str], tuple[str, str]] = {}
    for cid in CONNECTORS:
        report = folder / f"{cid}.xml"
        assert report.exists(), output
        for case in ElementTree.parse(report).iter("testcase"):
            problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
            outcome = "PASSED" if problem is None else problem.tag.upper()
            why = "" if problem is None else f"{problem.get('message', '')}\n{problem.text or ''}"
            outcomes[case.get("classname", "").split(".")[-1], case.get("name", "")] = (outcome, why)
    return outcomes


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("connector_id", list(FAILS))
def test_the_kit_fails_exactly_the_broken_promise(kit_outcomes: dict, connector_id: str) -> None:
    expected = FAILS[connector_id]
    seen = {test: kit_outcomes.get((class_name(connector_id), test), ("not run", "")) for test in KIT_TESTS}
    failed = {test for test, (outcome, _) in seen.items() if outcome != "PASSED"}
    assert failed == set(expected), seen
    for test, phrase in expected.items():
        outcome, why = seen[test]
        assert outcome == "FAILURE" and phrase in why, (test, seen[test])


def test_every_kit_test_states_its_promise() -> None:
    assert len(KIT_TESTS) >= 14
    for name in KIT_TESTS:
        doc = getattr(ConnectorAcceptance, name).__doc__ or ""
        assert len(doc.split()) >= 8, f"{name} does not say what it promises"


def test_the_kit_is_connector_neutral() -> None:
    for path in sorted(KIT.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "mqtt" not in text.lower(), f"{path.name} names a connector"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("connector.mqtt"), path.name


def test_the_pytest_plugin_is_registered_and_imports_nothing() -> None:
    plugins = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert plugins.get("connector_acceptance") == "connector.acceptance.plugin"
    code = ("import sys; import connector.acceptance.plugin; "
            "print(sorted(m for m in sys.modules if m.startswith(('connector.', 'pluggy', 'jsonschema'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['connector.acceptance', 'connector.acceptance.plugin']"


def test_a_subclass_without_an_endpoint_says_what_is_missing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_missing="""
        from connector.acceptance import ConnectorAcceptance

        class TestNoEndpoint(ConnectorAcceptance):
            connector_id = "mqtt"

            def test_only_this(self, endpoint):
                pass
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "only_this")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TestNoEndpoint must provide the 'endpoint' fixture*"])
