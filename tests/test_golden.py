"""The snapshot comparison itself (tests/golden.py): values on the numerics that wrote a
snapshot, the run's shape elsewhere."""

from __future__ import annotations

import json

import golden


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


def test_on_other_numerics_only_the_shape_of_the_run_is_compared(tmp_path, monkeypatch):
    _snapshot(tmp_path, monkeypatch, "x86_64 SomeVendor AVX2 torch 9")
    monkeypatch.setattr(golden, "numerics", lambda: "x86_64 OtherVendor AVX512 torch 9")
    metrics = tmp_path / "run" / "metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.6, "notes": [1, 2, 3]}))
    assert golden.compare(tmp_path / "run", "toy") == []
    metrics.write_text(json.dumps({"accuracy": 0.6}))
    assert golden.compare(tmp_path / "run", "toy") == ["toy.metrics.json.notes: missing now"]
    (tmp_path / "run" / "extra.json").write_text("{}")
    assert "toy.extra.json: new" in golden.compare(tmp_path / "run", "toy")
