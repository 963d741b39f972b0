"""Foreign images: sets of images a model should call unfamiliar, decoded exactly as the
run decodes its own, to measure its unfamiliar-image detector on.

The user names folders (`evaluate.unfamiliar.foreign`); without them, generated sets serve
as a floor, labelled as such: uniform noise, blank images of constant grey levels, and
crops of the two photos scikit-learn ships (offline), plus scikit-learn's digits for data
that are not digits. A detector that misses these misses the obvious.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visionbench.data.decode import decode_item, with_channels
from visionbench.errors import UserError
from visionbench.readers import EXTENSIONS, is_image
from visionbench.schemas.data import PreprocessConfig

# Images read from one foreign folder at most (in name order): enough for an AUROC with a
# narrow interval, bounded whatever the folder holds.
FOLDER_LIMIT = 500
GENERATED = 60


def folder_images(path: Path, settings: PreprocessConfig) -> np.ndarray:
    """uint8 (N, H, W, C as the models see them) images of a foreign folder (or one file),
    decoded with the run's `settings`; its files that cannot be read are left out. Links
    are not followed."""
    if path.is_symlink() or not path.exists():
        raise UserError(f"evaluate.unfamiliar.foreign: {path} does not exist (or is a "
                        "link): name a folder of images unlike the training images")
    files = ([path] if path.is_file() else
             sorted(f for f in path.rglob("*") if f.is_file() and not f.is_symlink()
                    and is_image(f)))[:FOLDER_LIMIT]
    pictures = []
    for file in files:
        try:
            pictures.append(decode_item(file, settings))
        except UserError:
            continue
    if not pictures:
        raise UserError(f"evaluate.unfamiliar.foreign: {path} holds no image visionbench "
                        f"can read (extensions {', '.join(sorted(EXTENSIONS))})")
    return with_channels(np.stack(pictures), settings.channels)


def generated_sets(settings: PreprocessConfig, digits: bool, seed: int = 0
                   ) -> dict[str, np.ndarray]:
    """Generated foreign sets (name -> uint8 images as the models see them): noise, blank
    images, photo crops, and, unless the data are `digits` themselves, handwritten digits."""
    rng = np.random.default_rng(seed)
    raw: dict[str, list[np.ndarray]] = {
        "generated: noise": [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                             for _ in range(GENERATED)],
        "generated: blank": [np.full((64, 64, 3), level, np.uint8)
                             for level in np.linspace(0, 255, GENERATED).astype(np.uint8)],
        "generated: photo crops": _photo_crops(rng),
    }
    if not digits:
        from sklearn.datasets import load_digits

        found = load_digits().images[:GENERATED]
        raw["generated: digits"] = [(16 * image).clip(0, 255).astype(np.uint8)
                                    for image in found]
    return {name: with_channels(np.stack([decode_item(image, settings) for image in images]),
                                settings.channels)
            for name, images in raw.items()}


def _photo_crops(rng: np.random.Generator) -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    crops = []
    for index in range(GENERATED):
        photo = photos[index % len(photos)]
        side = int(rng.integers(64, min(photo.shape[:2])))
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        crops.append(np.ascontiguousarray(photo[top:top + side, left:left + side]))
    return crops
