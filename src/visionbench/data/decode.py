"""Decoding one image: wide grey values mapped to 0-255, EXIF orientation, colour mode,
dark-margin crop, resize, hashes.

Everything here works on one picture a reader gave (`readers.Raster`) at a time and is
pure, so the cache can run it in a process pool. The perceptual hash is a DCT hash (pHash):
64 bits that change little when an image is re-encoded, resized or slightly brightened.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from visionbench.errors import UserError
from visionbench.readers import Raster, read_raster
from visionbench.schemas.data import FixedWindow, PercentileWindow, PreprocessConfig, WindowRule

# Pixel formats PIL would clip when converting to 8 bits (16-bit medical PNGs, floats).
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True)
class ImageFacts:
    """What is known about one source image after decoding it."""

    width: int
    height: int
    mode: str
    format: str
    exact_hash: str
    phash: int


def window_levels(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM's linear window (PS3.3 C.11.2.1.2.1): values below `center - 0.5 - (width -
    1) / 2` are 0, above `center - 0.5 + (width - 1) / 2` are 255, linear between; as
    float64 levels, not yet rounded.

    Example:
        >>> window_levels(np.array([0.0, 40.0, 1000.0]), 40, 400).round(1).tolist()
        [102.3, 127.8, 255.0]
    """
    span = max(width - 1.0, 1e-12)
    levels = ((values - (center - 0.5)) / span + 0.5) * 255.0
    return np.clip(levels, 0.0, 255.0)


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip((values - low) * scale, 0.0, 255.0)


def to_levels(values: np.ndarray, rule: WindowRule, file_window: tuple[float, float] | None
              ) -> np.ndarray:
    """Wide grey values (16-bit, DICOM after its rescale) as uint8 levels by `rule` (see
    `schemas.data.WindowRule`); `file_window` is the (center, width) the file gives.

    Example:
        >>> to_levels(np.array([[0.0, 500.0, 1000.0]]), "range", None).tolist()
        [[0, 128, 255]]
    """
    values = np.asarray(values, dtype=np.float64)
    if isinstance(rule, FixedWindow):
        levels = window_levels(values, rule.center, rule.width)
    elif isinstance(rule, PercentileWindow):
        low, high = np.percentile(values, rule.percentiles)
        levels = _stretch(values, float(low), float(high))
    elif rule in ("auto", "file") and file_window is not None:
        levels = window_levels(values, *file_window)
    elif rule == "file":
        raise UserError("data.preprocess.window is `file`, but this image gives no window "
                        "(DICOM Window Center/Width): use auto, range, a fixed window or "
                        "percentiles")
    else:
        levels = _stretch(values, float(values.min()), float(values.max()))
    return np.rint(levels).astype(np.uint8)


def to_mode(image: Image.Image, mode: str, rule: WindowRule = "auto",
            file_window: tuple[float, float] | None = None) -> Image.Image:
    """Convert to `L` or `RGB`; wide integer/float grey images are mapped to 0-255 by
    `rule` (`to_levels`) instead of being clipped."""
    if image.mode in _WIDE_MODES:
        image = Image.fromarray(to_levels(np.asarray(image), rule, file_window), "L")
    elif image.mode in ("RGBA", "LA", "P", "PA") and mode == "RGB":
        # Transparent pixels become black rather than whatever colour they hide.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(canvas, rgba)
    return image.convert(mode) if image.mode != mode else image


def with_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Decoded uint8 pixels (..., C) with the channels the models see: `gray3` is stored
    grey and repeated here, everything else is stored as it is seen.

    Example:
        >>> with_channels(np.zeros((2, 4, 4, 1), np.uint8), 3).shape
        (2, 4, 4, 3)
    """
    if channels == 3 and pixels.shape[-1] == 1:
        return np.repeat(pixels, 3, axis=-1)
    return pixels


def exact_hash(pixels: np.ndarray) -> str:
    """Hash of the decoded pixels and their shape: equal only for identical images."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def phash_from_grey32(grey32: np.ndarray) -> np.ndarray:
    """pHash of grey images already reduced to 32x32: (N, 32, 32) -> (N,) uint64."""
    from scipy.fft import dctn  # imported here: a warm run never hashes, so never pays for it

    coefficients = dctn(grey32.astype(np.float64), axes=(-2, -1), norm="ortho")[..., :8, :8]
    flat = coefficients.reshape(len(grey32), 64)
    # The DC term measures overall brightness, not structure: compare against the median
    # of the other 63 coefficients, as pHash does.
    median = np.median(flat[:, 1:], axis=1, keepdims=True)
    bits = (flat > median).astype(np.uint64)
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    return (bits * weights).sum(axis=1, dtype=np.uint64)


