"""A trained model's penultimate features: what its output layer reads.

Every model visionbench builds ends in one `nn.Linear` output layer (`models.build`:
`Classifier.head[-1]`), so the features of an image are that layer's input, read with a
forward hook during the same pass that gives the logits: no second forward pass, and no
change to the model. The unfamiliar-image detectors (`evaluate.unfamiliar`) score them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from visionbench.errors import UserError
from visionbench.runtime.pipeline import InputPipeline


def output_layer(module: nn.Module) -> nn.Linear:
    """The output layer of a model visionbench built (`Classifier.head[-1]`); a model of
    another shape (an external graph) has no features to read."""
    head = getattr(module, "head", None)
    if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
        return head[-1]
    raise UserError("this model's features cannot be read: it has no visionbench output "
                    "layer (an external model gives probabilities only)")


def features_and_logits(module: nn.Module, inputs: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The penultimate features and the logits of one forward pass of a model visionbench
    built, without a hook (an exported graph cannot hold one): the layers before the
    output layer, then the output layer."""
    layer = output_layer(module)
    features = module.head[:-1](module.base(inputs))
    return features, layer(features)


@contextmanager
def reading_features(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """While open, every forward pass of `module` appends its batch of features (float32,
    on the CPU) to the list this yields."""
    found: list[torch.Tensor] = []

    def keep(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        found.append(inputs[0].detach().float().cpu())

    handle = output_layer(module).register_forward_hook(keep)
    try:
        yield found
    finally:
        handle.remove()


@torch.no_grad()
def features_of(module: nn.Module, pipeline: InputPipeline, pictures: np.ndarray,
                batch: int = 256) -> np.ndarray:
    """(N, D) penultimate features of uint8 (N, H, W, C) `pictures` as the model sees them
    (its input pipeline, evaluation mode)."""
    device = next(module.parameters()).device
    images = torch.from_numpy(np.ascontiguousarray(pictures)).permute(0, 3, 1, 2)
    module.eval()
    with reading_features(module) as read:
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch].to(device)
            targets = torch.zeros(len(chunk), dtype=torch.long, device=device)
            module(pipeline(chunk, targets, train=False))
    return torch.cat(read).numpy()
