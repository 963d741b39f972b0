"""`tracking: [mlflow, tensorboard]`: a finished run is logged from its folder, and MLflow's
own client and TensorBoard's own reader find the settings, the curves by epoch, the test
metrics with their bounds, the card and the report; a missing package or a failing store
costs nothing of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_class_folders, run_yaml
from visionbench.cli import main

TINY = """
models:
  cnn: {{layers: [{{type: conv, filters: 4}}, {{type: pool}}, {{type: flatten}}]}}
  mlp: {{preset: mlp}}
train: {{epochs: 3, progress: quiet}}
evaluate: {{bootstrap: 50, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tracking")
    data = make_class_folders(root / "data", {"cat": 10, "dog": 10})
    return run_yaml(root, "pets", f"data: {{source: folder, path: {data}, "
                    "preprocess: {size: 12}}\ntracking: [mlflow, tensorboard]\n"
                    + TINY.format())


def test_mlflow_holds_the_settings_curves_metrics_and_files_of_the_run(run):
    from mlflow.tracking import MlflowClient

    where = json.loads((run / "tracking.json").read_text())["trackers"]["mlflow"]
    assert where["uri"] == f"sqlite:///{(run / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=where["uri"])
    parent = client.get_run(where["run_id"])
    assert parent.data.params["train.epochs"] == "3"
    assert parent.data.params["data.source"] == "folder"
    assert parent.data.tags["visionbench.recommended"] in ("cnn", "mlp")
    assert {f.path for f in client.list_artifacts(where["run_id"])} >= {
        "report.html", "config.yaml", "leaderboard.csv"}
    # The artefacts stay in the run folder, never in the current folder.
    assert (run / "mlflow-artifacts").is_dir() and not Path("mlruns").exists()

    board = json.loads((run / "leaderboard.json").read_text())
    history = json.loads((run / "cnn" / "history.json").read_text())
    child = client.get_run(where["model_runs"]["cnn"])
    assert child.data.tags["mlflow.parentRunId"] == where["run_id"]
    assert child.info.status == "FINISHED"
    assert "'type': 'conv'" in child.data.params["model.layers"]
    curve = client.get_metric_history(child.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in sorted(curve, key=lambda m: m.step)] == [
        (e["epoch"], pytest.approx(e["val_loss"])) for e in history["epochs"]]
    row = next(r for r in board["rows"] if r["model"] == "cnn")
    accuracy = row["metrics"]["accuracy"]
    assert child.data.metrics["test_accuracy"] == pytest.approx(accuracy["value"])
    assert child.data.metrics["test_accuracy_low"] == pytest.approx(accuracy["low"])
    assert child.data.metrics["test_accuracy_high"] == pytest.approx(accuracy["high"])
    assert [f.path for f in client.list_artifacts(child.info.run_id)] == ["model.json"]


def test_tensorboard_holds_each_models_curves(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folders = json.loads((run / "tracking.json").read_text())["trackers"]["tensorboard"][
        "folders"]
    assert set(folders) == {"cnn", "mlp"}
    events = EventAccumulator(folders["mlp"])
    events.Reload()
    history = json.loads((run / "mlp" / "history.json").read_text())
    assert [(s.step, s.value) for s in events.Scalars("loss/train")] == [
        (e["epoch"], pytest.approx(e["train_loss"], rel=1e-6)) for e in history["epochs"]]
    assert "accuracy/test" in events.Tags()["scalars"]


@pytest.mark.slow
def test_an_export_is_logged_with_its_model(run, tmp_path):
    from mlflow.tracking import MlflowClient

    from visionbench.rundir import RunFolder
    from visionbench.schemas.tracking import TrackingConfig
    from visionbench.track import track_run

    assert main(["export", str(run), "--model", "mlp"]) == 0
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    found = track_run(RunFolder(run), TrackingConfig(to=["mlflow"], uri=uri,
                                                     experiment="again"), print)
    child = found.trackers["mlflow"]["model_runs"]["mlp"]
    files = {f.path for f in MlflowClient(tracking_uri=uri).list_artifacts(child, "export")}
    assert files >= {"export/model.onnx", "export/model.json"}
    # A SQLite store of the user's keeps its artefacts beside it.
    assert (tmp_path / "mlflow-artifacts").is_dir() and not Path("mlruns").exists()


def test_a_failing_store_is_a_warning_and_the_run_folder_stays_whole(run, capsys):
    from visionbench.rundir import RunFolder
    from visionbench.schemas.tracking import TrackingConfig
    from visionbench.track import track_run

    before = sorted(p.name for p in run.iterdir())
    found = track_run(RunFolder(run), TrackingConfig(to=["mlflow"], uri="nonsense://x"),
                      print)
    assert found.trackers["mlflow"]["error"]
    assert "warning: logging to mlflow failed" in capsys.readouterr().out
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_tracker_that_is_not_installed_is_refused_before_training(tmp_path, monkeypatch,
                                                                    capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    config = tmp_path / "c.yaml"
    config.write_text("data: {source: digits}\nmodels: {mlp: {preset: mlp}}\n"
                      f"tracking: [mlflow]\noutput: {{dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(config)]) == 2
    assert "pip install 'visionbench[mlflow]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    config.write_text("data: {source: digits}\nmodels: {mlp: {preset: mlp}}\n"
                      "tracking: [wandb]\n")
    assert main(["run", str(config)]) == 2
    assert "unknown tracker 'wandb'" in capsys.readouterr().err


def test_mlflow_gets_each_fold_and_the_cross_validation_mean(tmp_path):
    from mlflow.tracking import MlflowClient

    data = make_class_folders(tmp_path / "data", {"cat": 9, "dog": 9})
    run = run_yaml(tmp_path, "folded", f"data: {{source: folder, path: {data}, "
                   "preprocess: {size: 8}, split: {folds: 3}}\ntracking: [mlflow]\n"
                   "models: {mlp: {preset: mlp}}\ntrain: {epochs: 1, progress: quiet}\n"
                   "evaluate: {bootstrap: 20, robustness: {}, explain: {images: 0}, "
                   "error_examples: 0}\n")
    where = json.loads((run / "tracking.json").read_text())["trackers"]["mlflow"]
    client = MlflowClient(tracking_uri=where["uri"])
    child = where["model_runs"]["mlp"]
    folds = json.loads((run / "mlp" / "evaluation.json").read_text())["folds"]["metrics"]
    logged = client.get_metric_history(child, "fold_accuracy")
    assert [m.value for m in sorted(logged, key=lambda m: m.step)] == pytest.approx(
        folds["accuracy"]["values"])
    metrics = client.get_run(child).data.metrics
    assert metrics["cv_accuracy"] == pytest.approx(folds["accuracy"]["mean"])
    assert metrics["cv_accuracy_high"] <= 1.0
