"""What a new user hit with held-out data, the README and `--help` only (issue 26 §2):
each answer is now one line that says what is wrong and what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import visionbench
from conftest import make_class_folders, run_yaml
from visionbench.cli import main
from visionbench.errors import UserError


@pytest.mark.parametrize(("source", "given", "expected"), [
    ("folder", "file", "is a file, but this source reads a data folder"),
    ("presplit", "file", "is a file, but this source reads a data folder"),
    ("npz", "folder", "is a folder, but this source reads a .npz file"),
    ("csv", "folder", "is a folder, but this source reads a CSV manifest"),
    ("idx", "file", "no *-images-idx3-ubyte"),
    ("folder", "missing", "not found"),
    ("npz", "missing", "not found"),
    ("folder", "empty", "has no class sub-folders"),
    ("csv", "empty file", "has no rows"),
])
def test_data_path_of_the_wrong_kind_is_one_line(tmp_path, capsys, source, given, expected):
    paths = {"file": tmp_path / "a-file", "folder": tmp_path / "a-folder",
             "missing": tmp_path / "missing", "empty": tmp_path / "empty",
             "empty file": tmp_path / "empty.csv"}
    paths["file"].write_text("x")
    paths["folder"].mkdir()
    paths["empty"].mkdir()
    paths["empty file"].write_text("")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{source: {source}, path: {paths[given]}}}\n"
                      "models: {mlp: {preset: mlp}}\n")
    assert main(["inspect", str(config)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3


@pytest.fixture(scope="module")
def failed_and_ok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of one model that trains and one whose training diverges."""
    root = tmp_path_factory.mktemp("mixed")
    data = make_class_folders(root / "data", {"cat": 8, "dog": 8})
    config = root / "mixed.yaml"
    config.write_text(f"""
data: {{source: folder, path: {data}, preprocess: {{size: 8}}}}
models:
  good: {{preset: mlp}}
  wild: {{preset: mlp, train: {{optimizer: {{lr: 1.0e+30}}}}}}
train: {{epochs: 1, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
output: {{dir: {root / 'runs'}}}
""")
    assert main(["run", str(config)]) != 0
    return next((root / "runs" / "mixed").iterdir())


def test_a_diverged_model_is_failed_not_a_model_of_nan_weights(failed_and_ok, capsys):
    # One step to NaN weights after a finite training loss: caught on validation.
    assert main(["predict", str(failed_and_ok), str(failed_and_ok), "--model", "wild"]) == 2
    err = capsys.readouterr().err
    assert "did not finish training (failed: validation loss became nan" in err
    assert "the run's other models: good (ok)" in err


def test_an_unknown_model_is_no_such_model_with_the_runs_models(failed_and_ok, capsys):
    for command in (["predict", str(failed_and_ok), str(failed_and_ok), "--model", "nope"],
                    ["export", str(failed_and_ok), "--model", "nope"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "has no model 'nope'; its models: good (ok); wild (failed: " in err, command
    with pytest.raises(UserError, match="has no model 'best'"):
        visionbench.load(failed_and_ok, model="best")


def test_a_run_where_every_model_failed_says_so_first(tmp_path, capsys):
    data = make_class_folders(tmp_path / "data", {"cat": 8, "dog": 8})
    config = tmp_path / "broken.yaml"
    config.write_text(f"""
data: {{source: folder, path: {data}, preprocess: {{size: 8}}}}
models:
  wild: {{preset: mlp, train: {{optimizer: {{lr: 1.0e+30}}}}}}
  wilder: {{preset: mlp, train: {{optimizer: {{lr: 1.0e+35}}}}}}
train: {{epochs: 1, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
output: {{dir: {tmp_path / 'runs'}}}
""")
    assert main(["run", str(config)]) != 0
    captured = capsys.readouterr()
    err = " ".join((captured.out + captured.err).split())  # the terminal wraps long lines
    assert "every model failed, so none is recommended (" in err
    assert "wild: validation loss became nan" in err and "wilder: validation loss" in err
    assert "written before visionbench chose" not in err
    assert "2 model(s) failed: wild, wilder" in err and "nothing to predict with" in err
    folder = next((tmp_path / "runs" / "broken").iterdir())
    assert main(["predict", str(folder), str(data)]) == 2
    assert "every model of" in capsys.readouterr().err
    report = (folder / "report.html").read_text()
    assert "every model failed" in report and 'class="plot"' not in report.split(
        "Leaderboard")[1].split("<h2")[0]


def test_class_folders_named_like_splits_are_warned_of_in_run_and_inspect(tmp_path, capsys):
    data = make_class_folders(tmp_path / "data", {"train": 6, "test": 6})
    run = run_yaml(tmp_path, "tree", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 8}}}}
