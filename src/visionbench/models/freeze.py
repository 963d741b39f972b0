"""What is trainable when: freezing the base, all but the last blocks, or before layer K.

Batch-norm layers whose parameters are frozen stay in eval mode during training, so their
running statistics (learnt on ImageNet) are not overwritten by a small new dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from visionbench.models.build import BuiltModel
from visionbench.models.layers import weighted_modules
from visionbench.schemas.models import FreezeBefore, FreezeBlocks, FreezeSpec


@dataclass(frozen=True)
class FreezeReport:
    """Parameter counts after freezing and how the trainable set was chosen."""

    trainable: int
    frozen: int
    rule: str

    def as_dict(self) -> dict[str, int | str]:
        """JSON-ready counts."""
        return {"trainable": self.trainable, "frozen": self.frozen, "rule": self.rule}


def _frozen_modules(built: BuiltModel, spec: FreezeSpec) -> tuple[list[nn.Module], str]:
    base = built.module.base
    if spec == "none":
        return [], "everything trainable"
    if spec == "base":
        return weighted_modules(base), "base frozen, head trainable"
    if isinstance(spec, FreezeBlocks):
        keep = len(built.blocks) - spec.trainable_blocks
        frozen = [m for block in built.blocks[: max(keep, 0)] for m in block]
        return frozen, (
            f"last {min(spec.trainable_blocks, len(built.blocks))} of {len(built.blocks)} "
            "base blocks and the head trainable"
        )
    assert isinstance(spec, FreezeBefore)
    layers = weighted_modules(base)
    return layers[: spec.before_layer], (
        f"base layers {min(spec.before_layer, len(layers))}..{len(layers) - 1} "
        f"of {len(layers)} and the head trainable"
    )


def apply_freeze(built: BuiltModel, spec: FreezeSpec) -> FreezeReport:
    """Set `requires_grad` for `spec` (unfreezing everything else) and count parameters."""
    module = built.module
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    frozen_modules, rule = _frozen_modules(built, spec)
    for frozen in frozen_modules:
        for parameter in frozen.parameters(recurse=False):
            parameter.requires_grad_(False)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    return FreezeReport(trainable, frozen, rule)


def set_train_mode(module: nn.Module) -> None:
    """`module.train()`, except batch-norm layers whose parameters are all frozen."""
    module.train()
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            parameters = list(layer.parameters(recurse=False))
            if parameters and not any(p.requires_grad for p in parameters):
                layer.eval()
