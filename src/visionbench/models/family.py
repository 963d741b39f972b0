"""Model families: one registry entry per kind of model (a CNN from layers, a timm backbone,
an external ONNX/TorchScript file, and any later kind).

A family owns which config keys select it and which do not apply to it, how its base
network is built and what input it is fed (resolved once, from the data at training time,
and stored in the model folder), and which layer Grad-CAM reads. `build_model` adds the
head and output layer the same way for every trainable family; `rebuild` makes a trained
model again from its model card alone.

Adding a family is one module that registers a `ModelFamily` subclass:

    >>> sorted(FAMILIES.names())[:2]
    ['cnn', 'external']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel
from torch import nn

from visionbench.errors import UserError
from visionbench.models.layers import Penalty
from visionbench.registry import Registry
from visionbench.schemas.inputs import InputSpec
from visionbench.schemas.models import ModelConfig


@dataclass(frozen=True)
class DataFacts:
    """What the data says about the images a model will see: (H, W, C) as cached, and the
    normalisation statistics of the training split."""

    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    per_image: bool = False

    @classmethod
    def of_input(cls, spec: InputSpec) -> DataFacts:
        """The facts that rebuild a model fed `spec` (its stored input settings)."""
        return cls((*spec.size, spec.channels), spec.mean, spec.std, spec.per_image)


@dataclass
class Base:
    """A family's network before the head: the module, the shape of its output, what it is
    fed, its weight penalties, its blocks (for freezing) and notes on where weights came
    from."""

    module: nn.Module
    features: tuple[int, ...]
    input: InputSpec
    penalties: list[Penalty] = field(default_factory=list)
    blocks: list[list[nn.Module]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def resolve_input(config: ModelConfig, size: tuple[int, int], channels: int,
                  mean: tuple[float, ...], std: tuple[float, ...], per_image: bool) -> InputSpec:
    """The input settings a family proposes, with the config's `input:` laid over them."""
    wanted = config.input
    if wanted.size:
        size = (wanted.size, wanted.size)
    if wanted.mean is not None or wanted.std is not None:
        if wanted.mean is None or wanted.std is None:
            raise UserError("input.mean and input.std go together")
        mean, std, per_image = tuple(wanted.mean), tuple(wanted.std), False
    if len(mean) not in (1, channels):
        raise UserError(f"input mean/std have {len(mean)} values for {channels} channel(s)")
    return InputSpec(size=size, channels=channels, mean=mean, std=std, per_image=per_image,
                     resize=wanted.resize)


class ModelFamily:
    """Base of a registry entry. `keys` are the config keys that select the family (a family
    with none is chosen by `family: NAME`); `params` is the schema of `params:`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    keys: ClassVar[tuple[str, ...]] = ()
    trainable: ClassVar[bool] = True
    params: ClassVar[type[BaseModel] | None] = None

    def check(self, config: ModelConfig) -> None:
        """Refuse keys that do not apply to this family (raise ValueError)."""

    def base(self, config: ModelConfig, facts: DataFacts, *, pretrained: bool = True) -> Base:
        """The network before the head, for images described by `facts`."""
        raise NotImplementedError(f"the {self.name} family is evaluated, not built")

    def gradcam_layer(self, config: ModelConfig) -> str | None:
        """The layer Grad-CAM reads (None: the last convolution)."""
        return None

    def tta_crops(self, config: ModelConfig) -> tuple[float, ...]:
        """Centre-crop fractions test-time augmentation adds as views (none by default)."""
        return ()


FAMILIES: Registry[ModelFamily] = Registry("model family")


def register_family(family: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator: register one instance of `family` under its `name`."""
    FAMILIES.register(family.name)(family())
    return family


def family_of(config: ModelConfig) -> ModelFamily:
    """The family a (validated) model config belongs to."""
    return FAMILIES.get(config.family_name)


def params_of(config: ModelConfig) -> Any:
    """The family's typed `params:` of `config` (None for a family without params)."""
    family = family_of(config)
    return None if family.params is None else family.params.model_validate(config.params)
