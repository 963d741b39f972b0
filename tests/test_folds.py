"""k-fold cross-validation: every fold trained with that fold as validation, out-of-fold
validation predictions that cover every training image once, the model refit on all of
them predicting test, per-fold statistics with the corrected resampled t-test."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import make_class_folders, run_yaml
from visionbench.config import config_from_dict
from visionbench.data.dataset import prepare_data


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folds")
    data = make_class_folders(root / "data", {"cat": 15, "dog": 15, "fox": 15})
    return run_yaml(root, "cv", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 12}}, split: {{folds: 3, test: 0.2}}}}
models:
  cnn: {{layers: [{{type: conv, filters: 4}}, {{type: pool}}, {{type: flatten}}]}}
  mlp:
    preset: mlp
    train: {{early_stopping: {{patience: 1}}}}
train: {{epochs: 4, progress: quiet}}
evaluate: {{bootstrap: 50, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
""")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_views_of_the_data_move_only_training_images(class_folder):
    data = prepare_data(config_from_dict({"data": {
        "source": "folder", "path": str(class_folder), "preprocess": {"size": 8},
        "split": {"folds": 3, "test": 0.25}}}).data)
    pool = data.fold >= 0
    for k in range(3):
        view = data.fold_view(k)
        assert (view.split[pool] == np.where(data.fold[pool] == k, "val", "train")).all()
        assert (view.split[~pool] == "test").all()
    refit = data.refit_view()
    assert set(refit.split[pool]) == {"train"} and (refit.split[~pool] == "test").all()
    assert data.split is not refit.split and "val" in set(data.split)


def test_every_fold_is_trained_and_validation_is_out_of_fold(run):
    data = json.loads((run / "data.json").read_text())
    pool = data["totals"]["train"] + data["totals"]["val"]
    for model in ("cnn", "mlp"):
        oof = _rows(run / model / "predictions_val.csv")
        seen = []
        for k in range(3):
            fold = _rows(run / model / "folds" / str(k) / "predictions_val.csv")
            assert len(fold) == sum(data["folds"][str(k)].values())
            by_id = {r["id"]: r for r in oof}
            assert all(by_id[r["id"]] == r for r in fold)
            seen += [r["id"] for r in fold]
        assert len(oof) == len(seen) == len(set(seen)) == pool
        metrics = json.loads((run / model / "metrics.json").read_text())
        assert [f["fold"] for f in metrics["folds"]] == [0, 1, 2]
        assert metrics["val"]["images"] == pool
        assert "refit on every training image" in " ".join(metrics["notes"])
        # The refit model learnt from every non-test image and predicts test.
        history = json.loads((run / model / "history.json").read_text())
        assert history["epochs"][0]["images"] == pool
        assert len(_rows(run / model / "predictions.csv")) == data["totals"]["test"]


def test_the_refit_of_an_early_stopped_model_trains_its_folds_mean_epochs(run):
    metrics = json.loads((run / "mlp" / "metrics.json").read_text())
    mean = round(float(np.mean([f["epochs"] for f in metrics["folds"]])))
    assert metrics["epochs"] == max(1, mean)
    assert f"({metrics['epochs']} epochs)" in " ".join(metrics["notes"])


def test_the_leaderboard_report_and_comparison_carry_the_folds(run):
    board = json.loads((run / "leaderboard.json").read_text())
    comparison = json.loads((run / "comparison.json").read_text())
    recommended = comparison["recommended"]
    assert comparison["selection"]["values"]  # chosen on the out-of-fold predictions
    for row in board["rows"]:
        folds = row["folds"]
        assert folds["count"] == 3 and len(folds["values"]) == 3
        assert folds["mean"] == pytest.approx(np.mean(folds["values"]))
        assert folds["low"] <= folds["mean"] <= folds["high"]
    other = next(r["model"] for r in board["rows"] if r["model"] != recommended)
    [tested] = comparison["folds"]
    assert tested["model"] == other and tested["against"] == recommended
    values = {r["model"]: np.asarray(r["folds"]["values"]) for r in board["rows"]}
    assert tested["difference"] == pytest.approx(float(np.mean(values[other]
                                                               - values[recommended])))
    assert 0 <= tested["p_value"] <= 1
    report = (run / "report.html").read_text()
    assert "Cross-validation" in report and "Nadeau &amp; Bengio" in report
    assert "3-fold cross-validation" in report


def test_the_leaderboard_table_shows_the_folds(run):
    from visionbench.evaluate.leaderboard import board_table
    from visionbench.rundir import Leaderboard, RunFolder

    header, rows = board_table(RunFolder(run).require(Leaderboard))
    column = header.index("folds: accuracy [CI], p")
    cells = {row[0]: row[column] for row in rows}
    assert all("(3 folds)" in cell for cell in cells.values())
    recommended = json.loads((run / "comparison.json").read_text())["recommended"]
    assert ", p " not in cells[recommended]
    assert all(", p " in cell for model, cell in cells.items() if model != recommended)


