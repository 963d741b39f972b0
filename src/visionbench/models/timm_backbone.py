"""The timm family: a pretrained (or fresh) timm backbone with an optional `head:`, fed as
its pretrained config says (input size, mean, std) unless `input:` overrides.

Example:
    >>> from visionbench.config import load_config
    >>> from visionbench.models.family import family_of
    >>> family_of(load_config("brain_tumor").models["best"]).name
    'timm'
"""

from __future__ import annotations

from torch import nn

from visionbench.models.backbones import backbone_problem, create_backbone
from visionbench.models.family import (
    Base,
    DataFacts,
    ModelFamily,
    register_family,
    resolve_input,
)
from visionbench.models.layers import weighted_modules
from visionbench.schemas.models import ModelConfig


@register_family
class TimmFamily(ModelFamily):
    """Any timm model name; weights resolved offline first (see `models.backbones`)."""

    name = "timm"
    summary = "`backbone` (timm)"
    keys = ("backbone",)

    def check(self, config: ModelConfig) -> None:
        """The backbone must be a timm model name: refused at load (by `inspect` too), with
        the closest names, those whose weights install offline first."""
        problem = backbone_problem(str(config.backbone))
        if problem is not None:
            raise ValueError(problem)

    def base(self, config: ModelConfig, facts: DataFacts, *, pretrained: bool = True) -> Base:
        """The backbone without its classifier, ending in its global pooling."""
        channels = config.input.channels or 3
        weights = config.pretrained if pretrained else False
        module, timm_config, notes = create_backbone(str(config.backbone), weights, channels)
        mean, std = tuple(timm_config["mean"]), tuple(timm_config["std"])
        if channels == 1:
            mean, std = (sum(mean) / 3,), (sum(std) / 3,)
        spec = resolve_input(config, tuple(timm_config["input_size"][1:]), channels, mean, std,
                             False)
        return Base(module, (module.num_features,), spec, [], _timm_blocks(module), notes)

    def tta_crops(self, config: ModelConfig) -> tuple[float, ...]:
        """ImageNet backbones were evaluated on the centre 87.5 % of each side."""
        return (0.875,)


def _timm_blocks(base: nn.Module) -> list[list[nn.Module]]:
    """The backbone's coarse stages as timm groups them (stem, stages...), in order."""
    from timm.models import group_modules

    owners = dict(base.named_modules())
    grouped = group_modules(base, base.group_matcher(coarse=True))
    blocks = [[owners[name] for name in grouped[key] if name in owners] for key in sorted(grouped)]
    placed = {id(m) for block in blocks for m in block}
    # Modules the matcher leaves out (e.g. EfficientNet's conv_head) belong to the top.
    rest = [m for m in weighted_modules(base) if id(m) not in placed]
    if rest and blocks:
        blocks[-1].extend(rest)
    return [b for b in blocks if b] or [weighted_modules(base)]
