"""Typed model config: layer specs, backbones, heads, input overrides, freezing and stages.

A model is a CNN built from `layers`, a timm `backbone` with an optional `head`, or an
`external` ONNX/TorchScript file trained elsewhere (evaluated only).
Either way the output layer is added from the data (N classes, or one sigmoid logit for a
binary problem with `output: sigmoid`). `preset:` names one of the studies' architectures
(see `visionbench.models.presets`); its keys are filled in under the entry's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, model_validator

from visionbench.registry import catalogue
from visionbench.schemas.base import Registered, StrictModel, structure_only
from visionbench.schemas.train import OptimizerConfig, TrainConfig

Activation = Annotated[str, Registered("activation")]


class _Weighted(StrictModel):
    """Keras-style weight penalties on this layer's kernel: l1 * sum|w| + l2 * sum w^2."""

    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)


class ConvLayer(_Weighted):
    """2-D convolution; `padding` is `same`, `valid` (Keras's default) or a number of pixels."""

    type: Literal["conv"] = "conv"
    filters: int = Field(ge=1)
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    padding: Literal["same", "valid"] | int = "same"
    activation: Activation | None = None
    bias: bool = True


class DenseLayer(_Weighted):
    """Fully connected layer; needs a flat input (add `flatten` or a global pool before)."""

    type: Literal["dense"] = "dense"
    units: int = Field(ge=1)
    activation: Activation | None = None
    bias: bool = True


class PoolLayer(StrictModel):
    """Max/average pooling, or global average/max pooling to one value per channel."""

    type: Literal["pool"] = "pool"
    kind: Literal["max", "avg", "global_avg", "global_max"] = "max"
    size: int = Field(2, ge=1)
    stride: int | None = None


class BatchNormLayer(StrictModel):
    """Batch normalisation (2-D after convolutions, 1-D after dense layers)."""

    type: Literal["batchnorm"] = "batchnorm"


class DropoutLayer(StrictModel):
    """Dropout with probability `rate`."""

    type: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0, lt=1)


class FlattenLayer(StrictModel):
    """Flatten (C, H, W) to one vector."""

    type: Literal["flatten"] = "flatten"


class ActivationLayer(StrictModel):
    """A standalone activation."""

    type: Literal["activation"] = "activation"
    name: Activation


LayerSpec = Annotated[
    ConvLayer | DenseLayer | PoolLayer | BatchNormLayer | DropoutLayer | FlattenLayer
    | ActivationLayer,
    Field(discriminator="type"),
]


class InputConfig(StrictModel):
    """What the model is fed; unset keys come from the backbone's pretrained config, else data.

    `resize` says how evaluation images reach `size` when the cache holds another size:
    `stretch` resizes the whole image, `center_crop` crops the centre (the usual
    "resize 232 / crop 224" evaluation of ImageNet models).
    """

    size: int | None = Field(None, ge=8)
    channels: Literal[1, 3] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    resize: Literal["stretch", "center_crop"] = "stretch"
    layout: Literal["nchw", "nhwc"] = Field(
        "nchw", description="External models only: nhwc for Keras/TensorFlow exports.")
    scale: float = Field(
        1.0, gt=0, description="External models only: multiply the normalised input (255 "
        "for a Keras model that rescales by 1/255 itself).")


class FreezeBlocks(StrictModel):
    """Train only the last `trainable_blocks` blocks of the backbone (timm's stage groups)."""

    trainable_blocks: int = Field(ge=0)


class FreezeBefore(StrictModel):
    """Freeze backbone layers with index < `before_layer` (layers = modules owning weights)."""

    before_layer: int = Field(ge=0)


FreezeSpec = Literal["none", "base"] | FreezeBlocks | FreezeBefore


class StageConfig(StrictModel):
    """One fine-tuning stage: its epochs, trainable set and optimizer (defaults: the model's)."""

    name: str
    epochs: int = Field(ge=1)
    freeze: FreezeSpec = "none"
    optimizer: OptimizerConfig | None = None


class ModelConfig(StrictModel):
    """One candidate model. `extends: NAME` and `preset: NAME` are resolved at load time."""

    description: str | None = None
    preset: str | None = None
    layers: list[LayerSpec] | None = None
    activation: Activation = "relu"
    output: Annotated[str, Registered("output")] = "softmax"
    backbone: str | None = None
    pretrained: bool | Path = False
    head: list[LayerSpec] | None = None
    input: InputConfig = Field(default_factory=InputConfig)
    freeze: FreezeSpec = "none"
    stages: list[StageConfig] = Field(default_factory=list)
    train: TrainConfig = Field(default_factory=TrainConfig)
    external: Path | None = None
    external_outputs: Literal["probabilities", "logits"] = "probabilities"

    family: Annotated[str, Registered("model family")] | None = Field(
        None, description="A registered model family; inferred from `layers`, `backbone` or "
        "`external` when unset.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Settings of a family that has its own schema.")

    @property
    def family_name(self) -> str:
        """The model family this entry belongs to (checked when the config was validated)."""
        return self.family or _families_selected(self)[0].name

    @model_validator(mode="after")
    def _one_family(self, info: ValidationInfo) -> ModelConfig:
        if structure_only(info):
            return self
        families = catalogue("model family")
        if self.family is None:
            chosen = _families_selected(self)
            if len(chosen) != 1:
                options = ", ".join(family.summary for _, family in families.items()
                                    if family.keys)
                raise ValueError(f"a model needs exactly one of {options}, or `family:` naming "
                                 "a registered model family")
            family = chosen[0]
        else:
            family = families.get(self.family)
            others = [key for _, other in families.items() if other is not family
                      for key in other.keys if getattr(self, key) is not None]
            if others:
                raise ValueError(f"`{others[0]}` does not apply to the {self.family} family")
        family.check(self)
        if family.params is not None:
            try:
                family.params.model_validate(self.params)
            except ValidationError as exc:
                problem = exc.errors()[0]
                where = ".".join(str(p) for p in ("params", *problem["loc"]))
                raise ValueError(f"{where}: {problem['msg']}") from None
        elif self.params:
            raise ValueError(f"the {family.name} family takes no `params`")
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self


def _families_selected(config: ModelConfig) -> list[Any]:
    """The families whose selecting keys the entry sets."""
    return [family for _, family in catalogue("model family").items()
            if any(getattr(config, key) is not None for key in family.keys)]
