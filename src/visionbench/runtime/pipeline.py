"""The device-side pipeline that turns uint8 batches into what a model is fed, the same for
training, evaluation, explanation and prediction (only training adds augmentation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from visionbench.data.normalize import LUMA
from visionbench.schemas.inputs import InputSpec

# (images in [0, 1], targets, generator) -> augmented images at the model's input size.
Augmenter = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]

def resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize (N, C, H, W) images to `size`: stretch, or crop the centre when large enough."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    height, width = images.shape[-2:]
    if mode == "center_crop" and height >= size[0] and width >= size[1]:
        top, left = (height - size[0]) // 2, (width - size[1]) // 2
        return images[..., top : top + size[0], left : left + size[1]]
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) images with `channels` channels: grey repeated, or RGB made grey by luma."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1)
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


@dataclass
class InputPipeline:
    """uint8 batch -> float model input: channels, augmentation, resize, normalisation.

    `augmenter` (training only) replaces the plain resize when a batch is trained on.
    """

    spec: InputSpec
    device: torch.device
    channels_last: bool = True
    augmenter: Augmenter | None = None

    def __post_init__(self) -> None:
        self.mean = torch.tensor(self.spec.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(self.spec.std, device=self.device).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, *, train: bool,
                 gen: torch.Generator | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 ) -> torch.Tensor:
        """Model input for a uint8 (N, C, H, W) batch; augmented when `train`.

        `transform` (e.g. a robustness corruption) sees the [0, 1] images at model size,
        just before normalisation.
        """
        if train and self.augmenter is not None and gen is not None:
            x = match_channels(images.float().div_(255.0), self.spec.channels)
            x = self.augmenter(x, targets, gen)
        else:
            x = self.at_model_size(images)
        if transform is not None:
            x = transform(x)
        if self.spec.per_image:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-6)
            x = (x - mean) / std
        else:
            x = (x - self.mean) / self.std
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    def at_model_size(self, images: torch.Tensor) -> torch.Tensor:
        """A uint8 (N, C, H, W) batch as [0, 1] floats with the model's channels, at the
        model's input size (resized as evaluation resizes): what the model sees, before
        normalisation."""
        x = match_channels(images.float().div_(255.0), self.spec.channels)
        return resize(x, self.spec.size, self.spec.resize)