models: {{mlp: {{preset: mlp}}}}
train: {{epochs: 1, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
""")
    err = capsys.readouterr().err
    assert "warning: the classes test, train are named like splits" in err
    assert "data.source: presplit" in (run / "report.html").read_text()


def test_evaluate_with_new_settings_rewrites_the_report_and_report_dot_is_the_same(
        failed_and_ok, tmp_path, capsys, monkeypatch):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(failed_and_ok, folder)
    assert main(["evaluate", str(folder), "--set",
                 "evaluate.references={paper: {accuracy: 0.5, source: a paper}}"]) == 0
    assert f"report: {folder / 'report.html'}" in " ".join(capsys.readouterr().out.split())
    assert "paper" in (folder / "report.html").read_text()
    assert "paper" in (folder / "config.yaml").read_text()
    assert main(["report", str(folder.resolve())]) == 0
    absolute = (folder / "report.html").read_bytes()
    monkeypatch.chdir(folder)
    assert main(["report", "."]) == 0
    assert (folder / "report.html").read_bytes() == absolute
    assert f"visionbench report — {tmp_path.name} / run" in absolute.decode()


def test_an_unknown_backbone_is_refused_at_load_with_the_offline_ones_first(tmp_path, capsys):
    config = tmp_path / "bb.yaml"
    config.write_text("data: {source: digits}\nmodels: {m: {backbone: efficientnet_lite9}}\n")
    assert main(["inspect", str(config)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown backbone 'efficientnet_lite9'" in err
    assert "similar: efficientnet_lite0, efficientnet_lite1, efficientnet_lite2" in err


def test_files_that_are_not_images_are_listed_as_skipped_and_left_in_place(
        failed_and_ok, tmp_path, capsys):
    import csv
    import io

    folder = make_class_folders(tmp_path / "scans", {"cat": 2}, offset=800)
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "cat" / "empty.png").write_bytes(b"")
    out = tmp_path / "sorted"
    assert main(["predict", str(failed_and_ok), str(folder), "--model", "good",
                 "--sort-into", str(out), "--move"]) == 0
    captured = capsys.readouterr()
    rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(captured.out))}
    assert len(rows) == 4
    assert rows["notes.txt"]["error"] == "not an image file (.txt): skipped"
    assert "empty file" in rows["empty.png"]["error"]
    assert "1 file(s) are not images by their name and were skipped" in captured.err
    assert (folder / "cat" / "notes.txt").is_file(), "a sort leaves it where it is"
    manifest = list(csv.DictReader((out / "manifest.csv").open()))
    assert {Path(r["source"]).name: r["skipped"] for r in manifest}["notes.txt"] == (
        "not an image file (.txt): skipped")


def test_a_bad_set_key_names_the_set_option(tmp_path, capsys):
    config = tmp_path / "my.yaml"
    config.write_text("data:\n  source: digits\nmodels: {mlp: {preset: mlp}}\n")
    assert main(["inspect", str(config), "--set", "data.splt=3"]) == 2
    err = capsys.readouterr().err
    assert "--set data.splt: unknown key 'data.splt'; did you mean 'split'?" in " ".join(
        err.split())
    assert "line" not in err


def test_class_names_no_label_uses_are_refused(tmp_path, capsys):
    np = pytest.importorskip("numpy")
    path = tmp_path / "arrays.npz"
    np.savez(path, x_train=np.zeros((6, 4, 4), np.uint8), y_train=np.array([0, 1] * 3))
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{source: npz, path: {path}, class_names: [a, b, c]}}\n"
                      "models: {mlp: {preset: mlp}}\n")
    assert main(["inspect", str(config)]) == 2
    assert "class_names has names no label uses: c" in capsys.readouterr().err


def test_help_shows_the_extra_to_install():
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "visionbench", "app", "--help"],
                           capture_output=True, text=True, check=True).stdout
    assert "'visionbench[app]'" in " ".join(shown.split())


def test_a_metric_axis_stays_within_what_the_metric_can_take():
    from visionbench.report.charts import accuracy_vs_time
    from visionbench.rundir.documents import LeaderboardRow

    row = LeaderboardRow.model_validate({"model": "a", "status": "ok", "train_seconds": 3,
                                         "metrics": {"roc_auc_macro": {"value": 1.0}}})
    figure = accuracy_vs_time([row], "roc_auc_macro", {"a": "#000"}, (0.0, 1.0))
    low, high = figure["layout"]["yaxis"]["range"]
    assert 0.9 < low < 1.0 < high <= 1.03


def test_a_single_model_is_not_said_to_beat_every_other():
    from visionbench.evaluate.selection import recommend
    from visionbench.rundir.predictions import Predictions
    from visionbench.schemas.evaluate import EvaluateConfig

    y = np.array([0, 1, 0, 1])
    alone = {"only": Predictions(["a", "b", "c", "d"], y, np.eye(2)[y] * 0.8 + 0.1)}
    reason = recommend(alone, {"only": 10}, EvaluateConfig(bootstrap=50)).reason
    assert "every other model" not in reason and "the only model" in reason
