"""Every recipe runs end to end in its smoke version (real-data ones skip without data)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import SHARED_DATA, make_class_folders, smoke_run
from golden import ADDITIONS, compare


def _same_as_snapshot(result, recipe: str, root) -> None:
    assert (result.folder / "report.html").is_file()
    # The same results, file for file, as the snapshot (rewritten when the recommendation
    # moved from the test split to validation, which changed marks and wording only).
    assert compare(result.folder, recipe, root=root, **ADDITIONS) == []


def _run(recipe: str, overrides: list[str], tmp_path):
    result = smoke_run(recipe, overrides, tmp_path)
    _same_as_snapshot(result, recipe, tmp_path)
    return result


def test_quickstart_recipe_smoke(quickstart_run):
    _same_as_snapshot(quickstart_run.result, "quickstart", quickstart_run.root)
    assert len(quickstart_run.result.models) == 3


@pytest.mark.slow
def test_photo_filter_recipe_on_a_synthetic_five_class_folder(tmp_path):
    folder = make_class_folders(tmp_path / "scans", {
        "Photo": 10, "Painting": 14, "Schematics": 14, "Sketch": 14, "Text": 14})
    result = _run("photo_filter", [f"data.path={folder}", "data.preprocess.size=32"], tmp_path)
    assert len(result.models) == 7
    data = (result.folder / "data.json").read_text()
    assert '"not_photo"' in data and '"photo"' in data


def _needs(name: str):
    return pytest.mark.skipif(not (SHARED_DATA / name).is_dir(),
                              reason=f"../shared/data/{name} is absent")


@pytest.mark.slow
@_needs("mnist_t10k")
def test_mnist_recipe_smoke(tmp_path):
    result = _run("mnist", [f"data.path={SHARED_DATA / 'mnist_t10k'}",
                            "data.split.limit_per_class=30"], tmp_path)
    assert len(result.models) == 6
    # The results page is generated from this folder: paired gains over the baseline and
    # the hardware and command of every model.
    results = _results_script()
    page = results.study_section("mnist", result.folder)
    assert "Paired against **baseline**" in page
    for name in ("bn_dropout", "deeper", "onecycle", "augmented", "early_stopping"):
        assert f"| {name} | " in page.split("Paired against")[1]
    assert "How each model was trained" in page and "| CPU " in page
    # Another training seed's folder (here a copy under seed 7): one column per seed, and
    # the spread of identical results is zero.
    other = tmp_path / "seed7"
    shutil.copytree(result.folder, other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["train"]["seed"] = 7
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    page = results.study_section("mnist", result.folder, seeds=[other], notes=["Made on a CPU."])
    assert "Made on a CPU." in page
    seeds = page.split("other training seeds")[1]
    assert f"| model | seed {results._seed(result.folder)} | seed 7 |" in seeds
    assert "| baseline | " in seeds and " | 0.0000 | " in seeds
    board = json.loads((result.folder / "leaderboard.json").read_text())
    chosen = board["recommended"]
    assert results.chosen_on_validation(result.folder, board)[0] == chosen
    assert results.target_lines({"accuracy": 0.0}, board, chosen)[0].startswith(
        f"Target accuracy ≥ 0.0: reached ({chosen}, ")
    assert "missed" in results.target_lines({"accuracy": 1.01}, board, chosen)[0]
    # The same recipe under another setting: its --set overrides name the row, files' places
    # do not.
    variant = tmp_path / "variant"
    shutil.copytree(result.folder, variant)
    config = yaml.safe_load((variant / "config.yaml").read_text())
    config["provenance"]["command"] += ["--set", "train.epochs=2", "--set", "output.dir=x"]
    (variant / "config.yaml").write_text(yaml.safe_dump(config))
    others = "\n".join(results.variant_table(result.folder, [variant]))
    assert f"| baseline | `{variant}` | `train.epochs=2` | CPU " in others
    assert "| baseline | the run above | the recipe as it is | CPU " in others
    summary = "\n".join(results.summary_table({"mnist": result.folder}))
    row = next(r for r in board["rows"] if r["model"] == chosen)
    assert f"| MNIST | – | {row['metrics']['accuracy']['value']:.4f} [" in summary


def _results_script():
    path = Path(__file__).parents[1] / "benchmarks" / "results.py"
    spec = importlib.util.spec_from_file_location("results", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@_needs("brain_tumor_mri")
def test_brain_tumor_recipe_smoke(tmp_path):
    result = _run("brain_tumor", [
        f"data.path={SHARED_DATA / 'brain_tumor_mri'}", "data.split.limit_per_class=10",
        "data.preprocess.size=64", "models.transfer.input.size=64",
        "models.best.input.size=64", "models.large.input.size=64"], tmp_path)
    assert len(result.models) == 7
    # One RGB cache: the study's CNNs read it grey, cnn_rgb and the backbones in colour.
    channels = {name: metrics.input.channels for name, metrics in result.models.items()}
    assert channels == {"cnn_relu": 1, "cnn_rgb": 3, "cnn_relu_augmented": 1,
                        "cnn_sigmoid": 1, "transfer": 3, "best": 3, "large": 3}
    board = (result.folder / "leaderboard.md").read_text()
    assert "missed positives" in board


@pytest.mark.slow
@_needs("chest_xray_224")
def test_chest_xray_recipe_smoke(tmp_path):
    result = _run("chest_xray", [
        f"data.path={SHARED_DATA / 'chest_xray_224'}", "data.split.limit_per_class=10",
        "data.preprocess.size=72", "models.transfer.input.size=64",
        "models.cnn.input.size=64", "models.best.input.size=64",
        "models.robust.input.size=64", "models.large.input.size=64"], tmp_path)
    assert len(result.models) == 5
