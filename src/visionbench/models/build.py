"""From a model config and the data's shape to a ready `Classifier` and what it is fed.

Example:
    >>> from visionbench.config import load_config
    >>> cfg = load_config("quickstart").models["small_cnn"]
    >>> built = build_model(cfg, n_classes=10, image_shape=(28, 28, 1),
    ...                     data_mean=(0.0,), data_std=(1.0,))
    >>> built.parameter_count()
    225034
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from visionbench.data.normalize import luma_statistics
from visionbench.errors import UserError
from visionbench.models.backbones import create_backbone
from visionbench.models.layers import LayerStack, Penalty, build_layers
from visionbench.schemas.inputs import InputSpec
from visionbench.schemas.models import ModelConfig


class Classifier(nn.Module):
    """`base` (CNN layers or a timm backbone) then `head` (head layers + output layer)."""

    def __init__(self, base: nn.Module, head: nn.Sequential) -> None:
        super().__init__()
        self.base = base
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits: (N, classes), or (N, 1) for a sigmoid output."""
        return self.head(self.base(images))


@dataclass
class BuiltModel:
    """A built classifier with its input spec, weight penalties and build notes."""

    module: Classifier
    input: InputSpec
    output: str
    penalties: list[Penalty] = field(default_factory=list)
    blocks: list[list[nn.Module]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def parameter_count(self) -> int:
        """All parameters, as Keras's `model.summary()` counts them (without BN buffers)."""
        return sum(p.numel() for p in self.module.parameters())


def weighted_modules(module: nn.Module) -> list[nn.Module]:
    """Modules owning parameters directly, in definition order (what "layer K" counts)."""
    return [m for m in module.modules() if any(True for _ in m.parameters(recurse=False))]


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


def output_size(output: str, n_classes: int) -> int:
    """Units of the output layer: one per class, or one logit for a binary sigmoid."""
    if output == "sigmoid":
        if n_classes != 2:
            raise UserError(f"output: sigmoid needs exactly 2 classes, the data has {n_classes}")
        return 1
    return n_classes


def build_model(
    config: ModelConfig,
    n_classes: int,
    image_shape: tuple[int, int, int],
    data_mean: tuple[float, ...],
    data_std: tuple[float, ...],
    per_image: bool = False,
) -> BuiltModel:
    """Build the classifier for images of `image_shape` (H, W, C as cached) and N classes.

    Input size, channels and mean/std come from `config.input` first, then from the
    backbone's pretrained config, then from the data.
    """
    height, width, data_channels = image_shape
    wanted = config.input
    notes: list[str] = []
    if config.backbone is not None:
        channels = wanted.channels or 3
        base, timm_config, notes = create_backbone(config.backbone, config.pretrained, channels)
        default_size = tuple(timm_config["input_size"][1:])
        mean, std = tuple(timm_config["mean"]), tuple(timm_config["std"])
        per_image = False
        if channels == 1:
            mean, std = (sum(mean) / 3,), (sum(std) / 3,)
        features: tuple[int, ...] = (base.num_features,)
        penalties: list[Penalty] = []
        blocks = _timm_blocks(base)
    else:
        channels = wanted.channels or data_channels
        default_size = (height, width)
        mean, std = data_mean, data_std
        if channels == 1:
            mean, std = luma_statistics(mean), luma_statistics(std)
        size = (wanted.size, wanted.size) if wanted.size else default_size
        stack = build_layers(config.layers or [], (channels, *size), config.activation)
        base, features, penalties = stack.module, stack.shape, stack.penalties
        blocks = [[m] for m in weighted_modules(base)]
    size = (wanted.size, wanted.size) if wanted.size else default_size
    if wanted.mean is not None or wanted.std is not None:
        if wanted.mean is None or wanted.std is None:
            raise UserError("input.mean and input.std go together")
        mean, std, per_image = tuple(wanted.mean), tuple(wanted.std), False
    if len(mean) not in (1, channels):
        raise UserError(f"input mean/std have {len(mean)} values for {channels} channel(s)")
    head_stack = (
        build_layers(config.head, features, config.activation)
        if config.head
        else LayerStack(nn.Sequential(), features)
    )
    if len(head_stack.shape) != 1:
        raise UserError(
            f"the layers end with shape {head_stack.shape}: end them with flatten or a global "
            "pool so the output layer gets a vector"
        )
    head = nn.Sequential(
        *head_stack.module, nn.Linear(head_stack.shape[0], output_size(config.output, n_classes))
    )
    return BuiltModel(
        module=Classifier(base, head),
        input=InputSpec(size=size, channels=channels, mean=mean, std=std, per_image=per_image,
                        resize=wanted.resize),
        output=config.output,
        penalties=penalties + head_stack.penalties,
        blocks=blocks,
        notes=notes,
    )
