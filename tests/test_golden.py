"""The snapshot comparison itself (tests/golden.py): every value on the numerics that wrote
a snapshot; elsewhere the run's shape, its data, and everything evaluated from the
snapshot's own training outputs."""

from __future__ import annotations

import dataclasses
import json

import pytest

import golden
from conftest import smoke_run
from visionbench.evaluate.metrics import METRICS
from visionbench.report.markup import Html
from visionbench.report.sections import summary


def _snapshot(tmp_path, monkeypatch, numerics: str) -> None:
    monkeypatch.setattr(golden, "GOLDEN", tmp_path / "golden")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "notes": [1, 2]}))
    monkeypatch.setenv("VISIONBENCH_UPDATE_GOLDEN", "1")
    monkeypatch.setattr(golden, "numerics", lambda: numerics)
    assert golden.compare(run, "toy") == []
    monkeypatch.delenv("VISIONBENCH_UPDATE_GOLDEN")


def test_values_are_compared_on_the_numerics_that_wrote_the_snapshot(tmp_path, monkeypatch):
    _snapshot(tmp_path, monkeypatch, "x86_64 SomeVendor AVX2 torch 9")
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"accuracy": 0.6,
                                                                "notes": [1, 2]}))
    assert golden.compare(tmp_path / "run", "toy") == [
        "toy.metrics.json.accuracy: 0.5 before, 0.6 now"]




def _elsewhere(monkeypatch) -> None:
    """As on a machine whose training numerics are not the snapshot's."""
    monkeypatch.setattr(golden, "numerics", lambda: "x86_64 OtherVendor NEON torch 9")


def test_on_other_numerics_the_run_is_evaluated_again_from_the_snapshots_outputs(
        quickstart_run, monkeypatch):
    _elsewhere(monkeypatch)
    with pytest.warns(golden.SnapshotWarning, match=r"compared by shape only \(.*"
                      r"mlp/history\.json.*\); the data, the evaluation"):
        assert golden.compare(quickstart_run.folder, "quickstart", root=quickstart_run.root,
                              **golden.ADDITIONS) == []


@pytest.mark.slow
def test_on_other_numerics_other_trained_weights_still_match(tmp_path, monkeypatch):
    # Another training seed stands for another machine's floating point: other weights,
    # other predictions, the same data.
    result = smoke_run("quickstart", ["train.seed=7"], tmp_path)
    snapshot = json.loads((golden.GOLDEN / "quickstart.json").read_text())[golden.NUMERICS]
    monkeypatch.setattr(golden, "numerics", lambda: snapshot)
    assert golden.compare(result.folder, "quickstart", root=tmp_path, **golden.ADDITIONS) != []
    _elsewhere(monkeypatch)
    with pytest.warns(golden.SnapshotWarning):
        assert golden.compare(result.folder, "quickstart", root=tmp_path, **golden.ADDITIONS) == []


def test_on_other_numerics_a_changed_report_word_fails(quickstart_run, monkeypatch):
    _elsewhere(monkeypatch)
    recommendation = summary._recommendation
    monkeypatch.setattr(summary, "_recommendation",
                        lambda *args: recommendation(*args).replace("Recommended", "Advised"))
    with pytest.warns(golden.SnapshotWarning):
        problems = golden.compare(quickstart_run.folder, "quickstart",
                                  root=quickstart_run.root, **golden.ADDITIONS)
    assert problems and all(p.startswith("quickstart.report.html[") for p in problems)
    assert any("Advised" in p for p in problems)


def test_on_other_numerics_a_changed_value_from_predictions_fails(quickstart_run, monkeypatch):
    _elsewhere(monkeypatch)
    accuracy = METRICS.get("accuracy")
    monkeypatch.setitem(METRICS._entries, "accuracy", dataclasses.replace(
        accuracy, fn=lambda conf: accuracy.fn(conf) * 0.99))
    with pytest.warns(golden.SnapshotWarning):
        problems = golden.compare(quickstart_run.folder, "quickstart",
                                  root=quickstart_run.root, **golden.ADDITIONS)
    assert any(".bootstrap.accuracy." in p for p in problems), problems


def test_on_the_snapshots_numerics_a_changed_report_word_fails(quickstart_run):
    snapshot = json.loads((golden.GOLDEN / "quickstart.json").read_text())[golden.NUMERICS]
    if snapshot != golden.numerics():
        pytest.skip(f"trained values are compared on {snapshot} only")
    report = quickstart_run.folder / "report.html"
    text = report.read_text()
    try:
        report.write_text(text.replace("Recommended", "Advised", 1))
        problems = golden.compare(quickstart_run.folder, "quickstart", root=quickstart_run.root,
                                  **golden.ADDITIONS)
    finally:
        report.write_text(text)
    assert len(problems) == 1 and "Advised" in problems[0]


def test_on_the_snapshots_numerics_a_changed_byte_of_the_page_fails(quickstart_run,
                                                                   monkeypatch):
    # The page is rebuilt from the run's documents and fingerprinted: markup that changes
    # no visible word (a comment here) still fails, so the page is the snapshot's byte for
    # byte (the report package was checked so against the page of the one-file report).
    snapshot = json.loads((golden.GOLDEN / "quickstart.json").read_text())[golden.NUMERICS]
    if snapshot != golden.numerics():
        pytest.skip(f"the page is compared byte for byte on {snapshot} only")
    recommendation = summary._recommendation
    monkeypatch.setattr(summary, "_recommendation",
                        lambda *args: recommendation(*args) + Html("<!-- -->"))
    problems = golden.compare(quickstart_run.folder, "quickstart", root=quickstart_run.root,
                              **golden.ADDITIONS)
    assert len(problems) == 1 and problems[0].startswith(f"quickstart.{golden.PAGE}.sha256")