def grey32(image: Image.Image) -> np.ndarray:
    """The 32x32 grey thumbnail pHash is computed from."""
    return np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS))


def crop_dark_margins(image: Image.Image, threshold: int) -> Image.Image:
    """Crop to the bounding box of pixels brighter than `threshold` (e.g. the skull in an MRI).

    An image with nothing above the threshold is returned as it is.
    """
    grey = np.asarray(image.convert("L"))
    rows = np.flatnonzero((grey > threshold).any(axis=1))
    cols = np.flatnonzero((grey > threshold).any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return image
    return image.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


def resize(image: Image.Image, size: tuple[int, int], how: str) -> Image.Image:
    """Resize to (height, width) by `stretch`, `letterbox` (fit, pad black) or `center_crop`."""
    height, width = size
    if image.size == (width, height):
        return image
    bilinear = Image.Resampling.BILINEAR
    if how == "stretch":
        return image.resize((width, height), bilinear)
    if how == "letterbox":
        fitted = ImageOps.contain(image, (width, height), bilinear)
        canvas = Image.new(image.mode, (width, height))
        canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
        return canvas
    if how == "center_crop":
        return ImageOps.fit(image, (width, height), bilinear)
    raise ValueError(f"unknown resize {how!r}")


def as_shown(raster: Raster, config: PreprocessConfig, mode: str | None = None
             ) -> Image.Image:
    """The picture as it is seen, in `mode` (default the cache's): upright (EXIF), wide
    grey values mapped to 0-255 by `config.window`, MONOCHROME1 inverted."""
    image = raster.image
    if config.exif:
        image = ImageOps.exif_transpose(image)
    image = to_mode(image, mode or config.decode_mode, config.window, raster.window)
    if raster.monochrome1 and config.invert_monochrome1:
        image = ImageOps.invert(image)
    return image


def preprocess(raster: Raster, config: PreprocessConfig) -> tuple[np.ndarray, ImageFacts]:
    """Decode-time preprocessing of one read picture -> (H, W, C) uint8 pixels and facts."""
    source_mode, source_format = raster.mode, raster.format
    image = as_shown(raster, config)
    pixels = np.asarray(image)
    facts = ImageFacts(
        width=image.width,
        height=image.height,
        mode=source_mode,
        format=source_format,
        exact_hash=exact_hash(pixels),
        phash=int(phash_from_grey32(grey32(image)[None])[0]),
    )
    if config.crop_margins:
        image = crop_dark_margins(image, config.margin_threshold)
    if config.size is not None:
        image = resize(image, config.size, config.resize)
    if config.equalize:
        image = ImageOps.equalize(image)
    out = np.asarray(image, dtype=np.uint8)
    return (out[..., None] if out.ndim == 2 else out), facts


# What one image is read from: a file, an array row, or an encoded image's bytes.
Item = Path | np.ndarray | bytes


def read_item(item: Item, frame: int | None = None, threads: int = 1) -> Raster:
    """The picture of one item, as its reader gives it (`threads`: how many are decoded at
    once beside it, sharing the pixel limit)."""
    if isinstance(item, Path):
        return read_raster(item, frame=frame, threads=threads)
    if isinstance(item, bytes):
        return read_raster(io.BytesIO(item), frame=frame, threads=threads)
    return Raster.of(Image.fromarray(item))


def describe_failure(exc: Exception) -> str:
    """Why an image could not be read, in one line (Pillow raises many kinds of errors)."""
    if isinstance(exc, UserError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def decode_item(item: Item, config: PreprocessConfig, threads: int = 1) -> np.ndarray:
    """One image (a file, an array row or an encoded image) decoded as the cache holds it;
    a `UserError` with the reason when it cannot be read."""
    try:
        with read_item(item, config.frame, threads) as raster:
            return preprocess(raster, config)[0]
    except Exception as exc:  # Pillow raises many types for unreadable files
        raise UserError(f"cannot read image {item if isinstance(item, Path) else 'row'}: "
                        f"{describe_failure(exc)}") from None
