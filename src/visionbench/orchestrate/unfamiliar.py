"""Fitting the unfamiliar-image detectors of a run: once per run on the generic embedding
(`fit_generic`), then per model on its own features (`fit_model_detector`), each threshold
chosen on validation only."""

from __future__ import annotations

import numpy as np
import torch

from visionbench.data.dataset import PreparedData
from visionbench.evaluate.robustness import stratified_sample
from visionbench.evaluate.unfamiliar import DETECTORS, fit_unfamiliar, output_layer_arrays
from visionbench.rundir.documents import GenericUnfamiliar, Unfamiliar
from visionbench.rundir.layout import ModelFolder, RunFolder
from visionbench.runtime import embedding
from visionbench.runtime.batches import Evaluation, SplitImages
from visionbench.runtime.progress import Steps
from visionbench.schemas.evaluate import UnfamiliarConfig
from visionbench.train.loop import Trainer

# The generic embedding's detector: on the quickstart's 60 foreign images it flagged all
# with 3.6 % of the test digits (kNN: all, with 4.5 %); benchmarks/README.md.
GENERIC_METHOD = "mahalanobis"


def fit_generic(run: RunFolder, data: PreparedData, settings: UnfamiliarConfig, seed: int,
                progress: str) -> None:
    """The run's generic-embedding detector: fitted on a stratified sample of training
    images, scoring every validation and test image; written as `unfamiliar_generic.json`
    and its arrays. Nothing without a validation split (no threshold could be chosen)."""
    if not len(data.positions("val")) or not len(data.positions("train")):
        return
    splits = [split for split in ("train", "val", "test") if len(data.positions(split))]
    found: dict[str, np.ndarray] = {}
    with Steps("unfamiliar images", len(splits), progress) as steps:
        for split in splits:
            images, targets = data.arrays(split)
            if split == "train":
                keep = stratified_sample(targets, settings.train_images, seed)
                images, labels = images[keep], targets[keep]
            steps.step(f"generic embedding of {len(images):,} {split} images")
            found[split] = embedding.embed(torch.from_numpy(images).permute(0, 3, 1, 2))
    detector = DETECTORS.get(GENERIC_METHOD)()
    arrays = detector.fit(found["train"], labels, {"weight": np.zeros((1, 1)),
                                                   "bias": np.zeros(1)})
    for split in ("val", "test"):
        if split in found:
            arrays[f"scores_{split}"] = detector.score(arrays, found[split])
    checksum = run.write_generic_unfamiliar_arrays(arrays)
    run.write(GenericUnfamiliar(embedding=embedding.describe(), method=GENERIC_METHOD,
                                train_images=len(labels), arrays_checksum=checksum))


def fit_model_detector(trainer: Trainer, splits: dict[str, SplitImages],
                       predicted: dict[str, Evaluation], settings: UnfamiliarConfig,
                       folder: ModelFolder, seed: int, progress: str) -> Unfamiliar:
    """The model's detector: fitted on the features of a stratified sample of training
    images, combined with the run's generic detector when the run has one, its threshold
    set on validation, what it flags counted on validation and test; its arrays are written
    beside the weights. `predicted` are the val and test evaluations, with features."""
    train = splits["train"]
    keep = stratified_sample(train.targets.numpy(), settings.train_images, seed)
    sample = train if len(keep) == len(train) else train.subset(keep)
    with Steps(f"{folder.path.name} unfamiliar images", 1, progress) as steps:
        steps.step(f"features of {len(sample):,} training images")
        fitted = trainer.evaluate(sample, features=True).features
    features = {split: found.features.numpy() for split, found in predicted.items()
                if found.features is not None}
    generic = _generic_scores(RunFolder(folder.path.parent), set(features))
    arrays, threshold, flagged = fit_unfamiliar(
        settings.method, settings.keep, (fitted.numpy(), sample.targets.numpy()),
        features.pop("val"), output_layer_arrays(trainer.evaluated_model), features, generic)
    checksum = folder.write_unfamiliar_arrays(arrays)
    return Unfamiliar(method=settings.method, keep=settings.keep, threshold=threshold,
                      train_images=len(sample), flagged=flagged, arrays_checksum=checksum,
                      generic=generic is not None)


def _generic_scores(run: RunFolder, splits: set[str]) -> dict[str, np.ndarray] | None:
    """The run's generic detector's scores of `splits` (None when the run has none)."""
    found = run.read(GenericUnfamiliar)
    if found is None:
        return None
    arrays = run.read_generic_unfamiliar_arrays(found.arrays_checksum)
    return {split: arrays[f"scores_{split}"] for split in splits}
