"""Time to explain and report a 4-model run on the brain-tumour MRI set.

Run from the repository root:  python benchmarks/report_speed.py [DATA_DIR] [OUT_DIR]
Trains four quick models (1 epoch, 128 px grey; training time is not what is measured)
on `brain_tumor_mri` (394 test images), then times, separately: the explanation maps
(8 test images x 5 methods per model, with deletion scores) and building `report.html`
from the folder; prints the HTML size.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from visionbench.config import load_config
from visionbench.orchestrate import run_config
from visionbench.orchestrate.explain import explain_run
from visionbench.report.build import write_report

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain_tumor_mri"
MODELS = {
    "small_cnn": {"preset": "mnist_baseline"},
    "wide_cnn": {"layers": [
        {"type": "conv", "filters": 32}, {"type": "batchnorm"}, {"type": "pool"},
        {"type": "conv", "filters": 64}, {"type": "batchnorm"}, {"type": "pool"},
        {"type": "conv", "filters": 64}, {"type": "pool", "kind": "global_avg"},
        {"type": "dense", "units": 64}]},
    "lite0": {"backbone": "efficientnet_lite0", "pretrained": True, "input": {"size": 128},
              "freeze": "base"},
    "mlp": {"preset": "mlp"},
}


def main() -> None:
    """Measure and print."""
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("runs")
    if not data_dir.is_dir():
        sys.exit(f"no brain-tumour data at {data_dir}")
    overrides = [f"data.path={data_dir}", "data.preprocess.size=128", "train.epochs=1",
                 "train.progress=lines", f"output.dir={out}", "output.name=report_speed",
                 "evaluate.explain.images=0"]
    # A Python dict literal is a YAML flow mapping, so it goes through --set as is.
    config = load_config("brain_tumor", [*overrides, *(
        f"models.{name}={entry}" for name, entry in MODELS.items())])
    config.models = {name: config.models[name] for name in MODELS}
    started = time.perf_counter()
    result = run_config(config, report=print)
    trained = time.perf_counter() - started
    started = time.perf_counter()
    for name in MODELS:
        explain_run(result.folder, name)
    explained = time.perf_counter() - started
    started = time.perf_counter()
    path = write_report(result.run)
    reported = time.perf_counter() - started
    print(f"run folder {result.folder}")
    print(f"training and evaluation (not the target): {trained:.1f} s")
    print(f"explanations, 4 models x 8 images x 5 methods: {explained:.1f} s")
    print(f"report.html build: {reported:.1f} s; size {path.stat().st_size / 2**20:.1f} MB")
    print(f"explanations + report: {explained + reported:.1f} s (target < 60 s)")


if __name__ == "__main__":
    main()
