"""`predict --check-shift`: whether a batch of new images comes from the distribution of
the run's training images — the run's own shift test (`evaluate.shift`), between the
training sample it saved and a sample of the new images, taken as they stream by."""

from __future__ import annotations

import numpy as np
import torch

from visionbench.errors import UserError
from visionbench.evaluate.shift import (
    compare,
    from_arrays,
    pixel_properties,
    source_properties,
    verdict,
)
from visionbench.predict.model import ImageInput, Predictor
from visionbench.rundir.documents import ShiftDocument, SplitShift
from visionbench.runtime import embedding
from visionbench.schemas.evaluate import ShiftConfig

# Fewer new images than this cannot show a shift worth the name.
FEWEST = 20


class BatchShift:
    """Keeps a uniform sample of the new images' generic embeddings and properties, as
    many as the training sample (reservoir sampling: memory stays flat however many
    images stream through), and tests it against the training sample."""

    def __init__(self, predictor: Predictor, seed: int = 0) -> None:
        if predictor.run is None:
            raise UserError("--check-shift compares new images with the run's training "
                            "sample, which an export does not hold: give the run folder")
        document = predictor.run.read(ShiftDocument)
        if document is None:
            raise UserError(f"{predictor.run.path} holds no training sample to compare with "
                            "(evaluate.shift was off, or the run predates it): run it again")
        self.document = document
        self.reference = from_arrays(
            predictor.run.read_shift_reference(document.reference_checksum))
        self.capacity = len(self.reference[0])
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self.embeddings: list[np.ndarray | None] = [None] * self.capacity
        self.properties: list[dict[str, float] | None] = [None] * self.capacity

    def add(self, pictures: np.ndarray, sizes: np.ndarray) -> None:
        """One batch: uint8 (N, H, W, C) decoded pictures and their sources' (N, 2) widths
        and heights; only the images that enter the sample are embedded."""
        placed: list[tuple[int, int]] = []  # (row of the batch, place in the sample)
        for row in range(len(pictures)):
            self.seen += 1
            place = (self.seen - 1 if self.seen <= self.capacity
                     else int(self.rng.integers(self.seen)))
            if place < self.capacity:
                placed.append((row, place))
        if not placed:
            return
        rows = [row for row, _ in placed]
        kept = np.ascontiguousarray(pictures[rows])
        embedded = embedding.embed(torch.from_numpy(kept).permute(0, 3, 1, 2))
        measured = {**pixel_properties(kept),
                    **source_properties(sizes[rows, 0], sizes[rows, 1])}
        for number, (_, place) in enumerate(placed):
            self.embeddings[place] = embedded[number]
            self.properties[place] = {name: float(values[number])
                                      for name, values in measured.items()}

    def describe(self, test: SplitShift, properties: bool = True) -> str:
        """The verdict on the images seen, with (`properties`) the ones that moved most
        (see `evaluate.shift.verdict`)."""
        what = (f"these {self.seen:,} images" if self.seen == test.images else
                f"these {self.seen:,} images (a sample of {test.images:,})")
        return verdict(test, what, properties)

    def result(self) -> SplitShift:
        """The test of the sample of new images against the training sample."""
        kept = [i for i, embedding in enumerate(self.embeddings) if embedding is not None]
        if len(kept) < FEWEST:
            raise UserError(f"--check-shift needs at least {FEWEST} readable images to "
                            f"compare with the training sample; {len(kept)} were given")
        embeddings = np.stack([self.embeddings[i] for i in kept])
        rows = [self.properties[i] or {} for i in kept]
        properties = {name: np.array([row[name] for row in rows]) for name in self.reference[1]}
        settings = ShiftConfig(alpha=self.document.alpha, images=max(self.capacity, 20),
                               permutations=self.document.permutations,
                               smallest_distance=self.document.smallest_distance)
        return compare(self.reference, (embeddings, properties), settings)


def check_shift(predictor: Predictor, images: list[ImageInput], batch: int = 64
                ) -> tuple[SplitShift, str]:
    """The shift test of `images` (paths, files, PIL images, arrays) against the run's
    training sample, as `predict --check-shift` runs it, and its sentence; unreadable
    images are left out (their predictions say why)."""
    batch_shift = BatchShift(predictor)
    for first in range(0, len(images), batch):
        pictures, sizes = [], []
        for image in images[first:first + batch]:
            try:
                pixels, facts = predictor.decode(image)
            except UserError:
                continue
            pictures.append(pixels)
            sizes.append((facts.width, facts.height))
        if pictures:
            batch_shift.add(np.stack(pictures), np.array(sizes))
    result = batch_shift.result()
    return result, batch_shift.describe(result)
