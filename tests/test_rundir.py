"""The run folder as a typed contract: one module names its files, documents validate."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from visionbench.errors import UserError
from visionbench.rundir import DataRecord, ModelMetrics, RunFolder, Status, documents, layout
from visionbench.rundir.documents import SCHEMA_VERSION

SRC = Path(__file__).resolve().parents[1] / "src" / "visionbench"
# The same file name meaning another folder's file.
ELSEWHERE = {("models/backbones.py", "model.safetensors")}  # timm's Hugging Face cache


def _run_folder_names() -> set[str]:
    names = {kind.FILE.rsplit("/", 1)[-1] for kind in vars(documents).values()
             if isinstance(kind, type) and issubclass(kind, documents.Document)
             and kind is not documents.Document}
    names |= {layout.CONFIG, layout.REPORT, layout.LEADERBOARD_CSV, layout.LEADERBOARD_MD,
              layout.CLASS_CHART, layout.WEIGHTS, layout.LAST_CHECKPOINT,
              layout.BEST_WEIGHTS, layout.ERROR_LOG, *layout.PREDICTIONS.values(),
              *layout.PICTURES.values()}
    return names


def test_no_module_outside_the_run_folder_contract_names_its_files():
    names = _run_folder_names()
    assert {"metrics.json", "predictions.csv", "config.yaml", "model.json"} <= names
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if "rundir" in relative.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # A path in code is one word; sentences that mention a file are prose.
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and not any(c.isspace() for c in node.value)):
                name = node.value.rsplit("/", 1)[-1]
                if name in names and (relative.as_posix(), name) not in ELSEWHERE:
                    found.append(f"{relative}:{node.lineno} names {name}")
    assert found == []


def test_a_damaged_document_is_a_one_line_error_naming_the_file(tmp_path):
    run = RunFolder(tmp_path)
    folder = run.model("m")
    folder.path.mkdir()
    (folder.path / "metrics.json").write_text('{"model": "m", "status": "ok"', encoding="utf-8")
    with pytest.raises(UserError, match=r"metrics.json is damaged"):
        folder.read(ModelMetrics)
    (folder.path / "metrics.json").write_text('{"model": "m", "status": "fine"}')
    with pytest.raises(UserError, match=r"not a valid metrics.json \(status: "):
        folder.read(ModelMetrics)
    (folder.path / "metrics.json").write_text('{"schema_version": 99, "model": "m"}')
    with pytest.raises(UserError, match="written by a newer visionbench"):
        folder.read(ModelMetrics)


def test_documents_round_trip_with_a_schema_version_and_only_the_keys_set(tmp_path):
    folder = RunFolder(tmp_path).model("m")
    folder.write(ModelMetrics(model="m", status=Status.FAILED, error="boom", exit_code=2))
    written = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert len(written.pop("checksum")) == 64
    assert written == {"schema_version": SCHEMA_VERSION, "model": "m", "status": "failed",
                       "error": "boom", "exit_code": 2}
    back = folder.read(ModelMetrics)
    assert back is not None and back.status is Status.FAILED and not back.ok


def test_a_folder_written_before_the_contract_still_reads(tmp_path):
    # No schema version, warnings as plain sentences: how run folders were written before.
    (tmp_path / "data.json").write_text(json.dumps({
        "source": "folder x", "classes": ["a", "b"], "channels": 3, "image_shape": [8, 8],
        "splits": {"test": {"a": 1, "b": 1}}, "totals": {"test": 2},
        "warnings": ["test class a has only 1 images: its metrics are very uncertain"]}))
    record = RunFolder(tmp_path).require(DataRecord)
    assert record.warnings[0].code == "note"
    assert record.warnings[0].message.startswith("test class a has only 1 images")


@pytest.mark.parametrize("name", ["../escape", "/tmp/x", "a/b", "data", ".hidden"])
def test_a_model_name_cannot_leave_or_shadow_the_run_folder(tmp_path, name):
    with pytest.raises(UserError, match="cannot name a folder"):
        RunFolder(tmp_path).model(name)


def test_an_edited_document_or_predictions_file_is_caught_by_its_checksum(tmp_path):
    from visionbench.rundir import Predictions

    folder = RunFolder(tmp_path).model("m")
    folder.write_predictions("test", Predictions(["x", "y"], np.array([0, 1]),
                                                 np.array([[0.9, 0.1], [0.2, 0.8]])), ["a", "b"])
    folder.write(ModelMetrics(model="m", status=Status.OK, epochs=3,
                              files=folder.predictions_checksums()))
    assert folder.read_predictions("test", ["a", "b"]).ids == ["x", "y"]
    metrics = tmp_path / "m" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"epochs": 3', '"epochs": 30'))
    with pytest.raises(UserError, match=r"metrics\.json was changed or damaged after it was "
                       r"written"):
        folder.read(ModelMetrics)
    folder.write(ModelMetrics(model="m", status=Status.OK, epochs=3,
                              files=folder.predictions_checksums()))
    predictions = tmp_path / "m" / "predictions.csv"
    predictions.write_text(predictions.read_text().replace("0.9", "0.1"))
    with pytest.raises(UserError, match=r"predictions\.csv was changed or damaged"):
        folder.read_predictions("test", ["a", "b"])
