"""A Send's report without a broker: one results line per document, byte for byte json.dumps of
Result.to_json(), each failure on stderr in order, the summary's counts and the exit code; and the
Result itself (one per document, built fast) stays a frozen dataclass."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest

from connector.harness.reports import report_send
from connector.sdk.documents import Result, Status

RESULTS = [Result(0, Status.SUCCESS), Result(1, Status.SUCCESS, note="confirmed by an earlier run"),
           Result(2, Status.APPLICATION_ERROR, "too large"), Result(3, Status.FAILURE, "lost"),
           Result(4, Status.SUCCESS), Result(5, Status.FAILURE, "gone")]


def test_the_results_file_the_failures_and_the_summary(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.jsonl"
    assert report_send(iter(RESULTS), str(path), "to 'a/b' (QoS 1)") == 1
    assert path.read_text(encoding="utf-8") == "".join(json.dumps(r.to_json()) + "\n" for r in RESULTS)
    assert path.read_bytes().startswith(b'{"index": 0, "status": "SUCCESS"}\n{"index": 1, "status": "SUCCESS", "note": ')
    assert capfd.readouterr().err.splitlines() == [
        "error: document 3: APPLICATION_ERROR: too large",  # numbered from 1, as people count
        "error: document 4: FAILURE: lost",
        "error: document 6: FAILURE: gone",
        "sent 3 of 6 documents to 'a/b' (QoS 1), 1 of them confirmed by an earlier run (outbox); "
        "1 refused (APPLICATION_ERROR), 2 failed (FAILURE), the last, document 6, because gone"]


def test_every_document_succeeded(capfd: pytest.CaptureFixture[str]) -> None:
    assert report_send(iter([Result(0, Status.SUCCESS)]), None, None) == 0
    assert capfd.readouterr().err == "sent 1 of 1 document\n"


def test_a_result_is_a_frozen_dataclass() -> None:
    result = Result(index=3, status=Status.FAILURE, error="lost")
    assert (result.index, result.status, result.error, result.note, result.ok) == (3, Status.FAILURE, "lost", None, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.index = 4  # type: ignore[misc]
    assert dataclasses.replace(result, note="n") == Result(3, Status.FAILURE, "lost", "n")
    assert list(inspect.signature(Result).parameters) == ["index", "status", "error", "note"]
    assert hash(Result(1, Status.SUCCESS)) == hash(Result(1, Status.SUCCESS))
    with pytest.raises(TypeError):
        Result(1, Status.SUCCESS, None, None, "one too many")  # type: ignore[call-arg]
