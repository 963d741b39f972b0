"""The red team's list of inputs and faults that once ended in a traceback: each is now one
line and exit code 2, and what was computed before is intact. Read-only folders are real
(a read-only bind mount as root, file modes otherwise), so root cannot write through."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import edit_document, make_class_folders, pattern, small_tmpfs
from visionbench.cli import main

# Whole runs end to end: with `pytest --slow` (CI).
pytestmark = pytest.mark.slow


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` made read-only for this process (a read-only bind mount as root)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for path in modes:
            path.chmod(modes[path] & ~0o222)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot make a read-only mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True,
                       capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def _one_line(capsys: pytest.CaptureFixture[str], expected: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert expected.lower() in err.lower(), err
    return err


def test_every_command_that_writes_into_a_read_only_folder_says_so_in_one_line(
        pets_run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(pets_run, folder)
    before = _snapshot(folder)
    scans = make_class_folders(tmp_path / "scans", {"cat": 2}, offset=600)
    with read_only(folder):
        for command in (["report", str(folder)], ["evaluate", str(folder)],
                        ["explain", str(folder), "--model", "mlp"],
                        ["export", str(folder), "--model", "mlp"],
                        ["predict", str(folder), str(scans), "--out",
                         str(folder / "out.csv")],
                        ["predict", str(folder), str(scans), "--sort-into",
                         str(folder / "sorted")],
                        ["continue", str(folder), "--epochs", "1"]):
            assert main(command) == 2, command
            _one_line(capsys, "read-only")
    assert _snapshot(folder) == before, "nothing computed before was lost or changed"


def test_a_read_only_cache_output_or_inspect_folder_is_one_line(pets_run, tmp_path, capsys,
                                                              monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    config = tmp_path / "digits.yaml"
    config.write_text("data: {source: digits, split: {limit_per_class: 5}}\n"
                      "models: {mlp: {preset: mlp}}\ntrain: {epochs: 1, progress: quiet}\n"
                      f"output: {{dir: {locked / 'runs'}}}\n")
    with read_only(locked):
        assert main(["inspect", str(config), "--out", str(locked / "inspect")]) == 2
        _one_line(capsys, "read-only")
        assert main(["run", str(config)]) == 2
        _one_line(capsys, "read-only")
        monkeypatch.setenv("VISIONBENCH_CACHE", str(locked / "cache"))
        assert main(["inspect", str(config), "--out", str(tmp_path / "i")]) == 2
        _one_line(capsys, "read-only")
        assert main(["cache", "clear"]) in (0, 2)
        assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(("setting", "expected"), [
    ("output.dir=/proc/visionbench", "cannot write or read /proc/visionbench"),
    ("output.dir=FILE", "a file stands where a folder is needed"),
    ("output.name=../../x", "output.name is one folder name"),
    ("evaluate.bootstrap=1e9", "evaluate.bootstrap"),
    ("data.preprocess.size=100000", "sides must be between 1 and 4096"),
    ("data.split.test_with=fold_ensemble", "set folds too"),
])
def test_settings_that_once_gave_a_traceback_are_one_line(tmp_path, capsys, setting, expected):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    config = tmp_path / "digits.yaml"
    config.write_text("data: {source: digits, split: {limit_per_class: 5}}\n"
                      "models: {mlp: {preset: mlp}}\ntrain: {epochs: 1, progress: quiet}\n"
                      f"output: {{dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(config), "--set", setting.replace("FILE", str(afile))]) == 2
    _one_line(capsys, expected)


@pytest.mark.parametrize(("text", "expected"), [
    ("data: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested too deep"),
    ("data: {source: digits}\nmodels: {mlp: {preset: mlp}}\ntrain: {epochs: 1"
     + "0" * 5000 + "}\n", "invalid value"),
])
def test_hostile_yaml_is_one_line(tmp_path, capsys, text, expected):
    config = tmp_path / "hostile.yaml"
    config.write_text(text)
    assert main(["inspect", str(config)]) == 2
    _one_line(capsys, expected)


def test_yaml_merge_keys_work_and_their_keys_can_be_overridden(tmp_path):
    from visionbench.config import load_config

    config = tmp_path / "merged.yaml"
    config.write_text("data: {source: digits}\n"
                      "models:\n  a: {preset: mlp, train: &quick {epochs: 3, batch_size: 8}}\n"
                      "  b: {preset: mlp, train: {<<: *quick, epochs: 5}}\n")
    loaded = load_config(config)
    assert loaded.models["a"].train.epochs == 3 and loaded.models["b"].train.epochs == 5
    assert loaded.models["b"].train.batch_size == 8


def test_damaged_weights_and_a_card_that_disagrees_are_one_line(pets_run, tmp_path, capsys):
    scans = make_class_folders(tmp_path / "scans", {"cat": 1}, offset=700)
    weights = "mlp/model.safetensors"
    cases = {
        "garbage": lambda folder: (folder / weights).write_bytes(b"\x00" * 64),
        "bad offsets": lambda folder: (folder / weights).write_bytes(
            (40).to_bytes(8, "little") + json.dumps(
                {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 99999]}}
            ).encode().ljust(40)),
        "another model's": lambda folder: _other_weights(folder / weights),
        "classes disagree": lambda folder: edit_document(folder / "mlp" / "model.json",
                                                 lambda d: d.update(classes=["a", "b", "c"])),
    }
    for name, damage in cases.items():
        folder = tmp_path / name.replace(" ", "-").replace("'", "")
        shutil.copytree(pets_run, folder)
        damage(folder)
        assert main(["predict", str(folder), str(scans), "--model", "mlp"]) == 2, name
        _one_line(capsys, "mlp")


def _other_weights(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"something.else": torch.zeros(3)}, str(path))


def test_edited_evaluation_and_comparison_documents_are_one_line_for_report(
        pets_run, tmp_path, capsys):
    for name, change in {"mlp/evaluation.json": lambda d: d.update(metrics="nonsense"),
                         "comparison.json": lambda d: d.update(recommended=["x"])}.items():
        folder = tmp_path / name.replace("/", "-")
        shutil.copytree(pets_run, folder)
        edit_document(folder / name, change)
        assert main(["report", str(folder)]) == 2, name
        _one_line(capsys, "not a valid")


def test_hostile_onnx_given_to_predict_is_one_line(pets_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    export = tmp_path / "export"
    assert main(["export", str(pets_run), "--model", "mlp", "--out", str(export)]) == 0
    capsys.readouterr()
    scan = tmp_path / "scan.png"
    pattern(0, 800).save(scan)
    graphs = {
        "garbage": b"not a protobuf at all",
        "custom op": helper.make_model(helper.make_graph(
            [helper.make_node("Evil", ["images"], ["probabilities"], domain="evil.ops")],
            "g", [helper.make_tensor_value_info("images", TensorProto.UINT8, [None, 16, 16, 3])],
            [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])]),
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("evil.ops", 1)]),
        "float input": helper.make_model(helper.make_graph(
            [helper.make_node("Identity", ["images"], ["probabilities"])], "g",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 2])],
            [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])])),
        "external data": _external_data_model(tmp_path),
    }
    for name, graph in graphs.items():
        folder = tmp_path / f"hostile-{name.replace(' ', '-')}"
        shutil.copytree(export, folder)
        target = folder / "model.onnx"
        target.write_bytes(graph if isinstance(graph, bytes) else graph.SerializeToString())
        code = main(["predict", str(folder), str(scan)])
        err = capsys.readouterr()
        assert "Traceback" not in err.err, name
        # Refused outright, or every image an error row: never a class from such a graph.
        assert code == 2 or "error" in err.out, name


def _external_data_model(tmp_path: Path):
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    weight.data_location = TensorProto.EXTERNAL
    del weight.float_data[:]
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    return helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["w"], ["probabilities"])], "g",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [None, 16, 16, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [2])], [weight]))


def test_a_long_file_name_that_needs_a_suffix_keeps_within_the_name_limit(tmp_path):
    from visionbench.predict.sort import sort_files
    from visionbench.predict.stream import Prediction

    name = "n" * 247 + ".png"  # 251 characters
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    found = []
    for folder in ("a", "b"):
        (tmp_path / folder / name).write_bytes(folder.encode())
        found.append(Prediction(source=str(tmp_path / folder / name), predicted="cat",
                                probabilities={"cat": 1.0}, uncertain=False))
    sort_files(found, tmp_path / "sorted", ["cat"])
    placed = sorted(p.name for p in (tmp_path / "sorted" / "cat").iterdir())
    assert len(placed) == 2 and all(len(p.encode()) <= 255 for p in placed)
    assert any(p.endswith("-1.png") for p in placed)


def test_a_full_disk_during_export_says_so(pets_run, tmp_path, capsys):
    with small_tmpfs(tmp_path / "small", "8k") as small:
        assert main(["export", str(pets_run), "--model", "mlp", "--out", str(small / "x")]) == 2
        err = _one_line(capsys, "No space left")
        assert "cannot be exported" not in err


def test_inspect_on_a_full_disk_is_one_line(tmp_path, capsys):
    with small_tmpfs(tmp_path / "small", "64k") as small:
        assert main(["inspect", "quickstart", "--out", str(small / "inspect")]) == 2
        _one_line(capsys, "no space left")
