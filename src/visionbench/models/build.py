"""From a model config and the data's facts to a ready `Classifier` and what it is fed.

The model's family builds its base network (`visionbench.models.family`); the head layers
and the output layer are added here the same way for every family.

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

from visionbench.errors import UserError
from visionbench.models.family import DataFacts, family_of
from visionbench.models.layers import LayerStack, Penalty, build_layers
from visionbench.rundir.documents import ModelCard
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
    *,
    pretrained: bool = True,
) -> BuiltModel:
    """Build the classifier for images of `image_shape` (H, W, C as cached) and N classes.

    Input size, channels and mean/std come from `config.input` first, then from the
    family (a backbone's pretrained config), then from the data. `pretrained=False` skips
    loading pretrained weights (when trained weights replace them anyway).
    """
    facts = DataFacts(image_shape, data_mean, data_std, per_image)
    base = family_of(config).base(config, facts, pretrained=pretrained)
    head_stack = (
        build_layers(config.head, base.features, config.activation)
        if config.head
        else LayerStack(nn.Sequential(), base.features)
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
        module=Classifier(base.module, head),
        input=base.input,
        output=config.output,
        penalties=base.penalties + head_stack.penalties,
        blocks=base.blocks,
        notes=base.notes,
    )


def rebuild(card: ModelCard) -> BuiltModel:
    """The untrained network of a model card, fed exactly as the card says (its weights
    are loaded by the caller; no pretrained weights are looked for)."""
    config = ModelConfig.model_validate(card.config)
    facts = DataFacts.of_input(card.input)
    built = build_model(config, len(card.classes), facts.image_shape, facts.mean, facts.std,
                        facts.per_image, pretrained=False)
    built.input = card.input
    return built
