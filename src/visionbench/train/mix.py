"""Mixup and CutMix in timm's batch mode, on the device, drawn from the trainer's seeded
generator (timm's own `Mixup` draws from NumPy's global generator, which would make a
resumed run differ from an uninterrupted one).

A batch is mixed with itself reversed: Mixup blends whole images by a share `lam` drawn
from Beta(alpha, alpha); CutMix pastes a box covering about 1 - lam of the image, and
`lam` is then corrected to the box's real area. The targets become class probabilities
`lam * onehot(y) + (1 - lam) * onehot(reversed y)`, which sum to one.

Example:
    >>> import torch
    >>> from visionbench.schemas.train import MixConfig
    >>> mixer = BatchMixer(MixConfig(alpha=0.4), None, classes=3)
    >>> images, targets = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    >>> _, soft = mixer(images, targets, torch.Generator().manual_seed(0))
    >>> soft.sum(dim=1).tolist()
    [1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from visionbench.schemas.train import MixConfig


def _beta(alpha: float, gen: torch.Generator) -> float:
    # Beta(a, a) as X / (X + Y) with X, Y ~ Gamma(a): torch's Beta sampler takes no generator.
    pair = torch._standard_gamma(torch.full((2,), alpha, dtype=torch.float64), generator=gen)
    return float(pair[0] / pair.sum())


def _uniform(gen: torch.Generator) -> float:
    return float(torch.rand((), generator=gen, dtype=torch.float64))


def cutmix_box(height: int, width: int, lam: float, gen: torch.Generator
               ) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box covering about 1 - lam of the image, centred at
    a uniform random point and clipped to the image (timm's `rand_bbox`)."""
    cut = (1 - lam) ** 0.5
    box_h, box_w = int(height * cut), int(width * cut)
    cy, cx = int(_uniform(gen) * height), int(_uniform(gen) * width)
    top, bottom = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
    left, right = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
    return top, bottom, left, right


@dataclass(frozen=True)
class BatchMixer:
    """The mixing of one model's training batches: Mixup, CutMix, or either (half the
    batches each, as timm's `switch_prob=0.5`) when both are configured."""

    mixup: MixConfig | None
    cutmix: MixConfig | None
    classes: int

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed images, (N, classes) target probabilities) of a normalised batch."""
        # A CPU generator: the draws are a handful of scalars per batch.
        soft = F.one_hot(targets, self.classes).float()
        use_cutmix = self.cutmix is not None and (
            self.mixup is None or _uniform(gen) < 0.5)
        chosen = self.cutmix if use_cutmix else self.mixup
        if chosen is None or _uniform(gen) >= chosen.prob:
            return images, soft
        lam = _beta(chosen.alpha, gen)
        flipped = images.flip(0)
        if use_cutmix:
            height, width = images.shape[-2:]
            top, bottom, left, right = cutmix_box(height, width, lam, gen)
            mixed = images.clone()
            mixed[..., top:bottom, left:right] = flipped[..., top:bottom, left:right]
            lam = 1 - (bottom - top) * (right - left) / (height * width)
        else:
            mixed = images * lam + flipped * (1 - lam)
        return mixed, soft * lam + soft.flip(0) * (1 - lam)
