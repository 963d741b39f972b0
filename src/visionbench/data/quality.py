"""Image-quality issues of a dataset: too dark, too light, blurry, low information, odd size
or aspect ratio, stored as grey in a colour set (cleanvision's checks), and grey content
stored as colour, counted per split and class.

cleanvision never opens a file here: it is given the images visionbench already decoded
(as a torchvision-style dataset, so no plugin of Pillow's can run on a file) for the pixel
checks, and the source files' sizes and colour modes (which decoding changed) as
precomputed statistics for the size, aspect-ratio and grey checks.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from visionbench.data.dataset import PreparedData
from visionbench.pictures import contact_sheet, save_png, tile
from visionbench.rundir.documents import ImageQuality, QualityIssue

# cleanvision's issue types, checked with its default thresholds, and what each means.
CLEANVISION = {
    "dark": "too dark",
    "light": "too light (washed out)",
    "blurry": "blurry",
    "low_information": "low information (little variation)",
    "odd_size": "odd source size",
    "odd_aspect_ratio": "odd aspect ratio",
    "grayscale": "stored as grey",
}
GREY_AS_COLOUR = "grey_as_colour"
# Largest channel difference (0-255) of an image still counted grey: JPEG's colour noise.
GREY_TOLERANCE = 2
QUALITY_ISSUES = (*CLEANVISION, GREY_AS_COLOUR)
EXAMPLES = 5
THUMBNAIL = 64


def quality_chart(data_dir: Path, issue: str) -> Path:
    """Where the examples of `issue` (one of `QUALITY_ISSUES`) are drawn."""
    if issue not in QUALITY_ISSUES:
        raise ValueError(f"not an image-quality issue: {issue!r}")
    return data_dir / f"quality_{issue}.png"


class _Decoded:
    """The decoded images as the (image, target) pairs cleanvision reads from a torchvision
    dataset."""

    def __init__(self, images: np.ndarray, rows: np.ndarray) -> None:
        self.images, self.rows = images, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, number: int) -> tuple[Image.Image, int]:
        pixels = np.asarray(self.images[self.rows[number]])
        return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels), 0


def _cleanvision_flags(data: PreparedData, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Issue -> which of the images at decoded `rows` cleanvision flags."""
    import pandas as pd
    from cleanvision import Imagelab

    lab = Imagelab(torchvision_dataset=_Decoded(data.images, rows), verbose=False)
    index = list(range(len(rows)))
    width = data.decoded.width[rows].astype(np.float64)
    height = data.decoded.height[rows].astype(np.float64)
    modes = [data.decoded.modes[row] for row in rows]
    # Decoding resized and converted the images: their sizes and modes come from the files.
    lab.info["statistics"] = {
        "size": pd.Series(np.sqrt(width * height), index=index, name="size"),
        "aspect_ratio": pd.Series(np.minimum(width / np.maximum(height, 1),
                                             height / np.maximum(width, 1)),
                                  index=index, name="aspect_ratio"),
        "color_space": pd.Series(["L" if mode in ("L", "1", "I;16", "I", "F") else mode
                                  for mode in modes], index=index, name="color_space"),
    }
    # Its progress bars ignore verbose=False: kept off the user's terminal.
    with contextlib.redirect_stderr(io.StringIO()):
        lab.find_issues({name: {} for name in CLEANVISION}, n_jobs=1, verbose=False)
    return {name: lab.issues[f"is_{name}_issue"].to_numpy(bool) for name in CLEANVISION}


def _grey_as_colour(data: PreparedData, rows: np.ndarray) -> np.ndarray | None:
    """Which images are colour files whose channels are equal (None when the run decodes
    to grey, which hides it)."""
    if data.config.preprocess.decode_mode != "RGB":
        return None
    found = np.zeros(len(rows), bool)
    for first in range(0, len(rows), 256):
        # Channel by channel: a signed copy of the interleaved pixels costs ten times more.
        red, *others = np.moveaxis(np.asarray(data.images[rows[first:first + 256]]), -1, 0)
        spread = np.zeros(len(red), np.int16)
        for other in others:
            spread = np.maximum(spread, np.abs(other.astype(np.int16) - red).max(axis=(1, 2)))
        found[first:first + 256] = spread <= GREY_TOLERANCE
    return found


def image_quality(data: PreparedData, out_dir: Path) -> ImageQuality:
    """Each issue's count per split and class, its test images' ids and a strip of
    examples (written into `out_dir`)."""
    positions = np.flatnonzero(np.isin(data.split, ("train", "val", "test")))
    rows = data.index[positions]
    flags = _cleanvision_flags(data, rows)
    grey = _grey_as_colour(data, rows)
    if grey is not None:
        flags[GREY_AS_COLOUR] = grey
    issues = {}
    for name, flagged in flags.items():
        where = positions[flagged]
        counts: dict[str, dict[str, int]] = {}
        for position in where:
            split, label = str(data.split[position]), data.classes[data.targets[position]]
            counts.setdefault(split, {}).setdefault(label, 0)
            counts[split][label] += 1
        examples = where[:EXAMPLES]
        picture = None
        if len(examples):
            path = quality_chart(out_dir, name)
            save_png(contact_sheet([tile(np.asarray(data.images[data.index[p]]), THUMBNAIL)
                                    for p in examples], [""] * len(examples),
                                   columns=len(examples)), path)
            picture = path.name
        issues[name] = QualityIssue(
            meaning=CLEANVISION.get(name, "grey content stored as colour"),
            images=len(where), counts=counts,
            test_ids=[data.ids[p] for p in where if data.split[p] == "test"],
            examples=[data.ids[p] for p in examples], picture=picture)
    return ImageQuality(images=len(positions), issues=issues)
