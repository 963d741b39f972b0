"""`sweep:`: Optuna searches a model's settings on validation only — the trials never get
the test split — and the best trial joins the run as a model evaluated on test once;
`sweep.json` and the report show the search."""

from __future__ import annotations

import json

import pytest

from conftest import make_class_folders, run_yaml
from visionbench.cli import main


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory):
    """A run with a sweep of four trials, and every dataset the trials were given."""
    from visionbench.orchestrate import sweep

    root = tmp_path_factory.mktemp("sweep")
    data = make_class_folders(root / "data", {"cat": 12, "dog": 12, "fox": 12})
    given = []
    real = sweep.train_model
    patch = pytest.MonkeyPatch()
    patch.setattr(sweep, "train_model", lambda task, **k: (
        given.append(task.data), real(task, **k))[1])
    try:
        run = run_yaml(root, "tune", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 12}}}}
models:
  cnn: {{layers: [{{type: conv, filters: 4}}, {{type: pool}}, {{type: flatten}}]}}
train: {{epochs: 3, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
sweep:
  model: cnn
  trials: 4
  pruner: none
  space:
    train.optimizer.lr: {{low: 1.0e-4, high: 1.0e-1, log: true}}
    layers.0.filters: {{choices: [2, 4, 8]}}
""")
    finally:
        patch.undo()
    return run, given


def test_no_trial_is_given_the_test_split(swept):
    run, given = swept
    assert len(given) == 4
    assert all("test" not in set(data.split.tolist()) for data in given)
    test_ids = {row.split(",")[0] for row in
                (run / "cnn" / "predictions.csv").read_text().splitlines()[1:]}
    for trial in sorted(p for p in (run / "sweep").iterdir() if p.is_dir()):
        assert not (trial / "predictions.csv").exists()
        seen = {row.split(",")[0] for row in
                (trial / "predictions_val.csv").read_text().splitlines()[1:]}
        assert seen and not seen & test_ids


def test_the_best_trial_becomes_a_model_of_the_run(swept):
    run, _ = swept
    found = json.loads((run / "sweep.json").read_text())
    assert found["model"] == "cnn" and found["tuned"] == "cnn_tuned"
    assert [t["number"] for t in found["trials"]] == [0, 1, 2, 3]
    values = [t["value"] for t in found["trials"]]
    assert found["best"]["value"] == max(values)
    assert [t["best_so_far"] for t in found["trials"]] == [
        max(values[:i + 1]) for i in range(4)]
    card = json.loads((run / "cnn_tuned" / "model.json").read_text())
    assert card["config"]["layers"][0]["filters"] == found["best"]["params"]["layers.0.filters"]
    assert card["config"]["train"]["optimizer"]["lr"] == pytest.approx(
        found["best"]["params"]["train.optimizer.lr"])
    board = json.loads((run / "leaderboard.json").read_text())
    assert {r["model"] for r in board["rows"]} == {"cnn", "cnn_tuned"}
    saved = (run / "config.yaml").read_text()
    assert "cnn_tuned:" in saved
    report = (run / "report.html").read_text()
    assert "Sweep" in report and "4 trials" in report


def test_a_sweep_over_a_setting_that_does_not_exist_is_refused_at_load(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("data: {source: digits}\nmodels: {mlp: {preset: mlp}}\n"
                      "sweep: {model: mlp, space: {train.optimizer.rate: {low: 0.1, high: 1}}}\n")
    assert main(["inspect", str(config)]) == 2
    assert "sweep.space.train.optimizer.rate" in capsys.readouterr().err
    config.write_text("data: {source: digits}\nmodels: {mlp: {preset: mlp}}\n"
                      "sweep: {model: cnn, space: {train.epochs: {low: 1, high: 3}}}\n")
    assert main(["inspect", str(config)]) == 2
    assert "sweep.model: cnn is not a model" in capsys.readouterr().err
    config.write_text("data: {source: digits}\nmodels: {mlp: {preset: mlp}, mlp_tuned: "
                      "{preset: mlp}}\nsweep: {model: mlp, space: {train.epochs: {low: 1, "
                      "high: 3}}}\n")
    assert main(["inspect", str(config)]) == 2
    assert "sweep.name: mlp_tuned is already a model" in capsys.readouterr().err


def test_a_range_needs_two_ends_in_order():
    from pydantic import ValidationError

    from visionbench.schemas.sweep import Dimension

    for wrong in ({"low": 1}, {"low": 2, "high": 1}, {"low": 0, "high": 1, "log": True},
                  {"choices": [1], "low": 0}):
        with pytest.raises(ValidationError):
            Dimension.model_validate(wrong)
    assert Dimension(low=1, high=8).whole and not Dimension(low=0.1, high=1).whole


def test_pruning_reports_each_epoch_and_stops_a_trial_the_pruner_gives_up_on():
    import optuna

    from visionbench.orchestrate.sweep import Pruning

    class Trial:
        def __init__(self, stop_after: int) -> None:
            self.reported, self.stop_after = [], stop_after

        def report(self, value: float, step: int) -> None:
            self.reported.append((step, value))

        def should_prune(self) -> bool:
            return len(self.reported) >= self.stop_after

    class Trainer:
        epoch = 1

    trial = Trial(stop_after=2)
    pruning = Pruning(trial, "val_accuracy")
    pruning.on_epoch_end(Trainer(), {"val_accuracy": 0.5, "val_loss": 1.0})
    Trainer.epoch = 2
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 2"):
        pruning.on_epoch_end(Trainer(), {"val_accuracy": 0.4})
    assert trial.reported == [(1, 0.5), (2, 0.4)]


def test_resume_reuses_a_finished_sweep(swept, capsys):
    run, _ = swept
    before = (run / "sweep.json").read_bytes()
    capsys.readouterr()
    assert main(["run", str(run.parents[2] / "tune.yaml"), "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "sweep trial" not in err and "cnn_tuned: already trained, kept" in err
    assert (run / "sweep.json").read_bytes() == before


def test_the_sweep_charts_fit_at_1400_px_and_draw_each_setting_on_its_searched_scale(
        swept, tmp_path):
    from test_report import layout_problems
    from test_report_binary import figures

    run, _ = swept
    problems, console = layout_problems(run / "report.html", tmp_path)
    assert console == [], console  # no WebGL fallback: no parallel coordinates
    assert problems == []
    traces, layout = next(found for found in figures((run / "report.html").read_text())
                          if "against each setting" in found[1]["title"]["text"])
    assert [trace["xaxis"] for trace in traces] == ["x", "x2"]
    assert layout["xaxis"]["title"]["text"] == "train.optimizer.lr"
    assert layout["xaxis"]["type"] == "log"
    assert layout["xaxis2"]["type"] == "category"
    assert layout["xaxis2"]["categoryarray"] == sorted(
        layout["xaxis2"]["categoryarray"], key=int)
