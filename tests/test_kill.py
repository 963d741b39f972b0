"""A run killed (SIGKILL: no cleanup, no finally) at any point resumes to the same result as
a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Whole runs end to end: with `pytest --slow` (CI).
pytestmark = pytest.mark.slow

CONFIG = """
data: {source: digits, split: {val: 0.25, test: 0.25, seed: 1, limit_per_class: 20}}
models:
  a: {preset: mlp}
  b: {preset: mlp, train: {epochs: 3}}
train: {epochs: 2, batch_size: 16, progress: lines}
evaluate: {robustness: {noise: [0.1]}, error_examples: 2, bootstrap: 50,
           explain: {images: 2, steps: 2, samples: 2, methods: [occlusion]}}
output: {dir: OUT, name: tiny}
"""

# Where the run is killed: (module, attribute, after how many calls the process dies).
POINTS = {
    "before the first epoch": ("visionbench.train.loop", "Trainer._train_epoch", 1),
    "mid-epoch": ("visionbench.train.callbacks", "Progress.on_batch_end", 5),
    "after the last epoch, during evaluation": (
        "visionbench.orchestrate.execute", "_record_evaluations", 2),
    "during explanation": ("visionbench.orchestrate.execute", "explain_test_set", 2),
    "during the report": ("visionbench.orchestrate.collect", "write_report", 1),
}

KILLER = """
import importlib, os, signal, sys
from visionbench.cli import main
module_name, attribute, after = sys.argv[1], sys.argv[2], int(sys.argv[3])
module = importlib.import_module(module_name)
owner_name, _, name = attribute.rpartition(".")
owner = getattr(module, owner_name) if owner_name else module
real = getattr(owner, name)
calls = [0]
def dying(*args, **kwargs):
    calls[0] += 1
    if calls[0] >= after:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(owner, name, dying)
sys.exit(main(sys.argv[4:]))
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG.replace("OUT", str(tmp_path / "runs")))
    return path


def _results(folder: Path) -> dict[str, object]:
    board = json.loads((folder / "leaderboard.json").read_text())
    return {"rows": [(r["model"], r["status"], r["metrics"]["accuracy"]["value"])
                     for r in board["rows"]],
            **{name: (folder / name / "predictions.csv").read_text() for name in ("a", "b")}}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from visionbench.cli import main

    tmp_path = tmp_path_factory.mktemp("straight")
    assert main(["run", str(_config(tmp_path))]) == 0
    return _results(next((tmp_path / "runs" / "tiny").iterdir()))


@pytest.mark.parametrize("point", list(POINTS))
def test_a_run_killed_anywhere_resumes_to_the_same_result(tmp_path, point, uninterrupted):
    from visionbench.cli import main

    config = _config(tmp_path)
    module, attribute, after = POINTS[point]
    env = {**os.environ, "VISIONBENCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), module, attribute,
                           str(after), "run", str(config)], capture_output=True, text=True,
                          timeout=300, env=env, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    folder = next((tmp_path / "runs" / "tiny").iterdir())
    assert main(["run", str(config), "--resume", str(folder)]) == 0
    assert _results(folder) == uninterrupted


# Where a `continue` is killed (the same kinds of points as a run's).
CONTINUE_POINTS = {
    # In its second epoch: the first has left a checkpoint of the continuation.
    "mid-continuation": ("visionbench.train.callbacks", "Progress.on_batch_end", 10),
    "after its last epoch, during evaluation": (
        "visionbench.orchestrate.execute", "_record_evaluations", 1),
    "during the report": ("visionbench.orchestrate.collect", "write_report", 1),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """A finished run folder, and the results of continuing model b 2 epochs without a
    kill (on a copy)."""
    import shutil

    from visionbench.cli import main

    tmp_path = tmp_path_factory.mktemp("tocontinue")
    assert main(["run", str(_config(tmp_path))]) == 0
    folder = next((tmp_path / "runs" / "tiny").iterdir())
    straight = tmp_path / "straight"
    shutil.copytree(folder, straight, symlinks=True)
    assert main(["continue", str(straight), "--epochs", "2", "--model", "b"]) == 0
    return folder, _results(straight)


@pytest.mark.parametrize("point", list(CONTINUE_POINTS))
def test_a_continue_killed_anywhere_keeps_the_model_and_finishes_when_retried(
        tmp_path, point, finished):
    import shutil

    import visionbench
    from visionbench.cli import main

    original, continued = finished
    folder = tmp_path / "run"
    shutil.copytree(original, folder, symlinks=True)
    before = (folder / "b" / "predictions.csv").read_text()
    module, attribute, after = CONTINUE_POINTS[point]
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), module, attribute,
                           str(after), "continue", str(folder), "--epochs", "2", "--model",
                           "b"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    if point == "during the report":
        # The model was continued and recorded before the report: only the run's summary
        # is left to write, which `evaluate` does.
        assert json.loads((folder / "b" / "metrics.json").read_text())["epochs"] == 5
        assert main(["evaluate", str(folder)]) == 0
        assert _results(folder) == continued
        return
    # Killed: the finished model is still there and usable, as it was.
    metrics = json.loads((folder / "b" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs"] == 3
    assert (folder / "b" / "predictions.csv").read_text() == before
    assert visionbench.load(folder, model="b").name == "b"
    # The same command again finishes the continuation, to the uninterrupted result.
    assert main(["continue", str(folder), "--epochs", "2", "--model", "b"]) == 0
    assert _results(folder) == continued
    assert json.loads((folder / "b" / "metrics.json").read_text())["epochs"] == 5
    kept = json.loads((folder / "b" / "earlier" / "epoch-3" / "metrics.json").read_text())
    assert kept["epochs"] == 3
