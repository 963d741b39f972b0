"""Where a whole `visionbench run` spends its time: training, and everything that is not.

Run from the repository root:
    python benchmarks/profile_run.py CONFIG [--set KEY=VALUE ...] [--model NAME ...]
        [--top 25] [--stats FILE]
It runs the config exactly as `visionbench run` does, under cProfile, and prints:
- the seconds before the first training step of the first model (imports excluded, printed
  apart), between one model's last step and the next one's first, and after the last;
- the cumulative seconds of each phase of the run (data preparation, inspection, building
  models, training epochs, validation, test evaluation, robustness, explanations, TTA, label
  issues, the trust checks of issue 27, the report);
- the functions that cost most among those no training step reaches (own time): overhead
  that is not shared with training, where it hides.
Use the same config on the GPU (`--set train.device=cuda`) to see what is not training
there; `--stats FILE` keeps the raw profile for `python -m pstats FILE` or snakeviz.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()

from visionbench.config import load_config  # noqa: E402  (imports are timed from STARTED)
from visionbench.orchestrate import run_config  # noqa: E402
from visionbench.train.loop import Trainer  # noqa: E402

IMPORTED = time.perf_counter()

# (label, file ending, function name): the run's phases, by the function that does each.
PHASES = [
    ("data preparation (decode/cache, duplicates)", "data/dataset.py", "prepare_data"),
    ("data inspection", "data/inspect.py", "inspect_data"),
    ("building models (weights loaded)", "models/build.py", "build_model"),
    ("images onto the device", "orchestrate/execute.py", "_splits"),
    ("training epochs (steps only)", "train/loop.py", "train_step"),
    ("validation after each epoch and final evaluation", "train/loop.py", "evaluate"),
    ("error pictures", "evaluate/error_examples.py", "error_analysis"),
    ("robustness", "orchestrate/execute.py", "robustness"),
    ("explanations", "evaluate/model_explanations.py", "explain_test_set"),
    ("test-time augmentation rows", "orchestrate/execute.py", "_record_tta"),
    ("label issues", "orchestrate/label_issues.py", "write_label_issues"),
    ("trust: generic embedding (detector and shift test)", "orchestrate/unfamiliar.py",
     "embed_splits"),
    ("trust: generic detector", "orchestrate/unfamiliar.py", "fit_generic"),
    ("trust: models' own detectors", "orchestrate/unfamiliar.py", "fit_model_detector"),
    ("trust: shift test", "orchestrate/shift.py", "measure_shift"),
    ("trust: image quality", "data/quality.py", "image_quality"),
    ("trust: weak segments", "orchestrate/segments.py", "write_segments"),
    ("leaderboard, comparison and report", "orchestrate/collect.py", "finish_run"),
    ("whole run", "orchestrate/__init__.py", "run_config"),
]
# Functions these reach are training's, left out of the overhead list.
TRAINING = ("train_step",)


def _step_times() -> dict[int, list[float]]:
    """Wrap Trainer.train_step to record, per trainer (each model, fold or repeat, in the
    order the run trains them), when its first step began and its last step ended."""
    times: dict[int, list[float]] = {}
    original = Trainer.train_step

    def timed(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        found = original(self, *args, **kwargs)
        times.setdefault(id(self), [began, 0.0])[1] = time.perf_counter()
        return found

    Trainer.train_step = timed  # type: ignore[method-assign]
    return times


def _cumulative(stats: pstats.Stats, ending: str, name: str) -> tuple[float, int]:
    seconds, calls = 0.0, 0
    for (file, _, function), (primitive, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if function == name and file.endswith(ending):
            seconds += cumulative
            calls += primitive
    return seconds, calls


def _outside_training(stats: pstats.Stats, top: int) -> list[tuple[float, str]]:
    """Own time of the functions a training step never reaches (by cProfile's call edges):
    overhead that is not shared with training. Functions both use (a convolution called by
    training and by evaluation) are left out, so this is a lower bound of what is not
    training."""
    callees: dict[tuple[str, int, str], list[tuple[str, int, str]]] = {}
    for key, (_, _, _, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        for caller in callers:
            callees.setdefault(caller, []).append(key)
    todo = [key for key in stats.stats if key[2] in TRAINING]  # type: ignore[attr-defined]
    reached = set(todo)
    while todo:
        for callee in callees.get(todo.pop(), []):
            if callee not in reached:
                reached.add(callee)
                todo.append(callee)
    rows = []
    for key, (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if key not in reached and own > 0.05:
            file, line, function = key
            rows.append((own, f"{function} ({Path(file).name}:{line})"))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    """Run the config under the profiler and print where the time went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--stats", type=Path)
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    steps = _step_times()
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    run_config(config, only=args.model, report=lambda line: print(line, flush=True))
    profiler.disable()
    ended = time.perf_counter()
    if args.stats:
        profiler.dump_stats(args.stats)
    stats = pstats.Stats(profiler)
    print(f"\nimports: {IMPORTED - STARTED:.1f} s (before the run, not profiled)")
    previous = began
    for number, (first, last) in enumerate(steps.values(), start=1):
        since = "the run's start" if number == 1 else "the last step of the trainer before"
        print(f"trainer {number}: first step {first - previous:.1f} s after {since}; "
              f"{last - first:.1f} s from its first step to its last")
        previous = last
    if steps:
        print(f"after the last step: {ended - previous:.1f} s")
    print(f"\nphases (cumulative seconds under the profiler; the run took {ended - began:.1f} "
          "s):")
    for label, ending, name in PHASES:
        seconds, calls = _cumulative(stats, ending, name)
        print(f"  {label:<52} {seconds:8.1f} s  ({calls} call{'s' * (calls != 1)})")
    print(f"\ncostliest functions no training step reaches (own seconds, top {args.top}):")
    for seconds, where in _outside_training(stats, args.top):
        print(f"  {seconds:8.2f}  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
