"""Class balancing: which training rows an epoch visits, and class weights for the loss.

Each method is one registered function from the training targets to the epoch's row
order; all are vectorised and drawn from a seeded generator, so an epoch's order depends
only on (seed, stage, epoch) and a resumed run sees the same batches.

Example:
    >>> import torch
    >>> targets = torch.tensor([0, 0, 0, 0, 1])
    >>> order = epoch_order("oversample", targets, 2, torch.Generator().manual_seed(0))
    >>> torch.bincount(targets[order]).tolist()
    [4, 4]
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from visionbench.errors import UserError
from visionbench.registry import Registry

Balancer = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
BALANCERS: Registry[Balancer] = Registry("balance method")


def _shuffled(rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return rows[torch.randperm(len(rows), generator=gen)]


@BALANCERS.register("none")
def _none(targets: torch.Tensor, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(len(targets), generator=gen)


@BALANCERS.register("oversample")
def _oversample(targets: torch.Tensor, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Every image once, plus random repeats of smaller classes up to the largest class."""
    counts = torch.bincount(targets, minlength=n_classes)
    top = int(counts.max())
    rows = [torch.arange(len(targets))]
    for label in range(n_classes):
        members = torch.nonzero(targets == label).flatten()
        missing = top - len(members)
        if missing > 0 and len(members):
            rows.append(members[torch.randint(len(members), (missing,), generator=gen)])
    return _shuffled(torch.cat(rows), gen)


@BALANCERS.register("undersample")
def _undersample(targets: torch.Tensor, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    """A fresh random subset of each class, as large as the smallest class, every epoch."""
    counts = torch.bincount(targets, minlength=n_classes)
    present = counts[counts > 0]
    low = int(present.min())
    rows = []
    for label in range(n_classes):
        members = torch.nonzero(targets == label).flatten()
        rows.append(members[torch.randperm(len(members), generator=gen)[:low]])
    return _shuffled(torch.cat(rows), gen)


@BALANCERS.register("sampler")
def _sampler(targets: torch.Tensor, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    """As many draws as images, with replacement, each class equally likely."""
    counts = torch.bincount(targets, minlength=n_classes).clamp(min=1).double()
    weights = (1.0 / counts)[targets]
    return torch.multinomial(weights, len(targets), replacement=True, generator=gen)


def epoch_order(method: str, targets: torch.Tensor, n_classes: int, gen: torch.Generator
                ) -> torch.Tensor:
    """Row positions (into the training arrays) of one epoch, in visiting order."""
    return BALANCERS.get(method)(targets.cpu(), n_classes, gen)


def class_weights(
    spec: str | list[float], targets: torch.Tensor, n_classes: int
) -> torch.Tensor | None:
    """Loss weight per class: None, `balanced` (n / (k * count_c), as scikit-learn) or given."""
    if spec == "none":
        return None
    if spec == "balanced":
        counts = torch.bincount(targets.cpu(), minlength=n_classes).double()
        if (counts == 0).any():
            raise UserError("class_weights: balanced needs every class in the training split")
        return (counts.sum() / (n_classes * counts)).float()
    if len(spec) != n_classes:
        raise UserError(f"class_weights lists {len(spec)} weights for {n_classes} classes")
    return torch.tensor(spec, dtype=torch.float32)
