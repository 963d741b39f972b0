"""Batch augmentation on the device: one affine resampling for every geometric change,
then pixel-value changes, all drawn per image from a seeded generator.

Geometric augmentations each contribute a per-image 3x3 matrix (in pixel-centred
coordinates, so rotations stay rotations on non-square images); the product is applied
with a single `grid_sample`, which also produces the model's input size. An automatic
policy (TrivialAugment, RandAugment; `autoaugment`) comes next, then pixel-value changes.
Each augmentation is one registered function.

Example:
    >>> import torch
    >>> from visionbench.schemas.train import AugmentConfig
    >>> images = torch.rand(4, 1, 28, 28)
    >>> out = augment(images, AugmentConfig(rotation=15), torch.Generator(), (28, 28))
    >>> out.shape
    torch.Size([4, 1, 28, 28])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from visionbench.registry import Registry
from visionbench.runtime.pipeline import resize
from visionbench.schemas.train import AugmentConfig
from visionbench.train.autoaugment import auto_augment

Matrix = Callable[[AugmentConfig, int, torch.Generator, torch.device], torch.Tensor | None]
Pixels = Callable[[torch.Tensor, AugmentConfig, torch.Generator], torch.Tensor]
GEOMETRIC: Registry[Matrix] = Registry("geometric augmentation")
PHOTOMETRIC: Registry[Pixels] = Registry("photometric augmentation")


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device
             ) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _eye(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(3, device=device).repeat(n, 1, 1)


@GEOMETRIC.register("flips")
def _flips(cfg: AugmentConfig, n: int, gen: torch.Generator, device: torch.device
           ) -> torch.Tensor | None:
    if not (cfg.hflip or cfg.vflip):
        return None
    matrix = _eye(n, device)
    flip_x = torch.rand(n, generator=gen, device=device) < cfg.hflip
    flip_y = torch.rand(n, generator=gen, device=device) < cfg.vflip
    matrix[:, 0, 0] = torch.where(flip_x, -1.0, 1.0)
    matrix[:, 1, 1] = torch.where(flip_y, -1.0, 1.0)
    return matrix


@GEOMETRIC.register("rotation")
def _rotation(cfg: AugmentConfig, n: int, gen: torch.Generator, device: torch.device
              ) -> torch.Tensor | None:
    if not cfg.rotation:
        return None
    angle = _uniform(n, -cfg.rotation, cfg.rotation, gen, device) * (math.pi / 180)
    matrix = _eye(n, device)
    matrix[:, 0, 0], matrix[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
    matrix[:, 1, 0], matrix[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    return matrix


@GEOMETRIC.register("zoom")
def _zoom(cfg: AugmentConfig, n: int, gen: torch.Generator, device: torch.device
          ) -> torch.Tensor | None:
    if not cfg.zoom:
        return None
    # The matrix maps output to input coordinates: a factor below 1 samples a smaller
    # region, i.e. zooms in.
    factor = _uniform(n, 1 - cfg.zoom, 1 + cfg.zoom, gen, device)
    matrix = _eye(n, device)
    matrix[:, 0, 0] = matrix[:, 1, 1] = factor
    return matrix


@GEOMETRIC.register("shift")
def _shift(cfg: AugmentConfig, n: int, gen: torch.Generator, device: torch.device
           ) -> torch.Tensor | None:
    if not cfg.shift:
        return None
    matrix = _eye(n, device)
    # Coordinates span [-1, 1], so a shift of a fraction f of the size is 2f.
    matrix[:, 0, 2] = _uniform(n, -2 * cfg.shift, 2 * cfg.shift, gen, device)
    matrix[:, 1, 2] = _uniform(n, -2 * cfg.shift, 2 * cfg.shift, gen, device)
    return matrix


@GEOMETRIC.register("crop")
def _crop(cfg: AugmentConfig, n: int, gen: torch.Generator, device: torch.device
          ) -> torch.Tensor | None:
    if cfg.crop is None:
        return None
    area = _uniform(n, *cfg.crop.scale, gen, device)
    log_ratio = _uniform(n, math.log(cfg.crop.ratio[0]), math.log(cfg.crop.ratio[1]), gen, device)
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    matrix = _eye(n, device)
    matrix[:, 0, 0], matrix[:, 1, 1] = width, height
    matrix[:, 0, 2] = (torch.rand(n, generator=gen, device=device) * 2 - 1) * (1 - width)
    matrix[:, 1, 2] = (torch.rand(n, generator=gen, device=device) * 2 - 1) * (1 - height)
    return matrix


@PHOTOMETRIC.register("brightness")
def _brightness(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    if not cfg.brightness:
        return x
    factor = _uniform(len(x), 1 - cfg.brightness, 1 + cfg.brightness, gen, x.device)
    return x * factor.view(-1, 1, 1, 1)


@PHOTOMETRIC.register("contrast")
def _contrast(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    if not cfg.contrast:
        return x
    factor = _uniform(len(x), 1 - cfg.contrast, 1 + cfg.contrast, gen, x.device).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


@PHOTOMETRIC.register("noise")
def _noise(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    if not cfg.noise:
        return x
    return x + torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype) * cfg.noise


def _geometry(cfg: AugmentConfig, images: torch.Tensor, gen: torch.Generator
              ) -> torch.Tensor | None:
    """The product of every active geometric matrix in [-1, 1] coordinates, or None."""
    n, device = len(images), images.device
    height, width = images.shape[-2:]
    # Work in pixel-proportional coordinates so rotation is not sheared on non-square images.
    aspect = torch.diag(torch.tensor([width / 2, height / 2, 1.0], device=device))
    combined = None
    for _, make in GEOMETRIC.items():
        matrix = make(cfg, n, gen, device)
        if matrix is None:
            continue
        combined = matrix if combined is None else combined @ matrix
    if combined is None:
        return None
    return torch.linalg.inv(aspect) @ combined @ aspect


def augment(
    images: torch.Tensor,
    cfg: AugmentConfig,
    gen: torch.Generator,
    size: tuple[int, int],
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Augment float images in [0, 1] (N, C, H, W) and resample them to `size`.

    `mask` (N,) bool limits augmentation to some images; the others are only resized.
    Returns float images clipped to [0, 1].
    """
    matrix = _geometry(cfg, images, gen)
    if matrix is not None:
        if mask is not None:
            matrix = torch.where(mask.view(-1, 1, 1), matrix, torch.eye(3, device=images.device))
        grid = F.affine_grid(matrix[:, :2], [len(images), images.shape[1], *size],
                             align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode=cfg.fill,
                            align_corners=False)
    else:
        out = resize(images, size, "stretch")
    changed = out if cfg.auto is None else auto_augment(out, cfg.auto, gen, cfg.fill)
    for _, change in PHOTOMETRIC.items():
        changed = change(changed, cfg, gen)
    if mask is not None:
        changed = torch.where(mask.view(-1, 1, 1, 1), changed, out)
    return changed.clamp(0.0, 1.0)


@dataclass(frozen=True)
class BatchAugmenter:
    """The training augmentation of one model, as the input pipeline calls it; only the
    images of `classes` (indices) are augmented when given."""

    config: AugmentConfig
    size: tuple[int, int]
    classes: torch.Tensor | None = None

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, gen: torch.Generator
                 ) -> torch.Tensor:
        """Augmented `images` (in [0, 1]) at the model's input size."""
        mask = None if self.classes is None else torch.isin(targets, self.classes)
        return augment(images, self.config, gen, self.size, mask)
