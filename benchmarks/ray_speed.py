"""Four models of the MNIST recipe trained one after the other (`execution.executor:
local`) and as parallel Ray tasks on this machine (`ray`): wall time of each, the speedup,
and Ray's overhead (its start and stop), with a check that both give the same numbers.

Run from the repository root:
    python benchmarks/ray_speed.py [MNIST_T10K_DIR] [EPOCHS] [CPUS_PER_TASK] [GPUS_PER_TASK]
Defaults: ../shared/data/mnist_t10k, 3 epochs, 1 CPU per task, no GPU. On a GPU machine
pass a GPU fraction (e.g. 0.25: four models share one device). The models are the
recipe's `baseline`, `bn_dropout`, `deeper` and `onecycle`; robustness, explanations and
error pictures are off, so the time is training and prediction.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from visionbench.config import load_config
from visionbench.orchestrate import run_config

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist_t10k"
MODELS = ["baseline", "bn_dropout", "deeper", "onecycle"]


def _run(data: Path, out: Path, epochs: int, execution: dict[str, object]) -> tuple[float, dict]:
    settings = [f"data.path={data}", f"train.epochs={epochs}", "train.progress=quiet",
                "evaluate.robustness={}", "evaluate.explain.images=0",
                "evaluate.error_examples=0", f"output.dir={out}",
                *(f"execution.{key}={value}" for key, value in execution.items())]
    config = load_config("mnist", settings)
    started = time.perf_counter()
    result = run_config(config, only=MODELS, report=lambda line: None)
    seconds = time.perf_counter() - started
    board = json.loads((result.folder / "leaderboard.json").read_text())
    return seconds, {row["model"]: row["metrics"]["accuracy"]["value"] for row in board["rows"]}


def main() -> None:
    """Measure and print."""
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cpus = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    gpus = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    with tempfile.TemporaryDirectory() as folder:
        # A first run fills the decode cache, so neither measured run decodes.
        _run(data, Path(folder) / "warm", 1, {"executor": "local"})
        local, local_acc = _run(data, Path(folder) / "local", epochs, {"executor": "local"})
        started = time.perf_counter()
        import ray

        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
        overhead = time.perf_counter() - started
        parallel, ray_acc = _run(data, Path(folder) / "ray", epochs,
                                 {"executor": "ray", "cpus": cpus, "gpus": gpus})
        started = time.perf_counter()
        ray.shutdown()
        overhead += time.perf_counter() - started
    print(f"{len(MODELS)} models x {epochs} epochs, {cpus:g} CPU and {gpus:g} GPU per task")
    print(f"sequential: {local:.1f} s; Ray: {parallel:.1f} s (+ {overhead:.1f} s to start and "
          f"stop Ray); speedup {local / parallel:.2f}x, {local / (parallel + overhead):.2f}x "
          "with the start")
    # Ray gives each task one thread where the sequential run uses every core: float sums
    # are grouped differently, so the weights drift apart by rounding over the epochs.
    print("test accuracy, sequential / Ray: " + ", ".join(
        f"{m} {local_acc[m]:.4f} / {ray_acc[m]:.4f}" for m in MODELS))


if __name__ == "__main__":
    main()
