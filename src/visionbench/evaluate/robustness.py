"""Robustness: accuracy on corrupted test images, per corruption and severity.

Each corruption is one registered function on float images in [0, 1] (N, C, H, W), applied
after resizing and before normalisation, deterministic given its seed. Severities come
from `evaluate.robustness`; the MNIST study's tests are `noise: [0.1]` and
`rotation: [15]`.

Example:
    >>> import torch
    >>> out = CORRUPTIONS.get("noise")(torch.zeros(2, 1, 4, 4), 0.1, torch.Generator())
    >>> out.shape
    torch.Size([2, 1, 4, 4])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

from visionbench.registry import Registry


def stratified_sample(targets: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Sorted positions of about `size` images, each class in its share (at least one image
    of every class present); every position when `size` is None or not smaller.

    Example:
        >>> stratified_sample(np.array([0] * 90 + [1] * 10), 20, 0).size
        20
    """
    if size is None or size >= len(targets):
        return np.arange(len(targets))
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(targets):
        mine = np.flatnonzero(targets == label)
        take = max(1, round(size * len(mine) / len(targets)))
        chosen.append(rng.choice(mine, size=min(take, len(mine)), replace=False))
    return np.sort(np.concatenate(chosen))


Corruption = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")
# What a severity is, for each corruption: the axis of its robustness chart.
SEVERITY: dict[str, str] = {
    "noise": "noise σ (pixels 0–1)", "rotation": "rotation (degrees)", "blur": "blur σ (px)",
    "contrast": "contrast factor", "brightness": "brightness factor", "jpeg": "JPEG quality",
}


@CORRUPTIONS.register("noise")
def _noise(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise of standard deviation `severity` (pixels in [0, 1])."""
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return (x + severity * noise).clamp(0, 1)


@CORRUPTIONS.register("rotation")
def _rotation(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    """Rotation by exactly `severity` degrees, clockwise or anticlockwise at random."""
    sign = torch.where(torch.rand(len(x), generator=gen, device=x.device) < 0.5, -1.0, 1.0)
    angle = sign * math.radians(severity)
    height, width = x.shape[-2:]
    cos, sin = torch.cos(angle), torch.sin(angle)
    # In [-1, 1] coordinates the aspect ratio scales the off-diagonal terms.
    theta = torch.zeros(len(x), 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@CORRUPTIONS.register("blur")
def _blur(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian blur with standard deviation `severity` pixels."""
    radius = max(1, math.ceil(3 * severity))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * severity**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    return F.conv2d(F.conv2d(padded, horizontal, groups=channels), vertical, groups=channels)


@CORRUPTIONS.register("contrast")
def _contrast(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    """Contrast scaled by `severity` around each image's mean (0.5 halves it)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * severity + mean).clamp(0, 1)


@CORRUPTIONS.register("brightness")
def _brightness(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    """Pixel values multiplied by `severity` (0.5 darker, 1.5 brighter)."""
    return (x * severity).clamp(0, 1)


@CORRUPTIONS.register("jpeg")
def _jpeg(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    """JPEG compression at quality `severity` (1-100): the whole batch encoded and decoded
    by torchvision in one call each, on a CUDA device by nvJPEG, elsewhere by libjpeg-turbo
    on the CPU (the same bytes as Pillow's encoder, without a Python loop per image)."""
    device = x.device if x.device.type == "cuda" else torch.device("cpu")
    pixels = (x.clamp(0, 1) * 255).round().byte().to(device)
    encoded = encode_jpeg(list(pixels), quality=int(severity))
    # decode_jpeg reads its input from the CPU and decodes on `device`.
    decoded = decode_jpeg([data.cpu() for data in encoded], mode=ImageReadMode.UNCHANGED,
                          device=device)
    return torch.stack(decoded).to(x.device, x.dtype) / 255
