"""Speed of the whole evaluation: 10 models x 10,000 test images x 10 classes, every
headline metric with 1,000 stratified bootstrap resamples, per-class tables, curves,
calibration, and every pairwise test (paired bootstrap, McNemar, DeLong per class).

Run from the repository root:  python benchmarks/evaluate_speed.py [MODELS] [IMAGES] [CLASSES]
Prints the seconds of each part and the total. Synthetic predictions, so no data needed.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from visionbench.evaluate.evaluation import compare_models, evaluate_model
from visionbench.evaluate.statistics import bootstrap_weights
from visionbench.rundir.predictions import Predictions
from visionbench.schemas.evaluate import EvaluateConfig


def synthetic(models: int, images: int, classes: int) -> dict[str, Predictions]:
    """Models of increasing skill on the same test images."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, images)
    ids = [f"img{i}.png" for i in range(images)]
    found = {}
    for m in range(models):
        logits = rng.normal(size=(images, classes)) + (1 + 0.1 * m) * np.eye(classes)[y]
        prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        found[f"model_{m}"] = Predictions(ids, y, prob)
    return found


def main() -> None:
    """Measure and print."""
    models, images, classes = (int(a) for a in [*sys.argv[1:], "10", "10000", "10"][:3])
    predictions = synthetic(models, images, classes)
    settings = EvaluateConfig(bootstrap=1000)
    names = [f"c{k}" for k in range(classes)]
    started = time.perf_counter()
    reference = next(iter(predictions.values()))
    weights = bootstrap_weights(reference.y_true, settings.bootstrap, settings.seed)
    drawn = time.perf_counter()
    evaluations = {n: evaluate_model(p, names, settings, weights=weights)
                   for n, p in predictions.items()}
    evaluated = time.perf_counter()
    compare_models(evaluations, predictions, names, settings)
    done = time.perf_counter()
    print(f"{models} models x {images} images x {classes} classes, "
          f"{settings.bootstrap} resamples, {len(settings.metrics)} headline metrics")
    print(f"bootstrap draw        {drawn - started:6.2f} s")
    print(f"evaluate every model  {evaluated - drawn:6.2f} s")
    print(f"pairwise tests ({models * (models - 1) // 2} pairs) {done - evaluated:6.2f} s")
    print(f"total                 {done - started:6.2f} s")


if __name__ == "__main__":
    main()
