"""Training throughput with the decoded cache and with streamed images (decoded from their
files as they are read, `data.cache.max_gb: 0`), on the brain recipe's Lite0 at 224 px.

Run from the repository root:  python benchmarks/streamed_cache.py [DATA_DIR]
                                   [--per-class 150] [--epochs 1] [--rounds 1]
                                   [--only memory|batches]

Four one-model runs of the recipe's `best` model (EfficientNet-Lite0, ImageNet weights,
every layer trained) on a class-balanced subset: the decoded cache and streamed images,
each with the training split held in memory (the default when it fits
`train.memory_budget_mb`) and read from its store a batch at a time (`memory_budget_mb: 0`,
the path a dataset too large for memory takes). Throughput is training images per second
of the epochs (`history.json`), the ratio streamed / decoded per memory setting. Each run
has its own empty cache, so the decoded runs pay for their decode before training, as a
first run does; that time is printed apart. This machine's speed drifts by tens of per
cent between minutes, so `--rounds N` repeats each pair (decoded, then streamed) and the
ratio reported is the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain_tumor_mri"


def one_run(data: Path, per_class: int, epochs: int, streamed: bool, budget_mb: int | None,
            work: Path) -> dict[str, float]:
    """Run the recipe's `best` model alone; its epochs' images per second and times."""
    out = Path(tempfile.mkdtemp(dir=work))
    settings = [
        f"data.path={data}", f"data.split.limit_per_class={per_class}",
        f"data.cache_dir={out / 'cache'}",
        f"models.best.stages=[{{name: all, epochs: {epochs}, freeze: none, "
        "optimizer: {lr: 3.0e-4}}]",
        f"models.best.train.epochs={epochs}", "train.progress=quiet",
        "evaluate.bootstrap=0", "evaluate.robustness={}", "evaluate.explain.images=0",
        "evaluate.error_examples=0", "evaluate.unfamiliar=null", "evaluate.shift=null",
        "evaluate.segments=null", f"output.dir={out / 'runs'}",
        *(["data.cache.max_gb=0"] if streamed else []),
        *([f"train.memory_budget_mb={budget_mb}"] if budget_mb is not None else []),
    ]
    command = [sys.executable, "-m", "visionbench", "run", "recipes/brain_tumor.yaml",
               "--model", "best", *[part for setting in settings for part in ("--set", setting)]]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "VISIONBENCH_CACHE": str(out / "cache")})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"run failed:\n{done.stderr[-3000:]}")
    run = next((out / "runs" / "brain_tumor").iterdir())
    history = json.loads((run / "best" / "history.json").read_text())["epochs"]
    record = json.loads((run / "data.json").read_text())
    seconds = sum(row["seconds"] for row in history)
    images = sum(row["images"] for row in history)
    return {"rate": images / seconds, "epoch_s": seconds / len(history), "wall_s": wall,
            "decode_s": record["cache"]["seconds"],
            "streamed": float(record["cache"].get("streamed", False))}


def main() -> None:
    """Measure the four runs and print their rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", choices=["memory", "batches"])
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data}")
    settings = {"memory": ("split in memory", None), "batches": ("read a batch at a time", 0)}
    chosen = [settings[args.only]] if args.only else list(settings.values())
    with tempfile.TemporaryDirectory() as work:
        for label, budget in chosen:
            ratios = []
            for round_number in range(1, args.rounds + 1):
                rates = {}
                for streamed in (False, True):
                    row = one_run(args.data, args.per_class, args.epochs, streamed, budget,
                                  Path(work))
                    assert bool(row["streamed"]) == streamed
                    rates[streamed] = row["rate"]
                    kind = "streamed" if streamed else "decoded cache"
                    print(f"{label:>24} | round {round_number} | {kind:>13}: "
                          f"{row['rate']:.2f} images/s, epoch {row['epoch_s']:.1f} s, cache "
                          f"step {row['decode_s']:.1f} s, whole run {row['wall_s']:.0f} s",
                          flush=True)
                ratios.append(rates[True] / rates[False])
                print(f"{label:>24} | round {round_number} | streamed / decoded: "
                      f"{ratios[-1]:.1%}", flush=True)
            print(f"{label:>24} | median ratio over {len(ratios)} round(s): "
                  f"{statistics.median(ratios):.1%}", flush=True)


if __name__ == "__main__":
    main()
