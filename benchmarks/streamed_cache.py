"""Training throughput with the decoded cache and with streamed images (decoded from their
files as they are read, `data.cache.max_gb: 0`), on the brain recipe's Lite0 at 224 px.

Run from the repository root:  python benchmarks/streamed_cache.py [DATA_DIR]
                                   [--per-class 150] [--epochs 1] [--rounds 1]
                                   [--only memory|batches] [--interleave BLOCKS]

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

Whole runs minutes apart still differ by more than the effect measured (81 % to 125 % in
two rounds of the same pair). `--interleave BLOCKS` measures the ratio where the drift
cancels: one model and optimizer (the same recipe model, built and trained by
visionbench's own `Trainer.train_step`) trains on the same training split read a batch at a
time, alternately from the decoded cache and streamed from its files, `BLOCKS` blocks of
each, one epoch of batches per block; the ratio is the median of the adjacent blocks'
ratios. It also times the wait for each batch apart: the steps are the same computation
both ways, so the waits give the ratio with the drift left out.
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


def interleaved(data: Path, per_class: int, blocks: int, work: Path
                ) -> tuple[list[float], list[float]]:
    """Streamed / decoded training rate of adjacent blocks of batches of one trainer, as
    measured and as the time spent waiting for batches implies."""
    import torch

    from visionbench.config import load_config
    from visionbench.data.dataset import prepare_data
    from visionbench.models.build import build_model
    from visionbench.models.freeze import apply_freeze, set_train_mode
    from visionbench.orchestrate.execute import data_facts
    from visionbench.runtime.batches import SplitImages
    from visionbench.runtime.device import pick_device
    from visionbench.train.balance import epoch_order
    from visionbench.train.loop import Trainer, plan_stages
    from visionbench.train.optim import make_optimizer

    settings = [f"data.path={data}", f"data.split.limit_per_class={per_class}",
                f"data.cache_dir={work / 'cache'}"]
    config = load_config("recipes/brain_tumor.yaml", settings)
    streamed_config = load_config("recipes/brain_tumor.yaml",
                                  [*settings, "data.cache.max_gb=0"])
    decoded_data = prepare_data(config.data)
    streamed_data = prepare_data(streamed_config.data)
    model_cfg = config.models["best"]
    device = pick_device(model_cfg.train.device)
    facts = data_facts(decoded_data)
    built = build_model(model_cfg, len(decoded_data.classes), facts.image_shape, facts.mean,
                        facts.std, facts.per_image)
    splits = {name: SplitImages(prepared, "train", device, 0)
              for name, prepared in (("decoded", decoded_data), ("streamed", streamed_data))}
    stages = plan_stages(model_cfg)
    trainer = Trainer(built, model_cfg.train, stages, splits["decoded"], None,
                      decoded_data.classes, device)
    apply_freeze(built, stages[-1].freeze)
    trainer.optimizer = make_optimizer(
        [p for p in trainer.model.parameters() if p.requires_grad], stages[-1].optimizer)
    set_train_mode(trainer.model)
    batch_size = model_cfg.train.batch_size
    # Two untimed steps first: the first steps pay for allocations the others reuse.
    warm = torch.arange(min(2 * batch_size, len(splits["decoded"])))
    for images, targets in splits["decoded"].batches(warm, batch_size):
        trainer.train_step(images, targets, 1e-4, torch.Generator(device=device),
                           torch.Generator())
    rates: dict[str, list[float]] = {"decoded": [], "streamed": []}
    waiting: dict[str, list[float]] = {"decoded": [], "streamed": []}
    for block in range(blocks):
        # Decoded first in even blocks, streamed first in odd ones: a drift within a pair
        # favours each side equally often.
        for name in ("decoded", "streamed")[::1 if block % 2 == 0 else -1]:
            split = splits[name]
            gen = torch.Generator().manual_seed(block)
            order = epoch_order(model_cfg.train.balance, split.targets,
                                len(decoded_data.classes), gen)
            device_gen = torch.Generator(device=device).manual_seed(block)
            batches = split.batches(order, batch_size)
            started = time.perf_counter()
            waited = 0.0
            while True:
                asked = time.perf_counter()
                batch = next(batches, None)
                waited += time.perf_counter() - asked
                if batch is None:
                    break
                trainer.train_step(*batch, 1e-4, device_gen, gen)
            seconds = time.perf_counter() - started
            rates[name].append(len(order) / seconds)
            waiting[name].append(waited / seconds)
            print(f"block {block + 1} | {name:>8}: {rates[name][-1]:.2f} images/s, "
                  f"{waiting[name][-1]:.1%} of the time waiting for batches", flush=True)
    # The training steps are the same computation both ways; what the streamed path adds is
    # the wait for its batches, a share that the machine's drift barely moves.
    steps_alike = [(1 - streamed) / (1 - decoded) for decoded, streamed
                   in zip(waiting["decoded"], waiting["streamed"], strict=True)]
    measured = [streamed / decoded for decoded, streamed
                in zip(rates["decoded"], rates["streamed"], strict=True)]
    return measured, steps_alike


def main() -> None:
    """Measure the whole runs (or, with --interleave, the blocks) and print their rates
    and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", choices=["memory", "batches"])
    parser.add_argument("--interleave", type=int, metavar="BLOCKS")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data}")
    if args.interleave:
        with tempfile.TemporaryDirectory() as work:
            measured, steps_alike = interleaved(args.data, args.per_class, args.interleave,
                                                Path(work))
        print("streamed / decoded per block: " + ", ".join(f"{r:.1%}" for r in measured))
        print(f"median ratio over {len(measured)} block pairs: "
              f"{statistics.median(measured):.1%}; from the time waiting for batches (the "
              f"steps alike): {statistics.median(steps_alike):.1%}")
        return
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
