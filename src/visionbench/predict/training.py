"""Is a new image one the models learned from? Its exact hash is looked up among the
training and validation images' (the run's `TrainingHashes`); failing that, images whose
perceptual hash is close are candidates, confirmed by pixel correlation against the
training image itself when the run's data is still where it was (as the run's duplicate
search does), and otherwise reported as a hash match only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionbench.data.decode import ImageFacts
from visionbench.data.duplicates import pixel_similarity
from visionbench.data.hamming import popcount64
from visionbench.rundir.documents import TrainingHashes

# Candidates confirmed by pixels at most, closest hashes first.
CANDIDATES = 5


@dataclass
class TrainingIndex:
    """The training images' hashes, and a way to decode one of them (None when absent)."""

    hashes: TrainingHashes
    load: Callable[[str], np.ndarray | None]

    def __post_init__(self) -> None:
        self._exact = dict(zip(self.hashes.exact, self.hashes.ids, strict=True))
        self._phash = np.array([int(h, 16) for h in self.hashes.phash], dtype=np.uint64)

    def match(self, pixels: np.ndarray, facts: ImageFacts) -> str | None:
        """`exact: <id>`, `near: <id>`, `near by hash only (…): <id>` or None."""
        if facts.exact_hash in self._exact:
            return f"exact: {self._exact[facts.exact_hash]}"
        threshold = self.hashes.near_threshold
        if threshold is None or not len(self._phash):
            return None
        distance = popcount64(self._phash ^ np.uint64(facts.phash))
        close = np.flatnonzero(distance <= threshold)
        unverified = None
        for position in close[np.argsort(distance[close], kind="stable")][:CANDIDATES]:
            image_id = self.hashes.ids[position]
            other = self.load(image_id)
            if other is None or other.shape != pixels.shape:
                unverified = unverified or image_id
                continue
            similarity = pixel_similarity(np.array([[0, 1]]),
                                          lambda found, o=other: np.stack([pixels, o])[found])
            if similarity[0] >= (self.hashes.near_similarity or 0.0):
                return f"near: {image_id}"
        if unverified is not None:
            return (f"near by hash only (the training image is not here to compare): "
                    f"{unverified}")
        return None


def training_file(root: Path | None, image_id: str) -> Path | None:
    """The training file an id names under the run's data folder, if it is there and inside
    that folder (a run folder from elsewhere cannot point outside it)."""
    if root is None:
        return None
    path = (root / image_id).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path
