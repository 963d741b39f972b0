"""Ensembles: the mean of several models' probabilities, evaluated as one more model.

Built from the members' saved predictions only (no weights, no images), so an ensemble
costs nothing to add to a finished run and is compared with its members on the same test
images. The validation predictions are averaged too, so its clinical threshold is chosen on
validation like any model's.
"""

from __future__ import annotations

import numpy as np

from visionbench.rundir.documents import ModelMetrics, Status, Timing
from visionbench.rundir.layout import RunFolder
from visionbench.rundir.predictions import Predictions

SPLITS = ("test", "val")


def average_predictions(members: list[Predictions]) -> Predictions:
    """The mean probability of `members`, which must cover the same images in one order."""
    first = members[0]
    for other in members[1:]:
        if other.ids != first.ids or not np.array_equal(other.y_true, first.y_true):
            raise ValueError("ensemble members predict different images")
    return Predictions(list(first.ids), first.y_true.copy(),
                       np.mean([m.prob for m in members], axis=0))


def write_ensembles(run: RunFolder, ensembles: dict[str, list[str]],
                    classes: list[str]) -> list[str]:
    """Write `<run>/<ensemble>/` (predictions and metrics.json) for every ensemble whose
    members all finished; returns the names written."""
    written = []
    for name, members in ensembles.items():
        found = [run.finished(m) for m in members]
        if any(metrics is None for metrics in found):
            continue
        target = run.model(name)
        for split in SPLITS:
            if all(run.model(m).has_predictions(split) for m in members):
                average = average_predictions(
                    [run.model(m).read_predictions(split, classes, metrics)
                     for m, metrics in zip(members, found, strict=True)])
                target.write_predictions(split, average, classes)
        target.write(ModelMetrics(
            model=name, status=Status.OK, ensemble=members,
            description="Mean of the probabilities of " + ", ".join(members) + ".",
            parameters=sum(m.parameters or 0 for m in found if m is not None),
            epochs=None,
            timing=Timing(train_seconds=sum(m.timing.train_seconds or 0
                                            for m in found if m is not None)),
            files=target.predictions_checksums(),
        ))
        written.append(name)
    return written
