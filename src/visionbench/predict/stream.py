"""Predictions for many images: decoded in parallel, run through the model in batches, one
result per image in the order given; an unreadable image gets its reason and the batch
goes on. Memory stays bounded by a few batches whatever the number of images."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from visionbench import csvcells
from visionbench.errors import UserError
from visionbench.predict.inputs import not_an_image
from visionbench.predict.model import Predictor
from visionbench.rasters import decode_threads, regular_file_problem

BATCH = 64
NOT_FINITE = ("the model gave no finite probabilities for this image: the run folder's "
              "model card or weights are damaged or were edited")


@dataclass
class Prediction:
    """One image's prediction, or why there is none."""

    source: str
    probabilities: dict[str, float] | None = None
    predicted: str | None = None
    positive: bool | None = None
    positive_probability: float | None = None
    uncertain: bool | None = None
    # Unlike the training images: its detector's score is above the validation threshold.
    unfamiliar: bool | None = None
    unfamiliar_score: float | None = None
    prediction_set: list[str] | None = None
    duplicate: str | None = None
    error: str | None = None
    # Not read at all (a file whose name is not an image's): a sort leaves it in place.
    skipped: bool = False

    def row(self, classes: list[str], positive: bool, sets: bool = False,
            unfamiliar: bool = False) -> dict[str, Any]:
        """The CSV/JSON row: source, predicted class, probability per class, the positive
        reading (binary or grouped tasks), the uncertainty flag, the unfamiliar flag and
        score (with `unfamiliar`), the conformal set (with `sets`; its classes joined by
        `|`, most probable first) and any error."""
        row: dict[str, Any] = {"path": self.source, "predicted": self.predicted or ""}
        for name in classes:
            value = (self.probabilities or {}).get(name)
            row[f"prob_{name}"] = "" if value is None else round(value, 6)
        if positive:
            row["positive"] = "" if self.positive is None else self.positive
            row["positive_probability"] = ("" if self.positive_probability is None
                                             else round(self.positive_probability, 6))
        row["uncertain"] = "" if self.uncertain is None else self.uncertain
        if unfamiliar:
            row["unfamiliar"] = "" if self.unfamiliar is None else self.unfamiliar
            row["unfamiliar_score"] = ("" if self.unfamiliar_score is None
                                         else round(self.unfamiliar_score, 6))
        if sets:
            row["prediction_set"] = "|".join(self.prediction_set or [])
        row["duplicate_of_training"] = self.duplicate or ""
        row["error"] = self.error or ""
        return row


class _Skipped(str):
    """Why a file was not read at all (a link, a device, not an image by its name)."""


def _decode(predictor: Predictor, item: Any, threads: int
            ) -> tuple[np.ndarray, str | None, tuple[int, int]] | str:
    """The pixels, the training image this one duplicates and the source's (width,
    height), or why it cannot be read (a `_Skipped` reason when it was not read at all)."""
    if isinstance(item, Path | str) and (reason := _skip_reason(Path(item))) is not None:
        return _Skipped(reason)
    try:
        pixels, facts = predictor.decode(item, threads)
    except UserError as exc:
        return str(exc)
    return pixels, predictor.training_copy(pixels, facts), (facts.width, facts.height)


def _skip_reason(path: Path) -> str | None:
    """Why a file is not read at all: not a regular file (a link, a device), or not an
    image by its name."""
    return regular_file_problem(path, follow_links=False) or not_an_image(path)


def _name(item: Any, position: int) -> str:
    return str(item) if isinstance(item, Path | str) else f"image {position}"


# Called with each batch's decoded pictures (N, H, W, C) and their sources' (N, 2) widths
# and heights: how `predict --check-shift` sees the images without a second decode.
BatchObserver = Callable[[np.ndarray, np.ndarray], None]


