"""`execution: {executor: ray}`: the models of a run as parallel tasks on a local Ray of 2
CPUs give the run folder the sequential executor gives (same seeds, same numbers)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from visionbench.cli import main

# Whole runs end to end: with `pytest --slow` (CI).
pytestmark = pytest.mark.slow

CONFIG = """
data: {{source: digits, split: {{seed: 1}}}}
models:
  small: {{layers: [{{type: conv, filters: 4}}, {{type: pool}}, {{type: flatten}}]}}
  wide: {{layers: [{{type: conv, filters: 8}}, {{type: pool}}, {{type: flatten}}]}}
  mlp: {{preset: mlp}}
  dense: {{layers: [{{type: flatten}}, {{type: dense, units: 16}}]}}
train: {{epochs: 2, progress: quiet}}
evaluate: {{bootstrap: 50, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
execution: {execution}
output: {{dir: {out}}}
"""


def _run(tmp_path: Path, name: str, execution: str) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(CONFIG.format(execution=execution, out=tmp_path / name))
    assert main(["run", str(config)]) == 0
    return next((tmp_path / name / name).iterdir())


def _probabilities(path: Path) -> np.ndarray:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return np.asarray([[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows])


def test_a_local_ray_gives_the_sequential_run_folder(tmp_path):
    sequential = _run(tmp_path, "sequential", "{executor: local}")
    parallel = _run(tmp_path, "parallel", "{executor: ray, local_cpus: 2, cpus: 1}")
    boards = [json.loads((folder / "leaderboard.json").read_text())
              for folder in (sequential, parallel)]
    rows = [{r["model"]: r for r in board["rows"]} for board in boards]
    assert set(rows[0]) == set(rows[1]) == {"small", "wide", "mlp", "dense"}
    for model in rows[0]:
        assert rows[1][model]["status"] == "ok"
        for split in ("predictions.csv", "predictions_val.csv"):
            assert np.allclose(_probabilities(sequential / model / split),
                               _probabilities(parallel / model / split), atol=1e-5)
        assert rows[1][model]["metrics"]["accuracy"]["value"] == pytest.approx(
            rows[0][model]["metrics"]["accuracy"]["value"], abs=1e-9)
        files = [sorted(p.relative_to(f / model).as_posix() for p in (f / model).rglob("*"))
                 for f in (sequential, parallel)]
        assert files[0] == files[1]
    assert boards[0]["recommended"] == boards[1]["recommended"]


def test_on_ray_every_fold_is_a_task_and_the_run_folder_is_the_sequential_one(tmp_path):
    config = CONFIG.replace("split: {{seed: 1}}", "split: {{seed: 1, folds: 2}}")
    # One model is enough here: its two folds are two tasks, its refit a third.
    config = "\n".join(line for line in config.splitlines()
                        if not line.startswith(("  wide:", "  mlp:", "  dense:")))
    runs = []
    for name, execution in (("sequential", "{executor: local}"),
                            ("parallel", "{executor: ray, local_cpus: 2}")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(config.format(execution=execution, out=tmp_path / name))
        assert main(["run", str(path)]) == 0
        runs.append(next((tmp_path / name / name).iterdir()))
    for fold in ("folds/0/", "folds/1/", ""):
        for split in ("predictions.csv", "predictions_val.csv"):
            assert np.allclose(_probabilities(runs[0] / "small" / (fold + split)),
                               _probabilities(runs[1] / "small" / (fold + split)), atol=1e-5)


def test_a_sweep_runs_its_trials_as_ray_tasks(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"""
data: {{source: digits, split: {{seed: 1}}}}
models:
  small: {{layers: [{{type: conv, filters: 4}}, {{type: pool}}, {{type: flatten}}]}}
train: {{epochs: 2, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
execution: {{executor: ray, local_cpus: 2}}
sweep:
  model: small
  trials: 3
  parallel: 2
  space: {{train.optimizer.lr: {{low: 1.0e-3, high: 1.0e-1, log: true}}}}
output: {{dir: {tmp_path / 'runs'}}}
""")
    assert main(["run", str(path)]) == 0
    run = next((tmp_path / "runs" / "sweep").iterdir())
    found = json.loads((run / "sweep.json").read_text())
    assert [t["state"] for t in found["trials"]] == ["complete"] * 3
    assert all((run / "sweep" / f"trial-{n}" / "predictions_val.csv").is_file()
               for n in range(3))
    board = json.loads((run / "leaderboard.json").read_text())
    assert {r["model"] for r in board["rows"]} == {"small", "small_tuned"}


# Ray's gRPC servers (GCS, raylet, each core worker) listen on the wildcard address and Ray
# has no setting that moves them; token authentication is what keeps others out there.
RAY_WILDCARD = {"::", "0.0.0.0"}


def test_a_local_ray_listens_on_loopback_or_behind_its_token_and_refuses_strangers(
        tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import tempfile

    import ray

    from conftest import ListenerWatch, is_loopback
    from visionbench.errors import UserError
    from visionbench.runtime.executors import executor_session, run_on_ray
    from visionbench.schemas.execution import ExecutionConfig

    cache = Path(tempfile.mkdtemp(prefix="vb-"))  # short enough for Ray's socket paths
    monkeypatch.setenv("VISIONBENCH_CACHE", str(cache))
    settings = ExecutionConfig(executor="ray", local_cpus=1)
    results = {}
    with ListenerWatch() as watch, executor_session(settings):
        run_on_ray(lambda shared, item: shared + item, "a", ["b"], settings,
                   lambda item, result: results.update({item: result}))
        gcs = ray.get_runtime_context().gcs_address
        # A driver without the run's token is refused, even on the address Ray advertises.
        stranger = subprocess.run(
            [sys.executable, "-c", f"import ray; ray.init(address='{gcs}')"],
            env={**os.environ, "RAY_AUTH_MODE": "disabled", "HOME": str(tmp_path)},
            capture_output=True, text=True, timeout=180)
    assert results == {"b": "ab"}
    assert os.environ.get("RAY_COLOR_PREFIX") == "0", "no colour codes in a captured log"
    assert stranger.returncode != 0 and "Failed to connect" in stranger.stderr
    assert is_loopback(gcs.rsplit(":", 1)[0]), f"Ray advertises {gcs}"
    outward = {found for found in watch.seen
               if not is_loopback(found[1]) and found[1] not in RAY_WILDCARD}
    assert outward == set(), "a listener on an outward address"
    # Ray's own files stay in the cache, not in the system's temporary folder.
    assert any((cache / "ray").glob("session_*"))
    assert main(["cache", "clear"]) == 0 and not (cache / "ray").exists()
    cache.rmdir()

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(UserError, match="RAY_AUTH_MODE=disabled"), executor_session(settings):
        pass
