"""Ensembles: the mean of several models' probabilities, evaluated as one more model.

Built from the members' saved predictions only (no weights, no images), so an ensemble
costs nothing to add to a finished run and is compared with its members on the same test
images. The validation predictions are averaged too, so its clinical threshold is chosen on
validation like any model's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from visionbench.evaluate.predictions import Predictions, read_predictions, write_predictions
from visionbench.fileio import write_json

SPLIT_FILES = ("predictions.csv", "predictions_val.csv")


def average_predictions(members: list[Predictions]) -> Predictions:
    """The mean probability of `members`, which must cover the same images in one order."""
    first = members[0]
    for other in members[1:]:
        if other.ids != first.ids or not np.array_equal(other.y_true, first.y_true):
            raise ValueError("ensemble members predict different images")
    return Predictions(list(first.ids), first.y_true.copy(),
                       np.mean([m.prob for m in members], axis=0))


def _finished(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / name / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    ok = metrics.get("status") == "ok" and (folder / name / "predictions.csv").is_file()
    return metrics if ok else None


def write_ensembles(folder: Path, ensembles: dict[str, list[str]],
                    classes: list[str]) -> list[str]:
    """Write `<folder>/<ensemble>/` (predictions and metrics.json) for every ensemble whose
    members all finished; returns the names written."""
    written = []
    for name, members in ensembles.items():
        found = [_finished(folder, m) for m in members]
        if any(metrics is None for metrics in found):
            continue
        target = folder / name
        for filename in SPLIT_FILES:
            if all((folder / m / filename).is_file() for m in members):
                average = average_predictions(
                    [read_predictions(folder / m / filename, classes) for m in members])
                write_predictions(target / filename, average, classes)
        write_json(target / "metrics.json", {
            "model": name, "status": "ok", "ensemble": members,
            "description": "Mean of the probabilities of " + ", ".join(members) + ".",
            "parameters": sum(m.get("parameters") or 0 for m in found),
            "epochs": None,
            "timing": {"train_seconds": sum(m.get("timing", {}).get("train_seconds") or 0
                                            for m in found)},
        })
        written.append(name)
    return written
