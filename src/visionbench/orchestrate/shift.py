"""Shift between splits: the validation and test images against a sample of training
images (`evaluate.shift`), on the generic embedding the unfamiliar-image detector also
reads, written as `shift.json` with the training sample new batches are compared with."""

from __future__ import annotations

import numpy as np

from visionbench.data.dataset import PreparedData
from visionbench.evaluate.robustness import stratified_sample
from visionbench.evaluate.shift import (
    PROPERTIES,
    as_arrays,
    compare,
    pixel_properties,
    source_properties,
)
from visionbench.orchestrate.unfamiliar import GenericEmbeddings
from visionbench.rundir.documents import ShiftDocument
from visionbench.rundir.layout import RunFolder
from visionbench.runtime import embedding
from visionbench.schemas.evaluate import ShiftConfig


def properties_of(data: PreparedData, positions: np.ndarray, batch: int = 512
                  ) -> dict[str, np.ndarray]:
    """The image properties of the images at `positions` (into the data's ids): their
    decoded pixels', read a batch at a time (a whole split's pixels need not fit in
    memory), and their source files' size and aspect ratio."""
    rows = data.index[positions]
    parts = [pixel_properties(np.asarray(data.images[rows[first:first + batch]]))
             for first in range(0, len(rows), batch)]
    pixels = {name: np.concatenate([part[name] for part in parts]) if parts else np.zeros(0)
              for name in PROPERTIES.names()}
    return {**pixels,
            **source_properties(data.decoded.width[rows], data.decoded.height[rows])}


def measure_shift(run: RunFolder, data: PreparedData, embedded: GenericEmbeddings,
                  settings: ShiftConfig, seed: int) -> None:
    """Test the validation and test splits against a training sample of at most
    `settings.images` (stratified by class) and write `shift.json` and the sample's
    embeddings and properties. Nothing without training images."""
    if "train" not in embedded.splits:
        return
    keep = stratified_sample(embedded.labels, settings.images, seed)
    reference = (embedded.splits["train"][keep], properties_of(data, embedded.positions[keep]))
    rng = np.random.default_rng(seed)
    splits = {}
    for split in ("val", "test"):
        if split not in embedded.splits:
            continue
        positions = data.positions(split)
        chosen = np.sort(rng.permutation(len(positions))[:settings.images])
        splits[split] = compare(reference, (embedded.splits[split][chosen],
                                            properties_of(data, positions[chosen])),
                                settings, seed)
    checksum = run.write_shift_reference(as_arrays(*reference))
    run.write(ShiftDocument(embedding=embedding.describe(), alpha=settings.alpha,
                            permutations=settings.permutations,
                            smallest_distance=settings.smallest_distance, splits=splits,
                            reference_checksum=checksum))