def predict_items(predictor: Predictor, items: Iterable[Any], batch: int = BATCH,
                  workers: int | None = None, observe: BatchObserver | None = None
                  ) -> Iterator[Prediction]:
    """Predictions for `items` (paths, PIL images, arrays) in order, `batch` at a time;
    decoding runs on `workers` threads (Pillow decodes outside the GIL); `observe` sees
    each batch of readable images."""
    # Threads are capped by memory too: each may hold an image up to the pixel limit.
    workers = decode_threads(workers or min(8, os.cpu_count() or 1))
    iterator = iter(enumerate(items))
    with ThreadPoolExecutor(workers) as pool:

        def submitted() -> list[tuple[tuple[int, Any], Future]]:
            return [(pair, pool.submit(_decode, predictor, pair[1], workers))
                    for pair in islice(iterator, batch)]

        pending = submitted()
        while pending:
            chunk = [pair for pair, _ in pending]
            decoded = [future.result() for _, future in pending]
            # The next batch decodes on the pool while this one is read by the model.
            pending = submitted()
            good = [i for i, outcome in enumerate(decoded) if not isinstance(outcome, str)]
            pictures = np.stack([decoded[i][0] for i in good]) if good else None
            probabilities, scores = (predictor.read(pictures) if pictures is not None
                                     else (np.zeros((0, len(predictor.classes))), None))
            if observe is not None and pictures is not None:
                observe(pictures, np.array([decoded[i][2] for i in good]))
            rows = dict(zip(good, probabilities, strict=True))
            unfamiliarity = dict(zip(good, scores, strict=True)) if scores is not None else {}
            for i, (position, item) in enumerate(chunk):
                if i in rows and not np.isfinite(rows[i]).all():
                    # An edited card or temperature can make them NaN: never a class.
                    yield Prediction(source=_name(item, position), error=NOT_FINITE)
                elif i in rows:
                    prediction = _reading(predictor, _name(item, position), rows[i])
                    prediction.duplicate = decoded[i][1]
                    if i in unfamiliarity and predictor.unfamiliar is not None:
                        prediction.unfamiliar_score = float(unfamiliarity[i])
                        prediction.unfamiliar = (prediction.unfamiliar_score
                                                 > predictor.unfamiliar.threshold)
                    yield prediction
                else:
                    yield Prediction(source=_name(item, position), error=str(decoded[i]),
                                     skipped=isinstance(decoded[i], _Skipped))


def predict_files(predictor: Predictor, files: list[Path], batch: int = BATCH,
                  workers: int | None = None, observe: BatchObserver | None = None
                  ) -> Iterator[Prediction]:
    """Predictions for image files, in order (see `predict_items`)."""
    return predict_items(predictor, files, batch, workers, observe)


def _reading(predictor: Predictor, source: str, prob: np.ndarray) -> Prediction:
    top = int(prob.argmax())
    prediction = Prediction(source=source,
                            probabilities={c: float(p) for c, p in zip(predictor.classes, prob,
                                                                       strict=True)},
                            predicted=predictor.classes[top])
    if predictor.positive:
        score = float(prob[predictor.positive_indices].sum())
        prediction.positive_probability = score
        prediction.positive = score >= (predictor.threshold or 0.5)
    prediction.uncertain = (predictor.margin is not None and float(prob[top]) < predictor.margin)
    prediction.prediction_set = predictor.prediction_set(prob)
    return prediction


class RowWriter:
    """Writes predictions to an open text file as they come, one row per image: CSV with a
    header, or a JSON list; nothing is held back, so memory stays flat however many images
    stream through."""

    def __init__(self, handle: TextIO, predictor: Predictor, as_json: bool) -> None:
        self.handle, self.as_json, self.rows = handle, as_json, 0
        self.classes, self.positive = predictor.classes, bool(predictor.positive)
        self.sets = predictor.conformal is not None
        self.unfamiliar = predictor.unfamiliar is not None
        if as_json:
            handle.write("[")
        else:
            header = list(Prediction(source="").row(self.classes, self.positive, self.sets,
                                                    self.unfamiliar))
            self.csv = csvcells.DictWriter(handle, header)
            self.csv.writeheader()

    def write(self, prediction: Prediction) -> None:
        """One more row."""
        row = prediction.row(self.classes, self.positive, self.sets, self.unfamiliar)
        if self.as_json:
            self.handle.write(("," if self.rows else "") + "\n " + json.dumps(row))
        else:
            self.csv.writerow(row)
        self.rows += 1

    def close(self) -> None:
        """End the list (JSON)."""
        if self.as_json:
            self.handle.write("\n]\n")
