"""The benchmark's report (bench/run.py): the issue's targets computed from a run, and a quick run
that leaves the published results alone. The benchmark itself runs in CI as ``python -m bench --quick``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench import run, scale
from brokers import find_program


def _row(case: str, surface: str, ratio: float, c_ratio: float | None = None) -> dict:
    row = {"case": case, "surface": surface, "qos": 1, "count": 1000, "size": 200, "target": case in run.TARGETS,
           "targets": run.TARGETS.get(case, {}), "connector_msgs": 3000.0, "raw_msgs": 2000.0,
           "connector_spread": [2900.0, 3100.0], "raw_spread": [1900.0, 2100.0],
           "ratio": ratio, "ratio_spread": [ratio - 0.1, ratio + 0.1]}
    if c_ratio is not None:
        row.update(c_msgs=9000.0, c_spread=[8000.0, 10000.0], c_ratio=c_ratio, c_ratio_spread=[c_ratio, c_ratio])
    return row


def _results() -> dict:
    return {
        "quick": False, "repeats": 5,
        "machine": {"cpus": 2, "python": "3.11", "paho_mqtt": "2.2.0", "mosquitto": "2.0.11", "started": "now",
                    "load_before": [0.1, 0.1, 0.1], "load_after": [1.0, 1.0, 1.0]},
        "throughput": [_row("send --lines 200 B QoS 0", "cli", 1.6, 0.55), _row("send --lines 200 B QoS 0", "api", 1.4),
                       _row("send --lines 200 B QoS 1", "cli", 1.5, 0.3),
                       _row("listen backlog 256 B QoS 1", "cli", 1.3, 0.39), _row("send 256 B QoS 2", "cli", 0.5)],
        "latency": [{"impl": "connector", "qos": 1, "p50_ms": 0.2, "p99_ms": 1.2},
                    {"impl": "raw", "qos": 1, "p50_ms": 0.2, "p99_ms": 0.8}],
        "rss": {"small": {"count": 1000, "send_peak_rss_mb": 30.0, "listen_peak_rss_mb": 30.0},
                "big": {"count": 1_000_000, "send_peak_rss_mb": 31.0, "listen_peak_rss_mb": 61.0, "send_seconds": 30.0},
                "send_growth_mb": 1.0, "listen_growth_mb": 31.0},
        "help": {"median_s": 0.08, "max_s": 0.2, "python_alone_median_s": 0.01},
        "brokers": [{"case": "send --lines 200 B QoS 1", "impl": "raw", "count": 500, "mosquitto_msgs": 10000.0,
                     "embedded_msgs": 2000.0, "ratio": 0.2, "mosquitto_cpu_us": 8.0, "embedded_cpu_us": 300.0}],
    }


def test_the_targets_are_the_issues_each_met_or_not_from_the_run() -> None:
    got = {what: met for what, _measured, met in run.targets(_results())}
    assert got == {
        "send --lines 200 B QoS 0, CLI: >= 1.5 x raw paho": True,
        "send --lines 200 B QoS 0, CLI: >= 0.5 x Mosquitto's C client": True,
        "send --lines 200 B QoS 0, Python API: >= 1.5 x raw paho": False,
        "send --lines 200 B QoS 1, CLI: >= 1.5 x raw paho": True,  # the C client is a ceiling here, no target
        "listen backlog 256 B QoS 1, CLI: >= 1.2 x raw paho": True,
        "listen backlog 256 B QoS 1, CLI: >= 0.4 x Mosquitto's C client": False,
        "p99 latency at 1,000 msg/s QoS 1 <= raw paho's + 0.5 ms": True,
        "RSS growth over 1,000,000 documents < 30 MB": False,
        "mqtt-connector --help < 0.1 s": True,
    }


def test_the_report_shows_the_ceiling_the_spread_and_the_embedded_broker() -> None:
    text = run.markdown(_results())
    assert "| **send --lines 200 B QoS 0** | cli | 1,000 | 3,000 (2,900-3,100) | 2,000 (1,900-2,100) | " \
           "9,000 (8,000-10,000) | 1.60 (1.50-1.70) |" in text
    assert "| send --lines 200 B QoS 1 | raw paho | 500 | 10,000 | 2,000 | 0.20 | 8 | 300 |" in text
    assert "| listen backlog 256 B QoS 1, CLI: >= 0.4 x Mosquitto's C client | 0.39 (0.39-0.39) | NO |" in text


def test_a_quick_run_writes_outside_docs_unless_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple] = []

    def measure(skip: list[str], repeats: int, scale: float, quick: bool) -> dict:
        seen.append((skip, repeats, scale, quick))
        return _results()

    monkeypatch.setattr(run, "measure", measure)
    monkeypatch.setattr(run, "update_doc", lambda *a: pytest.fail("a quick run updated docs/performance.md"))
    monkeypatch.setattr(run.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "quick"))
    monkeypatch.setattr(run, "chart", lambda results, path: False)  # matplotlib is an extra
    assert run.main(["--quick"]) == 0
    assert seen[0][1:] == (1, 0.1, True)
    assert json.loads((tmp_path / "quick" / "bench-results.json").read_text())["repeats"] == 5
    assert str(tmp_path / "quick") in capsys.readouterr().out


def test_the_modules_are_compiled_before_measuring_as_an_installed_wheel_has_them(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "connector").mkdir()
    (tmp_path / "connector" / "mod.py").write_text("x = 1\n")
    monkeypatch.setattr(run, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # PYTHONDONTWRITEBYTECODE=1
    run.precompile()
    assert list((tmp_path / "connector" / "__pycache__").glob("mod.*.pyc"))


# -- the scale part (bench/scale.py), at tiny sizes through a Mosquitto of its own -------------------

TINY = {"backlog": 30, "spread": 40, "filters": 120, "topics": 50}


def test_the_scale_part_measures_shared_groups_many_filters_and_the_matcher(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    find_program("mosquitto")  # missing: skipped locally, a failure in CI
    monkeypatch.setitem(scale.SIZES, "quick", TINY)
    # two repeats: the second runs in the reverse order, on topics of its own
    assert scale.main(["--quick", "--repeats", "2", "--out", str(tmp_path / "quick")]) == 0
    results = json.loads((tmp_path / "quick" / "bench-scale.json").read_text())
    got = results["scale"]
    assert [(r["listens"], r["count"]) for r in got["shared"]] == [(1, 30), (2, 30), (4, 30)]
    assert [(r["filters"], r["count"]) for r in got["filters"]] == [(1, 40), (120, 40)]
    for row in got["shared"] + got["filters"]:  # each drained its whole backlog (else it raised)
        assert row["msgs"] > 0 and len(row["seconds"]) == 2 and 0 < min(row["seconds"]) <= row["wall_s"]
    assert got["filters"][1]["subscribe_s"] > 0 and got["matcher"]["filters"] == 120
    text = scale.markdown(results)
    assert "| 4 | 30 |" in text and "| 120 filters (`--topic-file`) | 40 |" in text and "over 120 topics" in text


def test_the_whole_benchmark_runs_the_scale_part_unless_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(scale, "measure", lambda *args: calls.append(args) or {"shared": []})
    monkeypatch.setattr(run, "help_time", lambda runs: {})
    others = ["throughput", "brokers", "latency", "rss", "profile"]
    find_program("mosquitto")
    assert run.measure(others, 1, 0.1, True)["scale"] == {"shared": []} and calls[0][2:] == (1, True)
    assert "scale" not in run.measure([*others, "scale"], 1, 0.1, True) and len(calls) == 1


def test_the_scale_results_replace_only_their_own_section(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("a\n<!-- bench:results:start -->\nR\n<!-- bench:results:end -->\n"
                   "<!-- bench:scale:start -->\nold\n<!-- bench:scale:end -->\nz\n")
    assert run.update_doc(doc, "new", "scale")
    assert doc.read_text() == ("a\n<!-- bench:results:start -->\nR\n<!-- bench:results:end -->\n"
                               "<!-- bench:scale:start -->\nnew\n<!-- bench:scale:end -->\nz\n")
