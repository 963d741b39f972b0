"""The run folder as a typed contract: one module names its files, documents validate."""

from __future__ import annotations

import ast
import json
import sys
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


# Mappings whose content is free-form, each said where it is declared: a notice's numbers,
# a model card's config (validated as a ModelConfig when rebuilt), a tracker's facts, a
# sweep trial's settings.
FREE_FORM = {("Notice", "data"), ("ModelCard", "config"), ("Tracking", "trackers"),
             ("SweepTrial", "params"), ("SweepBest", "params")}
# Reads of free-form content by key, each with its reason.
FREE_FORM_READS = {
    ("runtime/trained.py", "config"),  # the device the model was trained on, if it said
    ("report/sections/summary.py", "data"),  # how many test images a duplicate notice counted
}


def _untyped_fields() -> set[tuple[str, str]]:
    """(class, field) of every document or part field that holds untyped mappings, where
    the field is declared (not again in subclasses)."""
    from pydantic import BaseModel

    models = [kind for kind in vars(documents).values()
              if isinstance(kind, type) and issubclass(kind, BaseModel)
              and kind.__module__ == documents.__name__]
    found = set()
    for kind in models:
        inherited = {name for base in kind.__mro__[1:]
                     if isinstance(base, type) and issubclass(base, BaseModel)
                     for name in getattr(base, "model_fields", {})}
        for name, field in kind.model_fields.items():
            if name not in inherited and "Any" in repr(field.annotation):
                found.add((kind.__name__, name))
    return found


def test_document_content_is_typed_and_read_as_attributes():
    untyped = _untyped_fields()
    # Every untyped mapping is free-form by design, and read by key only where said.
    assert untyped == FREE_FORM, untyped ^ FREE_FORM
    checked = {name for _, name in untyped}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("rundir/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # `x.field["key"]` or `x.field.get("key")` on a mapping of a document.
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
                owner, key = node.value, node.slice
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "get" and isinstance(node.func.value, ast.Attribute)
                  and node.args):
                owner, key = node.func.value, node.args[0]
            else:
                continue
            if (isinstance(key, ast.Constant) and isinstance(key.value, str)
                    and owner.attr in checked and (relative, owner.attr) not in FREE_FORM_READS):
                found.append(f"{relative}:{node.lineno} reads .{owner.attr}[{key.value!r}]")
    assert found == []


def test_the_content_check_sees_a_string_read(tmp_path, monkeypatch):
    # The check above reads code: a module that reads a free-form mapping by key is found.
    package = tmp_path / "visionbench"
    (package / "report").mkdir(parents=True)
    (package / "report" / "page.py").write_text('def f(card):\n    return card.config["x"]\n')
    monkeypatch.setattr(sys.modules[__name__], "SRC", package)
    with pytest.raises(AssertionError, match=r"page.py:2 reads .config\['x'\]"):
        test_document_content_is_typed_and_read_as_attributes()
