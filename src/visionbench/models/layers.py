"""Layer specs -> torch modules, with shapes inferred as the stack is built.

Each spec type is one registered builder. Building runs a zero tensor through every new
layer, so dense layers are sized from the real flattened shape and parameter counts match
what Keras reports for the same list.

Example:
    >>> from visionbench.schemas.models import ConvLayer, FlattenLayer
    >>> stack = build_layers([ConvLayer(filters=8, padding="valid"), FlattenLayer()], (1, 8, 8))
    >>> stack.shape
    (288,)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from visionbench.errors import UserError
from visionbench.registry import Registry
from visionbench.schemas.models import (
    ActivationLayer,
    BatchNormLayer,
    ConvLayer,
    DenseLayer,
    DropoutLayer,
    FlattenLayer,
    LayerSpec,
    PoolLayer,
)

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
for _name, _module in {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "mish": nn.Mish,
    "linear": nn.Identity,
}.items():
    ACTIVATIONS.register(_name)(_module)

Shape = tuple[int, ...]


@dataclass
class Penalty:
    """A Keras-style kernel regulariser on one module's `weight`."""

    module: nn.Module
    l1: float
    l2: float


@dataclass
class LayerStack:
    """Built layers, the output shape (without batch) and the per-layer penalties."""

    module: nn.Sequential
    shape: Shape
    penalties: list[Penalty] = field(default_factory=list)


Builder = Callable[[LayerSpec, Shape, str], tuple[list[nn.Module], list[Penalty]]]
LAYERS: Registry[Builder] = Registry("layer type")


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (`linear` = none)."""
    return ACTIVATIONS.get(name)()


def _penalties(spec: ConvLayer | DenseLayer, module: nn.Module) -> list[Penalty]:
    return [Penalty(module, spec.l1, spec.l2)] if spec.l1 or spec.l2 else []


@LAYERS.register("conv")
def _conv(spec: ConvLayer, shape: Shape, default_activation: str) -> tuple[list, list]:
    if len(shape) != 3:
        raise UserError(f"conv needs an image-shaped input, got shape {shape}")
    if spec.padding == "valid":
        padding = 0
    elif spec.padding == "same":
        padding = spec.kernel // 2
    else:
        padding = spec.padding
    conv = nn.Conv2d(shape[0], spec.filters, spec.kernel, spec.stride, padding, bias=spec.bias)
    act = activation(spec.activation or default_activation)
    return [conv, act], _penalties(spec, conv)


@LAYERS.register("dense")
def _dense(spec: DenseLayer, shape: Shape, default_activation: str) -> tuple[list, list]:
    if len(shape) != 1:
        raise UserError(
            f"dense needs a flat input, got shape {shape}: add a flatten or global pool before it"
        )
    linear = nn.Linear(shape[0], spec.units, bias=spec.bias)
    act = activation(spec.activation or default_activation)
    return [linear, act], _penalties(spec, linear)


@LAYERS.register("pool")
def _pool(spec: PoolLayer, shape: Shape, default_activation: str) -> tuple[list, list]:
    if len(shape) != 3:
        raise UserError(f"pool needs an image-shaped input, got shape {shape}")
    stride = spec.stride or spec.size
    kinds: dict[str, Callable[[], list[nn.Module]]] = {
        "max": lambda: [nn.MaxPool2d(spec.size, stride)],
        "avg": lambda: [nn.AvgPool2d(spec.size, stride)],
        "global_avg": lambda: [nn.AdaptiveAvgPool2d(1), nn.Flatten()],
        "global_max": lambda: [nn.AdaptiveMaxPool2d(1), nn.Flatten()],
    }
    return kinds[spec.kind](), []


@LAYERS.register("batchnorm")
def _batchnorm(spec: BatchNormLayer, shape: Shape, default_activation: str) -> tuple[list, list]:
    return [nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])], []


@LAYERS.register("dropout")
def _dropout(spec: DropoutLayer, shape: Shape, default_activation: str) -> tuple[list, list]:
    return [nn.Dropout(spec.rate)], []


@LAYERS.register("flatten")
def _flatten(spec: FlattenLayer, shape: Shape, default_activation: str) -> tuple[list, list]:
    return [nn.Flatten()], []


@LAYERS.register("activation")
def _activation(spec: ActivationLayer, shape: Shape, default_activation: str) -> tuple[list, list]:
    return [activation(spec.name)], []


def build_layers(
    specs: Sequence[LayerSpec], in_shape: Shape, default_activation: str = "relu"
) -> LayerStack:
    """Build `specs` in order for inputs of shape `in_shape` (C, H, W) or (features,)."""
    modules: list[nn.Module] = []
    penalties: list[Penalty] = []
    shape = tuple(in_shape)
    for position, spec in enumerate(specs):
        try:
            built, found = LAYERS.get(spec.type)(spec, shape, default_activation)
            probe = nn.Sequential(*built).eval()
            with torch.no_grad():
                out = probe(torch.zeros(2, *shape))
        except UserError as exc:
            raise UserError(f"layer {position} ({spec.type}): {exc}") from None
        except RuntimeError as exc:
            raise UserError(
                f"layer {position} ({spec.type}) cannot take input shape {shape}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        shape = tuple(out.shape[1:])
        if 0 in shape:
            raise UserError(
                f"layer {position} ({spec.type}) shrinks the image to nothing ({shape}); "
                "use fewer pools or larger images"
            )
        modules.extend(built)
        penalties.extend(found)
    return LayerStack(nn.Sequential(*modules), shape, penalties)


def weighted_modules(module: nn.Module) -> list[nn.Module]:
    """Modules owning parameters directly, in definition order (what "layer K" counts)."""
    return [m for m in module.modules() if any(True for _ in m.parameters(recurse=False))]
