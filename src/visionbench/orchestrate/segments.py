"""Weak segments of a finished run: each model's test predictions cut by quantile bins of
image properties (edges from a sample of training images) and by image-quality issue (from
the inspection), written as `<model>/segments.json`."""

from __future__ import annotations

import numpy as np

from visionbench.data.dataset import PreparedData
from visionbench.evaluate.metrics import compute
from visionbench.evaluate.robustness import stratified_sample
from visionbench.evaluate.segments import Bin, bin_edges, weak_bins, weak_groups
from visionbench.evaluate.statistics import (
    binomial_interval,
    bootstrap_weights,
    percentile_interval,
)
from visionbench.orchestrate.shift import properties_of
from visionbench.rundir.documents import (
    DataRecord,
    Inspection,
    Interval,
    SegmentRow,
    Segments,
)
from visionbench.rundir.layout import RunFolder
from visionbench.rundir.predictions import Predictions
from visionbench.schemas.evaluate import SegmentsConfig

# Training images whose properties set the bin edges.
EDGE_IMAGES = 1000


def write_segments(run: RunFolder, settings: SegmentsConfig, data: PreparedData,
                   models: list[str], primary: str, confidence: float, seed: int) -> None:
    """`segments.json` for each of `models` that finished with test predictions."""
    train = data.positions("train")
    test = data.positions("test")
    if not len(train) or not len(test):
        return
    sample = train[stratified_sample(data.targets[train], EDGE_IMAGES, seed)]
    edges = {name: bin_edges(values, settings.bins)
             for name, values in properties_of(data, sample).items()}
    values = properties_of(data, test)
    where = {image_id: number for number, image_id in enumerate(data.ids[i] for i in test)}
    classes = run.require(DataRecord).classes
    inspection = run.read(Inspection)
    quality = inspection.quality.issues if inspection and inspection.quality else {}
    for model in models:
        metrics = run.finished(model)
        if metrics is None:
            continue
        predictions = run.model(model).read_predictions("test", classes, metrics)
        order = np.array([where[image_id] for image_id in predictions.ids], dtype=int)
        mine = {name: per_image[order] for name, per_image in values.items()}
        correct = predictions.y_pred == predictions.y_true
        bins = weak_bins(mine, edges, correct, settings.alpha)
        position = {image_id: number for number, image_id in enumerate(predictions.ids)}
        issues = weak_groups({name: [position[i] for i in issue.test_ids if i in position]
                              for name, issue in quality.items()}, correct, settings.alpha)
        run.model(model).write(Segments(
            primary_metric=primary, bins=settings.bins, alpha=settings.alpha,
            accuracy=_accuracy(int(correct.sum()), len(correct), confidence),
            rows=[_row(segment, predictions, primary, settings, confidence, seed)
                  for segment in bins],
            quality=[_row(segment, predictions, primary, settings, confidence, seed)
                     for segment in issues]))


def _accuracy(hits: int, total: int, confidence: float) -> Interval:
    low, high = binomial_interval(hits, total, confidence)
    return Interval(value=hits / max(total, 1), low=low, high=high)


def _row(segment: Bin, predictions: Predictions, primary: str, settings: SegmentsConfig,
         confidence: float, seed: int) -> SegmentRow:
    return SegmentRow(
        property=segment.name, bin=segment.bin, low=segment.low, high=segment.high,
        images=len(segment.members),
        accuracy=_accuracy(segment.correct, len(segment.members), confidence),
        primary=_primary(predictions, segment.members, primary, settings.resamples,
                         confidence, seed),
        p_value=segment.p_value, adjusted=segment.adjusted, weak=segment.weak)


def _primary(predictions: Predictions, members: np.ndarray, primary: str, resamples: int,
             confidence: float, seed: int) -> Interval | None:
    """The headline metric on the bin's images, with a stratified bootstrap interval;
    None where it is undefined (a bin of one class has no ROC AUC)."""
    y_true, prob = predictions.y_true[members], predictions.prob[members]
    with np.errstate(all="ignore"):
        value = float(compute([primary], y_true, prob)[primary][0])
        if not np.isfinite(value):
            return None
        if not resamples or len(members) < 2:
            return Interval(value=value)
        resampled = compute([primary], y_true, prob,
                            bootstrap_weights(y_true, resamples, seed))[primary]
    resampled = resampled[np.isfinite(resampled)]
    if not len(resampled):
        return Interval(value=value)
    low, high = percentile_interval(resampled, confidence)
    return Interval(value=value, low=low, high=high)
