"""The shift checks of issue 27 §2 on the real data in `../shared/data`: the chest X-ray's
official test split against its training images (the test must be found shifted), the
brain-tumour Testing split against Training, and the false-alarm rate of the same test on
random splits of one folder (about `alpha`, 5 %, expected).

Run from the repository root:
    python benchmarks/shift_check.py [--splits 100] [--size 128]
It decodes each set once at SIZE px (cached by visionbench), embeds it with the generic
embedding (EfficientNet-Lite0 at 48 px, as a run does), then runs the run's own test
(`evaluate.shift.compare`, the defaults of `evaluate.shift`) and prints one line per
comparison and the false-alarm rates. Needs `../shared/data`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from visionbench.config import load_config
from visionbench.data.dataset import PreparedData, prepare_data
from visionbench.evaluate.robustness import stratified_sample
from visionbench.evaluate.shift import compare, verdict
from visionbench.orchestrate.shift import measure_shift, properties_of
from visionbench.orchestrate.unfamiliar import embed_splits
from visionbench.rundir.documents import ShiftDocument
from visionbench.rundir.layout import RunFolder
from visionbench.schemas.evaluate import ShiftConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data(source: str, path: Path, size: int, folder: Path) -> PreparedData:
    config = folder / f"{path.name}.yaml"
    config.write_text(f"data: {{source: {source}, path: '{path}', preprocess: {{size: {size}}}}}\n"
                      "models: {m: {preset: mlp}}\n")
    return prepare_data(load_config(config).data)


def split_against_training(name: str, data: PreparedData, settings: ShiftConfig,
                           folder: Path) -> None:
    """The run's own test of its validation and test splits against training
    (`measure_shift`, into a scratch run folder)."""
    started = time.perf_counter()
    run = RunFolder(folder / f"{name} run")
    run.path.mkdir()
    measure_shift(run, data, embed_splits(data, settings.images, 0, "quiet"), settings, 0)
    for split, found in run.require(ShiftDocument).splits.items():
        print(f"{name} {split}: {verdict(found, f'the {split} images')}")
    print(f"  ({time.perf_counter() - started:.0f} s with embedding)")


def false_alarms(name: str, data: PreparedData, splits: int, settings: ShiftConfig) -> None:
    """Random stratified halves of one folder's training images: how often the test and
    a property call them shifted."""
    embedded = embed_splits(data, 10**9, 0, "quiet")
    everything = embedded.splits["train"]
    properties = properties_of(data, embedded.positions)
    labels = embedded.labels
    shifted, moved, seconds = 0, 0, []
    for seed in range(splits):
        rng = np.random.default_rng(seed)
        test = np.zeros(len(labels), bool)
        for label in np.unique(labels):
            mine = rng.permutation(np.flatnonzero(labels == label))
            test[mine[:round(0.2 * len(mine))]] = True
        train = np.flatnonzero(~test)[stratified_sample(labels[~test], settings.images, seed)]
        other = rng.permutation(np.flatnonzero(test))[:settings.images]
        started = time.perf_counter()
        found = compare((everything[train], {k: v[train] for k, v in properties.items()}),
                        (everything[other], {k: v[other] for k, v in properties.items()}),
                        settings, seed)
        seconds.append(time.perf_counter() - started)
        shifted += found.shifted
        moved += any(row.moved for row in found.properties)
    print(f"{name}: {splits} random 80/20 splits of {len(labels):,} images: found shifted "
          f"{shifted} times ({shifted / splits:.1%}), a property moved {moved} times "
          f"({moved / splits:.1%}); {np.median(seconds):.2f} s per test")


def main() -> None:
    """The chest and brain splits against training, then random-split false alarms."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    settings = ShiftConfig()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        chest = _data("presplit", SHARED / "chest_xray_224", args.size, folder)
        split_against_training("chest X-ray", chest, settings, folder)
        brain = _data("presplit", SHARED / "brain_tumor_mri", args.size, folder)
        split_against_training("brain MRI", brain, settings, folder)
        false_alarms("brain MRI Training", _data("folder", SHARED / "brain_tumor_mri" /
                                                 "Training", args.size, folder),
                     args.splits, settings)
        false_alarms("chest X-ray train", _data("folder", SHARED / "chest_xray_224" / "train",
                                                args.size, folder), args.splits, settings)


if __name__ == "__main__":
    main()
