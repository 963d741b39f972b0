"""Normalisation, decided once per dataset from the training split only.

The cache holds uint8 pixels; models see `(pixels / 255 - mean) / std`, or per-image
standardised pixels. Dataset statistics come from the training split so nothing about
validation or test images leaks into preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionbench.schemas.data import MeanStd, PreprocessConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHUNK = 512
# ITU-R 601-2 luma, the weights of PIL's convert("L"): grey made from an RGB cache on the fly
# matches a grey cache, so grey and RGB models can share one prepared dataset.
LUMA = (0.299, 0.587, 0.114)


def luma_statistics(values: tuple[float, ...]) -> tuple[float, ...]:
    """One grey value from three per-channel ones (mean or std), weighted as luma is.

    Exact for the mean; for the std it is exact when the channels move together (grey
    content) and an upper bound otherwise, which is what normalisation needs.
    """
    if len(values) != 3:
        return values
    return (sum(w * v for w, v in zip(LUMA, values, strict=True)),)


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std in the [0, 1] scale, or per-image standardisation."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    per_image: bool = False

    def apply(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 normalised, same layout (a reference for tests)."""
        values = batch.astype(np.float32) / 255.0
        if self.per_image:
            axes = tuple(range(1, values.ndim))
            mean = values.mean(axis=axes, keepdims=True)
            std = values.std(axis=axes, keepdims=True)
            return (values - mean) / np.maximum(std, 1e-6)
        return (values - np.float32(self.mean)) / np.float32(self.std)


def channel_stats(
    images: np.ndarray, rows: np.ndarray | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of uint8 (N, H, W, C) `images[rows]`.

    Rows are read a chunk at a time, so a memory-mapped cache is never loaded whole.
    """
    rows = np.arange(len(images)) if rows is None else np.sort(rows)
    channels = images.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(rows), CHUNK):
        chunk = np.asarray(images[rows[start : start + CHUNK]]).reshape(-1, channels)
        total += chunk.sum(axis=0, dtype=np.float64)
        squares += np.einsum("ij,ij->j", chunk.astype(np.float32), chunk.astype(np.float32))
    count = len(rows) * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return tuple((mean / 255).tolist()), tuple(np.maximum(std / 255, 1e-6).tolist())


def _fit(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    if len(values) == channels:
        return tuple(values)
    if channels == 1:
        return (float(np.mean(values)),)
    if len(values) == 1:
        return tuple(values) * channels
    raise ValueError(f"{len(values)} normalisation values for {channels} channels")


def resolve_normalization(
    config: PreprocessConfig, images: np.ndarray, train_rows: np.ndarray
) -> Normalization:
    """The normalisation `config.normalize` asks for; dataset statistics use `train_rows`."""
    channels = config.channels
    choice = config.normalize
    if isinstance(choice, MeanStd):
        return Normalization(_fit(tuple(choice.mean), channels), _fit(tuple(choice.std), channels))
    if choice == "unit":
        return Normalization((0.0,) * channels, (1.0,) * channels)
    if choice == "standardize":
        return Normalization((0.0,) * channels, (1.0,) * channels, per_image=True)
    if choice == "imagenet":
        return Normalization(_fit(IMAGENET_MEAN, channels), _fit(IMAGENET_STD, channels))
    mean, std = channel_stats(images, train_rows)
    return Normalization(_fit(mean, channels), _fit(std, channels))
