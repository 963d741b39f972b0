"""TrivialAugment and RandAugment as batched operations on the device.

Every image draws its own operation (and, for TrivialAugment, its own magnitude); each
operation then runs once on the images that drew it, so a batch costs one kernel call per
operation in use, never a Python step per image. Magnitudes are fractions of the strongest
change (RandAugment's magnitude 30 is 1.0); the strongest changes follow torchvision's
RandAugment. Each operation is one registered function of (images in [0, 1], signed
magnitude per image); the geometric ones resample with the configured border fill.

Example:
    >>> import torch
    >>> from visionbench.schemas.train import AutoAugmentConfig
    >>> images = torch.rand(8, 3, 16, 16)
    >>> out = auto_augment(images, AutoAugmentConfig(policy="trivial"), torch.Generator(),
    ...                    "border")
    >>> out.shape, bool(out.min() >= 0), bool(out.max() <= 1)
    (torch.Size([8, 3, 16, 16]), True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from visionbench.registry import Registry
from visionbench.schemas.train import AutoAugmentConfig

# (images (n, C, H, W) in [0, 1], signed magnitude (n,) in [-1, 1], border fill) -> images
Operation = Callable[[torch.Tensor, torch.Tensor, str], torch.Tensor]
OPERATIONS: Registry[Operation] = Registry("augmentation operation")

MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.3  # of the image size
MAX_ROTATE = 30.0  # degrees
MAX_ENHANCE = 0.9  # brightness, saturation, contrast, sharpness: factor 1 +- 0.9
LUMA = (0.299, 0.587, 0.114)


def _affine(images: torch.Tensor, matrix: torch.Tensor, fill: str) -> torch.Tensor:
    grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=fill, align_corners=False)


def _identity_matrix(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(2, 3, device=device).repeat(n, 1, 1)


def _grey(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] != 3:
        return images.mean(dim=1, keepdim=True)
    weights = torch.tensor(LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: other + factor * (images - other), factor 1 leaves images."""
    return other + factor.view(-1, 1, 1, 1) * (images - other)


@OPERATIONS.register("identity")
def _identity(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    return images


@OPERATIONS.register("shear_x")
def _shear_x(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    matrix = _identity_matrix(len(images), images.device)
    matrix[:, 0, 1] = magnitude * MAX_SHEAR
    return _affine(images, matrix, fill)


@OPERATIONS.register("shear_y")
def _shear_y(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    matrix = _identity_matrix(len(images), images.device)
    matrix[:, 1, 0] = magnitude * MAX_SHEAR
    return _affine(images, matrix, fill)


@OPERATIONS.register("translate_x")
def _translate_x(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    matrix = _identity_matrix(len(images), images.device)
    matrix[:, 0, 2] = magnitude * MAX_TRANSLATE * 2  # coordinates span [-1, 1]
    return _affine(images, matrix, fill)


@OPERATIONS.register("translate_y")
def _translate_y(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    matrix = _identity_matrix(len(images), images.device)
    matrix[:, 1, 2] = magnitude * MAX_TRANSLATE * 2
    return _affine(images, matrix, fill)


@OPERATIONS.register("rotate")
def _rotate(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    angle = magnitude * (MAX_ROTATE * math.pi / 180)
    height, width = images.shape[-2:]
    matrix = _identity_matrix(len(images), images.device)
    # In [-1, 1] coordinates a rotation of a non-square image needs the aspect ratio.
    matrix[:, 0, 0], matrix[:, 0, 1] = torch.cos(angle), -torch.sin(angle) * height / width
    matrix[:, 1, 0], matrix[:, 1, 1] = torch.sin(angle) * width / height, torch.cos(angle)
    return _affine(images, matrix, fill)


@OPERATIONS.register("brightness")
def _brightness(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    return _blend(images, torch.zeros_like(images), 1 + magnitude * MAX_ENHANCE)


@OPERATIONS.register("color")
def _color(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    return _blend(images, _grey(images).expand_as(images), 1 + magnitude * MAX_ENHANCE)


@OPERATIONS.register("contrast")
def _contrast(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    mean = _grey(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean.expand_as(images), 1 + magnitude * MAX_ENHANCE)


@OPERATIONS.register("sharpness")
def _sharpness(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    # PIL's SMOOTH kernel; the blend with it sharpens (factor > 1) or blurs (< 1).
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=images.device) / 13
    channels = images.shape[1]
    smooth = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"),
                      kernel.expand(channels, 1, 3, 3), groups=channels)
    return _blend(images, smooth, 1 + magnitude * MAX_ENHANCE)


@OPERATIONS.register("posterize")
def _posterize(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    bits = 8 - (magnitude.abs() * 4).round()
    levels = (2 ** (8 - bits)).view(-1, 1, 1, 1)
    return torch.floor(torch.round(images * 255) / levels) * levels / 255


@OPERATIONS.register("solarize")
def _solarize(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    threshold = (1 - magnitude.abs()).view(-1, 1, 1, 1)
    return torch.where(images >= threshold, 1 - images, images)


@OPERATIONS.register("autocontrast")
def _autocontrast(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    low = images.amin(dim=(2, 3), keepdim=True)
    high = images.amax(dim=(2, 3), keepdim=True)
    span = high - low
    return torch.where(span > 0, (images - low) / span.clamp_min(1e-6), images)


@OPERATIONS.register("equalize")
def _equalize(images: torch.Tensor, magnitude: torch.Tensor, fill: str) -> torch.Tensor:
    """PIL's histogram equalisation of each channel of each image, all at once."""
    n, channels = images.shape[:2]
    levels = (images * 255).round().long().clamp(0, 255).reshape(n * channels, -1)
    histogram = torch.zeros(n * channels, 256, device=images.device)
    histogram.scatter_add_(1, levels, torch.ones_like(levels, dtype=histogram.dtype))
    # PIL leaves the highest level out of the step: a near-flat channel stays as it is.
    highest = levels.amax(dim=1, keepdim=True)
    step = torch.div(levels.shape[1] - histogram.gather(1, highest), 255, rounding_mode="floor")
    lookup = torch.div(histogram.cumsum(dim=1) + torch.div(step, 2, rounding_mode="floor"),
                       step.clamp_min(1), rounding_mode="floor")
    lookup = F.pad(lookup[:, :-1], (1, 0)).clamp(0, 255)
    equalized = (lookup.gather(1, levels) / 255).reshape(images.shape)
    return torch.where((step > 0).view(n, channels, 1, 1), equalized, images)


def auto_augment(images: torch.Tensor, cfg: AutoAugmentConfig, gen: torch.Generator,
                 fill: str) -> torch.Tensor:
    """`images` (N, C, H, W) in [0, 1] after the policy: each image its own operations."""
    names = [name for name, _ in OPERATIONS.items()]
    n, device = len(images), images.device
    rounds = cfg.ops if cfg.policy == "rand" else 1
    out = images
    for _ in range(rounds):
        chosen = torch.randint(len(names), (n,), generator=gen, device=device)
        if cfg.policy == "rand":
            strength = torch.full((n,), cfg.magnitude / 30, device=device)
        else:
            strength = torch.rand(n, generator=gen, device=device)
        sign = torch.where(torch.rand(n, generator=gen, device=device) < 0.5, -1.0, 1.0)
        magnitude = strength * sign
        changed = out.clone()
        for index, name in enumerate(names):
            rows = torch.nonzero(chosen == index).squeeze(1)
            if name == "identity" or len(rows) == 0:
                continue
            changed[rows] = OPERATIONS.get(name)(out[rows], magnitude[rows], fill)
        out = changed.clamp(0.0, 1.0)
    return out
