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
             smoothing: float, focal_gamma: float = 0.0) -> torch.Tensor:
        """Mean (class-weighted) loss of a batch. `targets` are class indices (N,) or, for a
        mixed batch, class probabilities (N, classes); `focal_gamma` > 0 is the focal loss."""
        ...

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities."""
        ...


OUTPUTS: Registry[Output] = Registry("output")


def _weighted_mean(each: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None
                   ) -> torch.Tensor:
    """The batch mean of per-image losses; with class weights, the convention of weighted
    cross-entropy (weighted sum over the sum of the weights) for hard targets."""
    if weights is None:
        return each.mean()
    per_sample = weights[targets] if targets.dim() == 1 else targets @ weights
    return (each * per_sample).sum() / per_sample.sum()


class _Softmax:
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
             smoothing: float, focal_gamma: float = 0.0) -> torch.Tensor:
        if not focal_gamma:
            return F.cross_entropy(logits.float(), targets, weight=weights,
                                   label_smoothing=smoothing)
        log_p = F.log_softmax(logits.float(), dim=1)
        classes = log_p.shape[1]
        goal = F.one_hot(targets, classes).float() if targets.dim() == 1 else targets.float()
        goal = goal * (1 - smoothing) + smoothing / classes
        # (1 - p)^gamma scales each class's term down as the model grows sure of it.
        each = -(goal * (1 - log_p.exp()).pow(focal_gamma) * log_p).sum(dim=1)
        return _weighted_mean(each, targets, weights)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)


class _Sigmoid:
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
             smoothing: float, focal_gamma: float = 0.0) -> torch.Tensor:
        positive = targets.float() if targets.dim() == 1 else targets[:, 1].float()
        goal = positive * (1 - smoothing) + 0.5 * smoothing
        logit = logits.float().squeeze(1)
        if focal_gamma:
            p = torch.sigmoid(logit)
            each = -(goal * (1 - p).pow(focal_gamma) * F.logsigmoid(logit)
                     + (1 - goal) * p.pow(focal_gamma) * F.logsigmoid(-logit))
        else:
            each = F.binary_cross_entropy_with_logits(logit, goal, reduction="none")
        # Same convention as weighted cross-entropy: a weighted mean.
        return _weighted_mean(each, targets, weights)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        positive = torch.sigmoid(logits.float().squeeze(1))
        return torch.stack([1 - positive, positive], dim=1)


OUTPUTS.register("softmax")(_Softmax())
OUTPUTS.register("sigmoid")(_Sigmoid())
