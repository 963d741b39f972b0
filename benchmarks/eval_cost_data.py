"""A held-out-like set for measuring what a run's evaluation costs against its training:
10 classes of 32-px RGB images in class folders, 3,000 of them for test, and a config of
three small models with the default evaluation (robustness, explanations, report).

Run from the repository root:
    python benchmarks/eval_cost_data.py OUT
    python benchmarks/profile_run.py OUT/eval_cost.yaml

The images are procedural (a class-specific pattern with noise), so nothing is downloaded;
the numbers that matter are the seconds of each phase, not the accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10
SIZE = 32
CONFIG = """# What evaluation costs against training (benchmarks/eval_cost_data.py).
data:
  source: folder
  path: {data}
  preprocess: {{size: 32}}
  split: {{test: 0.5, val: 0.2, seed: 0}}
models:
  small: {{layers: [{{type: conv, filters: 16}}, {{type: pool}}, {{type: conv, filters: 32}},
                  {{type: pool}}, {{type: flatten}}, {{type: dense, units: 64}}]}}
  wide: {{layers: [{{type: conv, filters: 48}}, {{type: pool}}, {{type: conv, filters: 64}},
                 {{type: pool}}, {{type: flatten}}, {{type: dense, units: 128}}]}}
  {third}
train: {{epochs: 6, progress: lines}}
output: {{dir: {out}/runs}}
"""


def _image(label: int, rng: np.random.Generator) -> Image.Image:
    """A class-specific stripe frequency and colour under noise."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    wave = np.sin(2 * np.pi * (label + 1) * (x * np.cos(label) + y * np.sin(label)))
    colour = np.array([(label * 37) % 255, (label * 91) % 255, (label * 53) % 255]) / 255
    pixels = 0.5 + 0.35 * wave[..., None] * colour + rng.normal(0, 0.18, (SIZE, SIZE, 3))
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))


def main() -> None:
    """Write the images (600 per class: 3,000 of them land in test) and the config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--backbone-size", type=int, default=None,
                        help="third model: pretrained EfficientNet-Lite0 at this input size "
                             "(default: an MLP)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = args.out / "data"
    for label in range(CLASSES):
        folder = data / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(args.per_class):
            _image(label, rng).save(folder / f"{index}.jpg", quality=90)
    config = args.out / "eval_cost.yaml"
    third = ("mlp: {preset: mlp}" if args.backbone_size is None else
             "lite0: {backbone: efficientnet_lite0, pretrained: true, input: {size: "
             f"{args.backbone_size}}}}}")
    config.write_text(CONFIG.format(data=data.resolve(), out=args.out.resolve(), third=third))
    print(f"{CLASSES * args.per_class} images in {data}; config {config}")


if __name__ == "__main__":
    main()
