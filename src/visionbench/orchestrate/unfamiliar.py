"""Fitting the unfamiliar-image detectors of a run: once per run on the generic embedding
(`embed_splits`, shared with the shift test, then `fit_generic`), then per model on its own
features (`fit_model_detector`), each threshold chosen on validation only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from visionbench.data.dataset import PreparedData
from visionbench.data.decode import with_channels
from visionbench.data.foreign import folder_images, generated_sets
from visionbench.evaluate.robustness import stratified_sample
from visionbench.evaluate.unfamiliar import (
    DETECTORS,
    fit_unfamiliar,
    output_layer_arrays,
    score,
    separation,
)
from visionbench.rundir.documents import GenericUnfamiliar, Unfamiliar
from visionbench.rundir.layout import ModelFolder, RunFolder
from visionbench.runtime import embedding
from visionbench.runtime.batches import Evaluation, SplitImages
from visionbench.runtime.features import features_of
from visionbench.runtime.progress import Steps
from visionbench.schemas.evaluate import UnfamiliarConfig
from visionbench.train.loop import Trainer

# The generic embedding's detector: on the quickstart's 60 foreign images it flagged all
# with 3.6 % of the test digits (kNN: all, with 4.5 %); benchmarks/README.md.
GENERIC_METHOD = "mahalanobis"
# The generic detector's scores of each foreign set, kept with its arrays (the `scores_`
# prefix keeps them out of the scorer): every model's measure reads them.
FOREIGN_SCORES = "scores_foreign:"


@dataclass
class GenericEmbeddings:
    """The generic embedding of a stratified sample of training images (`train`, with
    their `positions` into the data and class `labels`) and of every image of the other
    splits (in split order); what the generic detector and the shift test read."""

    splits: dict[str, np.ndarray]
    positions: np.ndarray
    labels: np.ndarray


# Images read from the decoded cache per step of `embed_splits`: memory stays bounded
# however large a split is.
EMBED_CHUNK = 2048


def embed_splits(data: PreparedData, train_images: int, seed: int, progress: str,
                 device: str = "cpu") -> GenericEmbeddings:
    """The generic embedding of up to `train_images` training images (stratified by
    class) and of every validation and test image, read a chunk at a time, on the GPU
    when `device` (a `train.device` name) trains on one."""
    on = embedding.device_for(device)
    splits = [split for split in ("train", "val", "test") if len(data.positions(split))]
    by_split: dict[str, np.ndarray] = {}
    positions, labels = np.zeros(0, int), np.zeros(0, int)
    with Steps("generic embedding", len(splits), progress) as steps:
        for split in splits:
            chosen = data.positions(split)
            if split == "train":
                keep = stratified_sample(data.targets[chosen], train_images, seed)
                chosen = positions = chosen[keep]
                labels = data.targets[chosen]
            steps.step(f"generic embedding of {len(chosen):,} {split} images")
            by_split[split] = np.concatenate([
                _embedded(data, chosen[first:first + EMBED_CHUNK], on)
                for first in range(0, len(chosen), EMBED_CHUNK)])
    return GenericEmbeddings(by_split, positions, labels)


def _embedded(data: PreparedData, positions: np.ndarray, device: torch.device) -> np.ndarray:
    """The generic embedding of the images at `positions` (into the data's ids)."""
    pictures = with_channels(np.asarray(data.images[data.index[positions]]), data.channels)
    return embedding.embed(torch.from_numpy(pictures).permute(0, 3, 1, 2).to(device))


def fit_generic(run: RunFolder, embedded: GenericEmbeddings, train_images: int,
                seed: int, foreign: dict[str, np.ndarray] | None = None,
                device: str = "cpu") -> None:
    """The run's generic-embedding detector: fitted on up to `train_images` of the
    training sample (stratified by class), scoring every validation and test image and
    each `foreign` set (once for all the run's models, embedded as `embed_splits` does for
    `device`); written as `unfamiliar_generic.json` and its arrays. Nothing without a
    validation split (no threshold could be chosen)."""
    by_split = embedded.splits
    if "val" not in by_split or "train" not in by_split:
        return
    keep = stratified_sample(embedded.labels, train_images, seed)
    labels = embedded.labels[keep]
    arrays = DETECTORS.get(GENERIC_METHOD)().fit(
        by_split["train"][keep], labels, {"weight": np.zeros((1, 1)), "bias": np.zeros(1)})
    for split in ("val", "test"):
        if split in by_split:
            arrays[f"scores_{split}"] = score(GENERIC_METHOD, arrays, by_split[split])
    for name, pictures in (foreign or {}).items():
        seen = embedding.embed(torch.from_numpy(pictures).permute(0, 3, 1, 2).to(
            embedding.device_for(device)))
        arrays[FOREIGN_SCORES + name] = score(GENERIC_METHOD, arrays, seen)
    checksum = run.write_generic_unfamiliar_arrays(arrays)
    run.write(GenericUnfamiliar(embedding=embedding.describe(), method=GENERIC_METHOD,
                                train_images=len(labels), arrays_checksum=checksum))


def fit_model_detector(trainer: Trainer, splits: dict[str, SplitImages],
                       predicted: dict[str, Evaluation], data: PreparedData,
                       settings: UnfamiliarConfig, folder: ModelFolder, seed: int,
                       progress: str) -> Unfamiliar:
    """The model's detector: fitted on the features of a stratified sample of training
    images, combined with the run's generic detector when the run has one, its threshold
    set on validation, what it flags counted on validation and test, and measured against
    foreign images (the user's sets, else generated ones); its arrays are written beside
    the weights. `predicted` are the val and test evaluations, with features."""
    train = splits["train"]
    keep = stratified_sample(train.targets.numpy(), settings.train_images, seed)
    sample = train if len(keep) == len(train) else train.subset(keep)
    foreign = foreign_sets(data, settings)
    with Steps(f"{folder.path.name} unfamiliar images", 1 + len(foreign), progress) as steps:
        steps.step(f"features of {len(sample):,} training images")
        fitted = trainer.evaluate(sample, features=True).features
        features = {split: scored.features.numpy() for split, scored in predicted.items()
                    if scored.features is not None}
        generic = _generic(RunFolder(folder.path.parent))
        scores = None
        if generic is not None:
            document, arrays = generic
            scores = {split: arrays[f"scores_{split}"] for split in features}
        for name, pictures in foreign.items():
            steps.step(f"foreign images: {name}")
            features[name] = features_of(trainer.evaluated_model, trainer.pipeline, pictures)
            if scores is not None and FOREIGN_SCORES + name in arrays:
                scores[name] = arrays[FOREIGN_SCORES + name]
            elif scores is not None:  # a run whose generic detector predates the sets
                seen = embedding.embed(torch.from_numpy(pictures).permute(0, 3, 1, 2))
                scores[name] = score(document.method, arrays, seen)
    detector = fit_unfamiliar(
        settings.method, settings.keep, (fitted.numpy(), sample.targets.numpy()),
        features.pop("val"), output_layer_arrays(trainer.evaluated_model), features, scores)
    checksum = folder.write_unfamiliar_arrays(detector.arrays)
    familiar = detector.scores.get("test", detector.scores["val"])
    return Unfamiliar(
        method=settings.method, keep=settings.keep, threshold=detector.threshold,
        train_images=len(sample),
        flagged={split: counts for split, counts in detector.flagged.items()
                 if split in ("val", "test")},
        arrays_checksum=checksum, generic=generic is not None,
        foreign={name: separation(familiar, detector.scores[name], detector.threshold, seed=seed)
                 for name in foreign},
        foreign_against="test" if "test" in detector.scores else "val")


def foreign_sets(data: PreparedData, settings: UnfamiliarConfig) -> dict[str, np.ndarray]:
    """The foreign images to measure a detector on, decoded as the run decodes: the
    user's folders by name, else generated sets (named "generated: ...")."""
    # At the size the run's images were decoded to, whatever the source size setting.
    preprocess = data.config.preprocess.model_copy(
        update={"size": tuple(int(side) for side in data.images.shape[1:3])})
    if settings.foreign:
        return {str(path): folder_images(path, preprocess) for path in settings.foreign}
    return generated_sets(preprocess, digits=data.config.source == "digits")


def _generic(run: RunFolder) -> tuple[GenericUnfamiliar, dict[str, np.ndarray]] | None:
    """The run's generic detector and its arrays (None when the run has none)."""
    document = run.read(GenericUnfamiliar)
    if document is None:
        return None
    return document, run.read_generic_unfamiliar_arrays(document.arrays_checksum)
