import json
import shutil
import subprocess
import sys

import pytest

from visionbench.cli import main


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inspect_json_on_a_folder(class_folder, tmp_path, capsys):
    out = tmp_path / "inspect"
    code, stdout, _ = run(
        [
            "inspect",
            "quickstart",
            "--set",
            "data.source=folder",
            "--set",
            f"data.path={class_folder}",
            "--set",
            "data.preprocess.size=16",
            "--json",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0
    report = json.loads(stdout)
    assert report["splits"]["train"] == {"cat": 8, "dog": 8, "fox": 8}
    assert set(report["duplicates"]) >= {"exact", "near"}
    assert set(report["duplicates"]["exact"]) == {"within", "across"}
    for name in ("class_distribution.png", "samples_cat.png", "data.json", "config.yaml"):
        assert (out / name).is_file()
    assert report["variance"]["fisher_ratio"] > 0


@pytest.mark.slow
def test_inspect_human_output_on_quickstart(tmp_path, capsys):
    code, stdout, _ = run(["inspect", "quickstart", "--out", str(tmp_path / "q")], capsys)
    assert code == 0
    assert "train" in stdout and "class variance" in stdout


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (
            None,
            ["--set", "data.source=folder", "--set", "data.path=/no/such/folder"],
            "data folder not found",
        ),
        (None, ["--set", "train.epoch=3"], "did you mean 'epochs'"),
        ("empty", [], "has no images"),
        ("single", [], "at least two classes"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(make, args, message, class_folder, tmp_path, capsys):
    if make == "empty":
        (class_folder / "empty").mkdir()
    if make == "single":
        for name in ("dog", "fox"):
            for file in (class_folder / name).iterdir():
                file.unlink()
            (class_folder / name).rmdir()
    if make is not None:
        args = [
            "--set",
            "data.source=folder",
            "--set",
            f"data.path={class_folder}",
            "--set",
            "data.preprocess.size=8",
        ]
    code, _, err = run(["inspect", "quickstart", *args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0


def test_console_script_prints_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "visionbench", "inspect", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "config file not found" in done.stderr and "Traceback" not in done.stderr


def test_run_then_continue_writes_the_run_folder(quickstart_run, tmp_path, capsys):
    # The session's finished quickstart run, copied: this test changes it.
    folder = tmp_path / "quickstart" / quickstart_run.folder.name
    shutil.copytree(quickstart_run.folder, folder)
    for name in ("config.yaml", "data.json", "leaderboard.csv", "leaderboard.md", "run.json"):
        assert (folder / name).is_file(), name
    for model in ("small_cnn", "wide_cnn", "mlp"):
        metrics = json.loads((folder / model / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["epochs"] == 1
        assert (folder / model / "model.safetensors").is_file()
        assert (folder / model / "checkpoints" / "last.pt").is_file()
    for name in ("leaderboard.json", "comparison.json"):
        assert (folder / name).is_file(), name
    for model in ("small_cnn", "wide_cnn", "mlp"):
        for name in ("predictions.csv", "predictions_val.csv", "evaluation.json", "errors.json",
                     "robustness.json", "misclassified.png", "error_rate.png",
                     "explanations.json"):
            assert (folder / model / name).is_file(), (model, name)
    board = (folder / "leaderboard.json").read_text()
    # Every number comes back from the predictions alone, without any model weights.
    for model in ("small_cnn", "wide_cnn", "mlp"):
        (folder / model / "model.safetensors").unlink()
    assert main(["evaluate", str(folder)]) == 0
    assert (folder / "leaderboard.json").read_text() == board
    out_text = capsys.readouterr().out
    assert "leaderboard" in out_text and "accuracy [95 % CI]" in out_text
    assert main(["continue", str(folder), "--epochs", "1", "--model", "mlp"]) == 0
    history = json.loads((folder / "mlp" / "history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2]


def test_evaluate_lists_only_the_models_the_folder_ran(tmp_path):
    out = tmp_path / "runs"
    assert main(["run", "quickstart", "--model", "mlp", "--set", f"output.dir={out}",
                 "--set", "train.epochs=1", "--set", "data.split.limit_per_class=20",
                 "--set", "train.progress=quiet", "--set", "evaluate.explain.images=0"]) == 0
    folder = next((out / "quickstart").iterdir())
    assert main(["evaluate", str(folder)]) == 0
    board = json.loads((folder / "leaderboard.json").read_text())
    assert [row["model"] for row in board["rows"]] == ["mlp"]


def test_run_with_a_broken_model_keeps_the_others_and_exits_2(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["run", "quickstart", "--set", f"output.dir={out}", "--set", "train.epochs=1",
                 "--set", "data.split.limit_per_class=20", "--set", "train.progress=quiet",
                 "--set", "models.mlp.layers=[{type: conv, filters: 2}]"])
    assert code == 2
    err = capsys.readouterr().err
    # A misspelt name is refused at load (test_config); a shape only shows when building.
    assert "mlp: FAILED: the layers end with shape (2, 28, 28): end them with flatten" in err
    assert "1 model(s) failed: mlp" in err
    folder = next((out / "quickstart").iterdir())
    assert json.loads((folder / "small_cnn" / "metrics.json").read_text())["status"] == "ok"


@pytest.mark.parametrize(("argv", "message"), [
    (["predikt"], "No such command 'predikt'. Did you mean 'predict'? Commands: app, continue,"),
    (["evalute", "x"], "Did you mean 'evaluate'?"),
    (["run", "--epochs", "3"], "No such option: --epochs"),
    (["continue", "somewhere"], "Missing option '--epochs'"),
    (["continue", "somewhere", "--epochs", "-1"], "Invalid value for '--epochs'"),
])
def test_command_line_mistakes_are_short_usage_errors(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and len(err.splitlines()) <= 6, err
    assert message in err.replace("\n", " ")


def test_markup_characters_in_a_path_are_printed_as_they_are(tmp_path, capsys):
    path = tmp_path / "[/]odd[red].yaml"
    code = main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and f"config file not found: {path}" in err.replace("\n", "")


def test_damaged_run_folder_documents_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "quickstart", "--set", f"output.dir={out}", "--set", "train.epochs=1",
                 "--set", "data.split.limit_per_class=10", "--set", "train.progress=quiet",
                 "--set", "evaluate.robustness={}", "--set", "evaluate.explain.images=0",
                 "--model", "mlp"]) == 0
    folder = next((out / "quickstart").iterdir())
    predictions = folder / "mlp" / "predictions.csv"
    lines = predictions.read_text().splitlines()
    predictions.write_text("\n".join(lines[:3]) + "\n")  # cut short, rows still whole
    capsys.readouterr()
    assert main(["evaluate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "predictions.csv was changed or damaged" in err and "Traceback" not in err
    # A folder written before checksums existed: the row count still catches it.
    from visionbench.rundir import ModelMetrics, RunFolder

    model = RunFolder(folder).model("mlp")
    model.write(model.require(ModelMetrics).model_copy(update={"files": {}}))
    assert main(["evaluate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "has 2 rows but the run's test split has" in err and "Traceback" not in err
    predictions.write_text("\n".join(lines) + "\n")
    metrics = folder / "mlp" / "metrics.json"
    metrics.write_text(metrics.read_text()[:40])
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "metrics.json is damaged" in err and "Traceback" not in err


@pytest.mark.slow
def test_cache_info_and_clear(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VISIONBENCH_CACHE", str(cache))
    assert main(["inspect", "quickstart", "--out", str(tmp_path / "inspect")]) == 0
    assert f"decode cache: {cache} (1 decoded dataset(s)," in capsys.readouterr().out
    assert main(["cache", "info"]) == 0
    assert f"cache: {cache}: 1 decoded dataset(s)," in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed 1 decoded dataset(s)" in capsys.readouterr().out
    assert main(["cache", "info"]) == 0
    assert "0 decoded dataset(s), 0.0 MB" in capsys.readouterr().out
