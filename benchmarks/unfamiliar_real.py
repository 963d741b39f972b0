"""Every unfamiliar-image detector measured on a trained run's model and real foreign images
(issue 27): how well each method, alone and combined with the generic embedding's detector,
tells foreign images from the model's own test images.

Run from the repository root, after `visionbench run` trained the model:
    python benchmarks/unfamiliar_real.py RUN_DIR [--model best] --foreign NAME=PATH ...
        [--json OUT.json]
Each foreign PATH is a folder of images (at most 500 read, in name order, decoded as the run
decodes its own). For each method the detector is fitted as a run fits it (a stratified
sample of `evaluate.unfamiliar.train_images` training images, the threshold at the `keep`
quantile of the validation scores) and measured against the test images: AUROC with its
95 % bootstrap interval, the false-positive rate at 95 % true-positive rate, and the share
of foreign images flagged at the threshold. The data are prepared again from the run's own
config (same splits: they are seeded), so run it where the run's data path resolves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from visionbench import load
from visionbench.config import load_config
from visionbench.data.dataset import prepare_data
from visionbench.data.foreign import folder_images
from visionbench.evaluate.robustness import stratified_sample
from visionbench.evaluate.unfamiliar import (
    DETECTORS,
    fit_unfamiliar,
    output_layer_arrays,
    score,
    separation,
)
from visionbench.orchestrate.unfamiliar import GENERIC_METHOD
from visionbench.rundir.layout import CONFIG
from visionbench.runtime import embedding
from visionbench.runtime.features import features_of
from visionbench.schemas.evaluate import UnfamiliarConfig

Sets = dict[str, np.ndarray]


def _embedded(pictures: np.ndarray, device: torch.device) -> np.ndarray:
    images = torch.from_numpy(np.ascontiguousarray(pictures)).permute(0, 3, 1, 2)
    return np.concatenate([embedding.embed(images[start:start + 1024].to(device))
                           for start in range(0, len(images), 1024)])


def measure(run_dir: Path, model: str, foreign: dict[str, Path]) -> dict[str, dict]:
    """Method -> foreign set -> separation (and "own test flagged") for `model` of the run."""
    config = load_config(run_dir / CONFIG)
    settings = config.evaluate.unfamiliar or UnfamiliarConfig()
    seed = config.evaluate.seed
    data = prepare_data(config.data)
    loaded = load(run_dir, model).members[0][0]
    module, pipeline, device = loaded.module, loaded.pipeline, loaded.device
    preprocess = data.config.preprocess.model_copy(
        update={"size": tuple(int(side) for side in data.images.shape[1:3])})

    pictures: Sets = {}
    train_images, train_targets = data.arrays("train")
    keep = stratified_sample(train_targets, settings.train_images, seed)
    pictures["train"], labels = train_images[keep], train_targets[keep]
    for split in ("val", "test"):
        pictures[split] = data.arrays(split)[0]
    for name, path in foreign.items():
        pictures[name] = folder_images(path, preprocess)
    own = {name: features_of(module, pipeline, images) for name, images in pictures.items()}
    generic = {name: _embedded(images, device) for name, images in pictures.items()}
    layer = output_layer_arrays(module)
    scored = [name for name in pictures if name not in ("train", "val")]

    def measured(found_scores: Sets, threshold: float) -> dict[str, dict]:
        rows = {name: separation(found_scores["test"], found_scores[name], threshold,
                                 seed=seed) for name in foreign}
        rows["own test flagged"] = {"share": float((found_scores["test"] > threshold).mean())}
        return rows

    results: dict[str, dict] = {}
    generic_scores: dict[str, Sets] = {}
    for method in ("mahalanobis", "knn"):
        arrays = DETECTORS.get(method)().fit(generic["train"], labels, layer)
        generic_scores[method] = {name: score(method, arrays, values)
                                  for name, values in generic.items() if name != "train"}
        alone = fit_unfamiliar(method, settings.keep, (generic["train"], labels),
                               generic["val"], layer, {n: generic[n] for n in scored})
        results[f"generic {method} alone"] = measured(alone.scores, alone.threshold)
    for method in sorted(DETECTORS.names()):
        alone = fit_unfamiliar(method, settings.keep, (own["train"], labels), own["val"],
                               layer, {n: own[n] for n in scored})
        results[f"{method} alone"] = measured(alone.scores, alone.threshold)
        both = fit_unfamiliar(method, settings.keep, (own["train"], labels), own["val"],
                              layer, {n: own[n] for n in scored},
                              generic_scores[GENERIC_METHOD])
        results[f"{method} + generic"] = measured(both.scores, both.threshold)
    return results


def table(results: dict[str, dict], foreign: list[str]) -> str:
    """Markdown: one row per method, AUROC [interval] / FPR@95 / flagged per foreign set."""
    head = "| method | own test flagged | " + " | ".join(
        f"{name}: AUROC [95 % CI], FPR@95, flagged" for name in foreign) + " |"
    lines = [head, "|" + " --- |" * (2 + len(foreign))]
    for method, rows in results.items():
        cells = [f"{rows[name]['auroc']:.4f} [{rows[name]['auroc_low']:.3f}, "
                 f"{rows[name]['auroc_high']:.3f}], {rows[name]['fpr_at_95']:.1%}, "
                 f"{rows[name]['flagged']:.1%}" for name in foreign]
        lines.append(f"| {method} | {rows['own test flagged']['share']:.1%} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Measure every detector of one model against the named foreign sets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--model", default="best")
    parser.add_argument("--foreign", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    foreign = {name: Path(path) for name, path in
               (entry.split("=", 1) for entry in args.foreign)}
    results = measure(args.run, args.model, foreign)
    print(f"{args.run} model {args.model}")
    print(table(results, list(foreign)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