def test_continue_refuses_a_cross_validated_run(run, capsys):
    from visionbench.cli import main

    before = (run / "cnn" / "metrics.json").read_bytes()
    assert main(["continue", str(run), "--epochs", "2"]) == 2
    assert "is cross-validated (split.folds)" in capsys.readouterr().err
    assert (run / "cnn" / "metrics.json").read_bytes() == before


def test_resume_keeps_finished_folds_and_trains_the_rest(run, capsys):
    import shutil

    from visionbench.cli import main

    kept = (run / "cnn" / "folds" / "0" / "predictions_val.csv").read_bytes()
    shutil.rmtree(run / "cnn" / "folds" / "2")
    (run / "cnn" / "metrics.json").unlink()
    capsys.readouterr()
    assert main(["run", str(run.parents[2] / "cv.yaml"), "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "fold 3/3 of cnn" in err and "fold 1/3 of cnn" not in err
    assert "mlp: already trained, kept" in err
    assert (run / "cnn" / "folds" / "0" / "predictions_val.csv").read_bytes() == kept
    assert len(_rows(run / "cnn" / "predictions_val.csv")) == json.loads(
        (run / "cnn" / "metrics.json").read_text())["val"]["images"]


@pytest.fixture(scope="module")
def ensembled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fold_ensemble")
    data = make_class_folders(root / "data", {"cat": 12, "dog": 12, "fox": 12})
    return run_yaml(root, "cve", f"""
data:
  source: folder
  path: {data}
  preprocess: {{size: 12}}
  split: {{folds: 3, test: 0.25, test_with: fold_ensemble}}
models:
  cnn: {{layers: [{{type: conv, filters: 4}}, {{type: pool}}, {{type: flatten}}]}}
train: {{epochs: 3, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 2}}
""")


def test_a_fold_ensemble_predicts_test_with_the_mean_of_its_folds(ensembled):
    import visionbench

    ids = [r["id"] for r in _rows(ensembled / "cnn" / "predictions.csv")]
    root = np.asarray([[float(v) for k, v in r.items() if k.startswith("prob_")]
                       for r in _rows(ensembled / "cnn" / "predictions.csv")])
    folds = [np.asarray([[float(v) for k, v in r.items() if k.startswith("prob_")]
                         for r in _rows(ensembled / "cnn" / "folds" / str(k) / "predictions.csv")])
             for k in range(3)]
    assert np.allclose(root, np.mean(folds, axis=0), atol=2e-7)
    metrics = json.loads((ensembled / "cnn" / "metrics.json").read_text())
    assert metrics["fold_ensemble"] is True
    assert not (ensembled / "cnn" / "model.safetensors").exists()
    assert "mean of the fold models" in " ".join(metrics["notes"])
    # predict loads the three fold models and averages them as the run did.
    model = visionbench.load(ensembled, "cnn")
    assert model.members_names == ["cnn fold 1", "cnn fold 2", "cnn fold 3"]
    data_root = ensembled.parents[2] / "data"
    found = model.predict([data_root / image_id for image_id in ids])
    assert np.allclose([[p.probabilities[c] for c in model.classes] for p in found], root,
                       atol=1e-5)
    report = (ensembled / "report.html").read_text()
    assert "the mean of the fold models&#x27; probabilities" in report


def test_a_fold_ensemble_exports_as_one_graph_of_its_folds(ensembled):
    from visionbench.cli import main

    assert main(["export", str(ensembled), "--model", "cnn"]) == 0
    card = json.loads((ensembled / "export" / "cnn" / "model.json").read_text())
    assert [m["model"] for m in card["members"]] == ["cnn fold 1", "cnn fold 2", "cnn fold 3"]
    assert card["parity"]["top1_agreement"] == 1.0


def test_repeated_cross_validation_cuts_the_folds_anew_and_counts_every_fold(tmp_path):
    data = make_class_folders(tmp_path / "data", {"cat": 12, "dog": 12, "fox": 12})
    run = run_yaml(tmp_path, "rcv", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 12}}, split: {{folds: 3, test: 0.25}}}}
models:
  cnn: {{layers: [{{type: conv, filters: 4}}, {{type: pool}}, {{type: flatten}}]}}
  mlp: {{preset: mlp}}
