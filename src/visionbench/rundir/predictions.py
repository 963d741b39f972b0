"""Per-image predictions as CSV: the file every metric is recomputed from.

Columns: `id` (file path or sample id), `true`, `predicted` (class names), then one
`prob_<class>` column per class, in class order.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionbench import csvcells
from visionbench.errors import UserError
from visionbench.fileio import write_text


@dataclass
class Predictions:
    """Ids, integer true labels and (N, K) probabilities of one split."""

    ids: list[str]
    y_true: np.ndarray
    prob: np.ndarray

    @property
    def y_pred(self) -> np.ndarray:
        """Argmax class of each image."""
        return self.prob.argmax(axis=1)


def write_predictions(path: Path, predictions: Predictions, classes: list[str]) -> None:
    """Write `predictions` as CSV, atomically."""
    buffer = io.StringIO()
    writer = csvcells.Writer(buffer)
    writer.writerow(["id", "true", "predicted", *(f"prob_{c}" for c in classes)])
    for image_id, true, pred, row in zip(predictions.ids, predictions.y_true,
                                         predictions.y_pred, predictions.prob, strict=True):
        writer.writerow([image_id, classes[true], classes[pred],
                         *(f"{p:.7g}" for p in row)])
    write_text(path, buffer.getvalue())


def read_predictions(path: Path, classes: list[str]) -> Predictions:
    """Read a predictions CSV whose columns match `classes`."""
    if not path.is_file():
        raise UserError(f"no predictions file at {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    expected = ["id", "true", "predicted", *(f"prob_{c}" for c in classes)]
    if not rows or rows[0] != expected:
        raise UserError(f"{path}: expected columns {expected}, found {rows[0] if rows else []}")
    index = {name: i for i, name in enumerate(classes)}
    body = rows[1:]
    try:
        y_true = np.array([index[csvcells.unescape(r[1])] for r in body], dtype=int)
        prob = np.array([[float(v) for v in r[3:]] for r in body], dtype=float).reshape(
            len(body), len(classes))
    except (KeyError, ValueError) as exc:
        raise UserError(f"{path}: unreadable row ({exc})") from None
    # (NaN is what a model whose weights diverged wrote; any other value outside [0, 1]
    # was not written by visionbench.)
    finite = prob[np.isfinite(prob)]
    if np.isinf(prob).any() or finite.min(initial=0) < 0 or finite.max(initial=0) > 1 + 1e-6:
        raise UserError(f"{path}: probabilities must be numbers between 0 and 1: the file "
                        "was edited or damaged")
    return Predictions([csvcells.unescape(r[0]) for r in body], y_true, prob)
