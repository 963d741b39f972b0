"""Test-time augmentation: a model's probabilities averaged over a few views of each image
(as given, flipped, the centre crops its family declares), scored as one more leaderboard
row `<model>+tta` beside the plain model, so the paired tests of the comparison give the
gain its interval, and the recommendation (on validation) decides whether it is used.

Views are named (`identity`, `hflip`, `vflip`, `crop 0.875`) so that `predict` rebuilds the
same transforms from the row's metrics.

Example:
    >>> import torch
    >>> view_names(TtaConfig(), crops=(0.875,))
    ['identity', 'hflip', 'crop 0.875']
    >>> images = torch.rand(2, 3, 8, 8)
    >>> torch.equal(view_transform("hflip")(images), images.flip(-1))
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from visionbench.errors import UserError
from visionbench.runtime.progress import ignore
from visionbench.schemas.evaluate import TTA_SUFFIX, TtaConfig

Transform = Callable[[torch.Tensor], torch.Tensor]


def tta_name(model: str) -> str:
    """The leaderboard row of `model` with test-time augmentation."""
    return model + TTA_SUFFIX


def view_names(settings: TtaConfig, crops: tuple[float, ...]) -> list[str]:
    """The views of `settings` for a model whose family declares `crops`."""
    names = ["identity"]
    names += [flip for flip, wanted in (("hflip", settings.hflip), ("vflip", settings.vflip))
              if wanted]
    if settings.crops:
        names += [f"crop {fraction:g}" for fraction in crops]
    return names


def centre_crop(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """The centre `fraction` of each side of (N, C, H, W) images, resized back to (H, W)."""
    height, width = images.shape[-2:]
    keep_h, keep_w = max(round(height * fraction), 1), max(round(width * fraction), 1)
    top, left = (height - keep_h) // 2, (width - keep_w) // 2
    crop = images[..., top:top + keep_h, left:left + keep_w]
    return F.interpolate(crop, size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False)


def view_transform(name: str) -> Transform | None:
    """The transform of view `name` on [0, 1] images at the model's size (None: as given)."""
    if name == "identity":
        return None
    if name == "hflip":
        return lambda images: images.flip(-1)
    if name == "vflip":
        return lambda images: images.flip(-2)
    kind, _, value = name.partition(" ")
    if kind == "crop":
        fraction = float(value)
        if 0 < fraction <= 1:
            return lambda images: centre_crop(images, fraction)
    raise UserError(f"unknown test-time augmentation view {name!r}")


def averaged(probabilities: Callable[[Transform | None], torch.Tensor], views: list[str],
             step: Callable[[str], None] = ignore) -> torch.Tensor:
    """The mean over `views` of `probabilities(transform)` (one pass per view); `step`
    hears of each view as its pass starts."""
    found = []
    for name in views:
        step(name)
        found.append(probabilities(view_transform(name)))
    return torch.stack(found).mean(dim=0)