train: {{epochs: 2, progress: quiet, repeats: 2}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
""")
    first = {r["id"] for r in _rows(run / "cnn" / "folds" / "0" / "predictions_val.csv")}
    again = [{r["id"] for r in _rows(run / "cnn" / "repeats" / "1" / "folds" / str(k)
                                     / "predictions_val.csv")} for k in range(3)]
    assert first not in again  # the folds were cut anew
    assert len(set().union(*again)) == sum(len(f) for f in again)  # still a partition
    metrics = json.loads((run / "cnn" / "repeats" / "1" / "folds" / "0" / "metrics.json")
                         .read_text())
    assert metrics["status"] == "ok"
    board = json.loads((run / "leaderboard.json").read_text())
    for row in board["rows"]:
        assert row["folds"]["count"] == 6 and row["folds"]["repeats"] == 2
        assert row.get("repeats") is None  # the repeats are the cross-validation's
    [tested] = json.loads((run / "comparison.json").read_text())["folds"]
    assert tested["folds"] == 6
    # The recommendation and the test model come from the first repeat.
    assert len(_rows(run / "cnn" / "predictions_val.csv")) == 27
    assert "repeated 2 times" in (run / "report.html").read_text()


def test_a_fold_interval_stays_within_the_values_its_metric_can_take():
    from visionbench.evaluate.leaderboard import fold_statistics
    from visionbench.rundir.predictions import Predictions
    from visionbench.schemas.evaluate import EvaluateConfig

    # Three folds, accuracies 0.75, 1.0, 1.0 (the audit's real 3-fold run: 0.859 [0.690,
    # 1.029]): the upper end is cut at 1, the mean is unchanged.
    folds = []
    for wrong in (1, 0, 0):
        y = np.array([0, 1, 0, 1])
        prob = np.eye(2)[y] * 0.8 + 0.1
        if wrong:
            prob[0] = [0.1, 0.9]
        folds.append(Predictions([f"{i}" for i in range(4)], y, prob))
    found = fold_statistics(folds, EvaluateConfig(metrics=["accuracy", "cohen_kappa"]), 3)
    accuracy = found.metrics["accuracy"]
    assert accuracy.mean == pytest.approx(11 / 12) and accuracy.high == 1.0
    assert accuracy.low >= 0.0
    assert found.metrics["cohen_kappa"].high <= 1.0


def test_the_folds_section_says_which_validation_number_is_which_and_flags_a_low_test(
        run, tmp_path):
    import shutil

    from visionbench.cli import main

    report = (run / "report.html").read_text()
    assert "on all out-of-fold predictions pooled" in report
    # The data table shows the cross-validated images together, not one fold's cut.
    assert "<th>cross-validated (3 folds)</th>" in report and "<th>val</th>" not in report
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    board_file = folder / "leaderboard.json"
    board = json.loads(board_file.read_text())
    board.pop("checksum")
    row = board["rows"][0]
    primary = board["primary_metric"]
    row["metrics"][primary]["value"] = min(row["folds"]["values"]) - 0.2
    board_file.write_text(json.dumps(board))
    assert main(["report", str(folder)]) == 0
    assert "the test score is below every fold's validation" in (folder / "report.html").read_text()


def test_duplicates_of_a_folds_run_are_counted_over_the_cross_validated_images(run, tmp_path):
    import shutil

    from conftest import edit_document
    from visionbench.cli import main

    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    counts = {"pairs": 2, "images": 3, "label_conflicts": 1, "examples": []}
    edit_document(folder / "data.json", lambda d: d["duplicates"].update(exact={
        "within": {"train": counts, "val": counts}, "across": {"train~val": counts,
                                                              "val~test": counts}}))
    assert main(["report", str(folder)]) == 0
    report = (folder / "report.html").read_text()
    assert "<td>within cross-validated</td><td>6</td><td>9</td><td>3</td>" in report
    assert "<td>across cross-validated~test</td><td>2</td>" in report
    assert "within val" not in report


def test_the_duplicate_pairs_picture_of_a_folds_run_names_places_as_the_table_does(
        tmp_path, monkeypatch):
    # The picture's captions said "exact, train~val": one fold's cut, not the data's.
    import shutil

    from visionbench.config import config_from_dict
    from visionbench.data import inspect
    from visionbench.data.dataset import prepare_data

    data = make_class_folders(tmp_path / "data", {"cat": 12, "dog": 12})
    for name in ("cat", "dog"):
        for i in range(4):
            shutil.copy(data / name / f"img {i}.png", data / name / f"again {i}.png")
    config = config_from_dict({"data": {"source": "folder", "path": str(data),
                                        "preprocess": {"size": 12},
                                        "split": {"folds": 3, "test": 0.25}}})
    captions: list[str] = []
    monkeypatch.setattr(inspect, "contact_sheet",
                        lambda pictures, found, **_: captions.extend(found))
    monkeypatch.setattr(inspect, "save_png", lambda picture, path: path)
    inspect.duplicate_pairs(prepare_data(config.data), tmp_path / "pairs.png")
    places = {caption.split("\n")[0] for caption in captions}
    assert places & {"cross-validated", "cross-validated~test"}
    words = {word for place in places for word in re.split(r"[~, ]", place)}
    assert not words & {"train", "val"}
