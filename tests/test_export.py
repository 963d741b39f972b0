"""`visionbench export`: an ONNX graph that reproduces PyTorch, a card that says how to use
it, `predict` on the export, and a program that needs neither torch nor visionbench."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_class_folders, pattern, run_yaml
from visionbench.cli import main

# Whole runs end to end: with `pytest --slow` (CI).
pytestmark = pytest.mark.slow

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layer-spec CNN and a pretrained timm backbone (Lite0 at twice the data's size)."""
    root = tmp_path_factory.mktemp("export")
    data = make_class_folders(root / "data", {"cat": 10, "dog": 10, "fox": 10})
    return run_yaml(root, "animals", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 24, color: gray3}}}}
models:
  cnn: {{layers: [{{type: conv, filters: 8}}, {{type: pool}}, {{type: flatten}}]}}
  lite0: {{backbone: efficientnet_lite0, pretrained: true, input: {{size: 48}}}}
train: {{epochs: 2, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
""")


@pytest.mark.parametrize("model", ["cnn", "lite0"])
def test_export_reproduces_pytorch_and_its_card_says_how_to_use_it(run, model, capsys):
    assert main(["export", str(run), "--model", model]) == 0
    folder = run / "export" / model
    assert f"export: {folder}" in capsys.readouterr().out
    card = json.loads((folder / "model.json").read_text())
    assert card["parity"]["max_abs_difference"] <= 1e-4
    assert card["parity"]["top1_agreement"] == 1.0 and card["parity"]["images"] > 0
    assert card["classes"] == ["cat", "dog", "fox"]
    assert card["decode"]["size"] == [24, 24] and card["decode"]["color"] == "gray3"
    assert card["input"]["shape"] == ["batch", 24, 24, 3] and card["input"]["dtype"] == "uint8"
    assert card["members"][0]["input"]["size"] == ([48, 48] if model == "lite0" else [24, 24])
    assert "accuracy" in card["test_metrics"] and card["data"]["fingerprint"]
    assert {"torch", "onnxruntime", "visionbench"} <= set(card["software"])
    # A second export into the same place is refused rather than overwritten.
    assert main(["export", str(run), "--model", model]) == 2


def test_predict_on_an_export_gives_the_runs_numbers(run, tmp_path, capsys):
    import shutil

    main(["export", str(run), "--model", "cnn", "--out", str(tmp_path / "cnn")])
    image = tmp_path / "new.png"
    pattern(1, 600, size=31).save(image)
    learned = json.loads((run / "data" / "training_hashes.json").read_text())["ids"][0]
    copy = tmp_path / "copy.png"
    shutil.copy(run.parents[2] / "data" / learned, copy)
    capsys.readouterr()
    assert main(["predict", str(run), str(image), "--model", "cnn", "--json"]) == 0
    from_run = json.loads(capsys.readouterr().out)[0]
    assert main(["predict", str(tmp_path / "cnn"), str(image), str(copy), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    from_export = found[0]
    # The export keeps the run's training hashes: a copy of a training image is flagged.
    assert found[1]["duplicate_of_training"] == f"exact: {learned}"
    assert from_export["predicted"] == from_run["predicted"]
    for name in ("cat", "dog", "fox"):
        assert from_export[f"prob_{name}"] == pytest.approx(from_run[f"prob_{name}"], abs=1e-5)


def _program() -> str:
    text = (Path(__file__).parents[1] / "docs" / "deploy.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_the_deploy_program_needs_neither_torch_nor_visionbench(run, tmp_path, capsys):
    main(["export", str(run), "--model", "lite0", "--out", str(tmp_path / "lite0")])
    images = []
    for i, size in enumerate((20, 37)):
        path = tmp_path / f"scan {i}.png"
        pattern(i, 700 + i, size=size).save(path)
        images.append(path)
    program = tmp_path / "predict_onnx.py"
    program.write_text(_program())
    # Run the program, then list what it imported: torch and visionbench must not be there.
    wrapper = ("import runpy, sys\n"
               "sys.argv = sys.argv[1:]\n"
               "runpy.run_path(sys.argv[0], run_name='__main__')\n"
               "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
               "('torch', 'visionbench'))\n"
               "print('IMPORTED', bad)\n")
    done = subprocess.run([sys.executable, "-c", wrapper, str(program), str(tmp_path / "lite0"),
                           *map(str, images)], capture_output=True, text=True, timeout=300,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "IMPORTED []"
    found = [json.loads(line) for line in lines[:-1]]
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "lite0"), *map(str, images), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    for mine, theirs in zip(found, expected, strict=True):
        assert mine["predicted"] == theirs["predicted"]
        assert mine["unfamiliar"] == theirs["unfamiliar"]
        assert mine["unfamiliar_score"] == pytest.approx(theirs["unfamiliar_score"], abs=2e-6)
        assert np.allclose([mine[f"prob_{c}"] for c in ("cat", "dog", "fox")],
                           [theirs[f"prob_{c}"] for c in ("cat", "dog", "fox")], atol=1e-5)


def test_evaluating_the_export_reproduces_the_runs_test_metrics(run, tmp_path):
    main(["export", str(run), "--model", "cnn", "--out", str(tmp_path / "cnn")])
    assert main(["evaluate", "--external", str(tmp_path / "cnn" / "model.onnx"), "--data",
                 str(run / "config.yaml"), "--name", "exported", "--set",
                 f"output.dir={tmp_path / 'again'}"]) == 0
    again = next((tmp_path / "again").rglob("exported/evaluation.json"))
    before = json.loads((run / "cnn" / "evaluation.json").read_text())["metrics"]
    after = json.loads(again.read_text())["metrics"]
    for metric in ("accuracy", "balanced_accuracy", "log_loss", "roc_auc_macro"):
        assert after[metric]["value"] == pytest.approx(before[metric]["value"], abs=1e-5)


def test_export_without_the_onnx_extra_says_what_to_install(run, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert main(["export", str(run), "--model", "cnn", "--out", str(run / "nowhere")]) == 2
    assert "export needs onnxscript: pip install 'visionbench[onnx]'" in capsys.readouterr().err


def test_export_never_replaces_a_folder_that_holds_something(run, tmp_path, capsys):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("do not delete")
    assert main(["export", str(run), "--model", "cnn", "--out", str(keep)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert (keep / "notes.txt").read_text() == "do not delete"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(run), "--model", "cnn", "--out", str(empty)]) == 0
    assert (empty / "model.onnx").is_file()


def test_parity_runs_on_the_images_nearest_the_boundary_and_a_sample_of_the_rest():
    import numpy as np

    from visionbench.orchestrate.export import PARITY_IMAGES, parity_sample

    rng = np.random.default_rng(0)
    confident = rng.dirichlet([0.1, 0.1, 0.1], 3000)
    chosen = parity_sample(confident)
    assert len(chosen) == PARITY_IMAGES and len(set(chosen.tolist())) == PARITY_IMAGES
    top = np.sort(confident, axis=1)
    margin = top[:, -1] - top[:, -2]
    nearest = set(np.argsort(margin)[: PARITY_IMAGES // 2].tolist())
    assert nearest <= set(chosen.tolist())
    assert len(parity_sample(confident[:100])) == 100
