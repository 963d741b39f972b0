"""Output kinds: softmax over N classes, or one sigmoid logit for a binary problem.

Each kind knows its loss (with class weights and label smoothing) and how its logits
become class probabilities, so the rest of the code never branches on the kind.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from visionbench.registry import Registry


class Output(Protocol):
    """Loss and probabilities of one output kind."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
             smoothing: float) -> torch.Tensor:
        """Mean (class-weighted) loss of a batch."""
        ...

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities."""
        ...


OUTPUTS: Registry[Output] = Registry("output")


class _Softmax:
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
             smoothing: float) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets, weight=weights, label_smoothing=smoothing)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)


class _Sigmoid:
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
             smoothing: float) -> torch.Tensor:
        goal = targets.float() * (1 - smoothing) + 0.5 * smoothing
        each = F.binary_cross_entropy_with_logits(logits.float().squeeze(1), goal,
                                                  reduction="none")
        if weights is None:
            return each.mean()
        # Same convention as weighted cross-entropy: a weighted mean.
        per_sample = weights[targets]
        return (each * per_sample).sum() / per_sample.sum()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        positive = torch.sigmoid(logits.float().squeeze(1))
        return torch.stack([1 - positive, positive], dim=1)


OUTPUTS.register("softmax")(_Softmax())
OUTPUTS.register("sigmoid")(_Sigmoid())
