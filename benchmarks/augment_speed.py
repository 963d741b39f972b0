"""What each training augmentation costs, in images per second through the input pipeline.

Run from the repository root:
    python benchmarks/augment_speed.py [DEVICE] [SIZE] [BATCH]

Feeds uint8 batches of SIZE x SIZE RGB images (default 224, batch 64) through the same
`InputPipeline` training uses, with each setting in turn: none (resize and normalise
only), the geometric and photometric keys of the recipes, TrivialAugment, RandAugment
(2 operations, magnitude 9), Mixup and CutMix. Prints images/s of each (best of three
passes of 20 batches) and its cost against "none". The forward and backward pass of a
model are not included: set against a model's training rate (benchmarks/train_speed.py)
to see what share of a step an augmentation takes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch

from visionbench.runtime.pipeline import InputPipeline
from visionbench.schemas.inputs import InputSpec
from visionbench.schemas.train import AugmentConfig, MixConfig
from visionbench.train.augment import BatchAugmenter
from visionbench.train.mix import BatchMixer

SETTINGS: dict[str, dict] = {
    "none": {},
    "flip + rotation + zoom + shift": {"hflip": 0.5, "rotation": 10, "zoom": 0.1,
                                       "shift": 0.05},
    "crop + flip + brightness + contrast + noise": {
        "crop": {"scale": [0.5, 1.0]}, "hflip": 0.5, "brightness": 0.3, "contrast": 0.3,
        "noise": 0.02},
    "trivialaugment": {"auto": {"policy": "trivial"}},
    "randaugment (2 ops, magnitude 9)": {"auto": {"policy": "rand", "ops": 2, "magnitude": 9}},
}


def _rate(step: Callable[[torch.Generator], torch.Tensor], batch: int,
          device: torch.device) -> float:
    gen = torch.Generator(device=device).manual_seed(0)
    step(gen)
    best = float("inf")
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            step(gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 20 * batch / best


def main() -> None:
    """Measure and print."""
    device = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cpu")
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 224
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    spec = InputSpec(size=(size, size), channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    images = torch.randint(0, 256, (batch, 3, size + 32, size + 32), dtype=torch.uint8,
                           device=device)
    targets = torch.randint(0, 4, (batch,), device=device)
    rates = {}
    for name, keys in SETTINGS.items():
        config = AugmentConfig.model_validate(keys)
        augmenter = BatchAugmenter(config, (size, size)) if config.active else None
        pipeline = InputPipeline(spec, device, True, augmenter)
        rates[name] = _rate(lambda gen, p=pipeline: p(images, targets, train=True, gen=gen),
                            batch, device)
    plain = InputPipeline(spec, device, True, None)
    for name, mixer in {"mixup (alpha 0.2)": BatchMixer(MixConfig(alpha=0.2), None, 4),
                        "cutmix (alpha 1.0)": BatchMixer(None, MixConfig(alpha=1.0), 4)
                        }.items():
        cpu = torch.Generator().manual_seed(0)
        rates[name] = _rate(lambda gen, m=mixer, g=cpu: m(
            plain(images, targets, train=True, gen=gen), targets, g)[0], batch, device)
    print(f"{device}, {size}x{size} RGB, batch {batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for name, rate in rates.items():
        cost = 1 / rate - 1 / rates["none"]
        print(f"{name:<45} {rate:>9.0f} images/s   +{cost * 1e6:7.1f} µs per image")


if __name__ == "__main__":
    main()
