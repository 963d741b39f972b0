"""The CNN family: a network built from a list of layer specs (`layers:`), sized by the data.

Example:
    >>> from visionbench.config import load_config
    >>> from visionbench.models.family import family_of
    >>> family_of(load_config("quickstart").models["small_cnn"]).name
    'cnn'
"""

from __future__ import annotations

from visionbench.data.normalize import luma_statistics
from visionbench.models.family import (
    Base,
    DataFacts,
    ModelFamily,
    register_family,
    resolve_input,
)
from visionbench.models.layers import build_layers, weighted_modules
from visionbench.schemas.models import ModelConfig


@register_family
class CnnFamily(ModelFamily):
    """Layers from the config; input size and channels from the data unless `input:` says."""

    name = "cnn"
    summary = "`layers` (a CNN)"
    keys = ("layers",)

    def check(self, config: ModelConfig) -> None:
        """A CNN's layers end where the output layer is added: no head, no pretrained."""
        if config.head is not None or config.pretrained:
            raise ValueError("`head` and `pretrained` apply to backbones; a CNN's `layers` "
                             "already end where the output layer is added")

    def base(self, config: ModelConfig, facts: DataFacts, *, pretrained: bool = True) -> Base:
        """The layer stack, probed with a zero image of the model's input size."""
        height, width, data_channels = facts.image_shape
        channels = config.input.channels or data_channels
        mean, std = facts.mean, facts.std
        if channels == 1:
            mean, std = luma_statistics(mean), luma_statistics(std)
        spec = resolve_input(config, (height, width), channels, mean, std, facts.per_image)
        stack = build_layers(config.layers or [], (channels, *spec.size), config.activation)
        return Base(stack.module, stack.shape, spec, stack.penalties,
                    [[m] for m in weighted_modules(stack.module)])
