"""The studies' architectures, layer for layer, as named presets.

A preset is the set of model keys it stands for; a config entry's own keys are laid over
it (`preset: mri_cnn` + `activation: sigmoid` is the MRI study's sigmoid model). Parameter
counts are those Keras reports for the same layer lists (tests check them).

Where a study left something out, the choice made here is written beside the preset.
"""

from __future__ import annotations

from typing import Any

from visionbench.registry import Registry

PRESETS: Registry[dict[str, Any]] = Registry("model preset")


def _conv(filters: int, padding: str | int = "valid", **extra: Any) -> dict[str, Any]:
    return {"type": "conv", "filters": filters, "kernel": 3, "padding": padding, **extra}


POOL = {"type": "pool", "kind": "max", "size": 2}
FLATTEN = {"type": "flatten"}


def _dense(units: int, **extra: Any) -> dict[str, Any]:
    return {"type": "dense", "units": units, **extra}


def _dropout(rate: float) -> dict[str, Any]:
    return {"type": "dropout", "rate": rate}


PRESETS.register("mnist_baseline")(
    {
        "description": "MNIST study baseline: conv32-pool-conv64-pool-dense128 "
        "(Keras 'valid' padding; 225,034 parameters on 28x28x1).",
        "layers": [_conv(32), POOL, _conv(64), POOL, FLATTEN, _dense(128)],
    }
)

PRESETS.register("mlp")(
    {
        "description": "A two-hidden-layer perceptron baseline (dense 128, dense 64).",
        "layers": [FLATTEN, _dense(128), _dense(64)],
    }
)


def _photo_cnn(
    dropout: bool = False, conv_penalty: dict[str, float] | None = None,
    dense_penalty: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The photo-filter CNN: conv16-pool-conv32-conv64-dense128, 'same' padding."""
    conv_penalty = conv_penalty or {}
    layers: list[dict[str, Any]] = [_conv(16, "same", **conv_penalty), POOL]
    if dropout:
        layers.append(_dropout(0.25))
    layers += [_conv(32, "same", **conv_penalty), _conv(64, "same", **conv_penalty), FLATTEN]
    layers.append(_dense(128, **(dense_penalty or {})))
    if dropout:
        layers.append(_dropout(0.5))
    return {"layers": layers, "output": "sigmoid"}


PRESETS.register("photo_cnn")(
    {"description": "Photo-filter study base CNN (one sigmoid output).", **_photo_cnn()}
)
PRESETS.register("photo_cnn_dropout")(
    {
        "description": "Photo-filter CNN with dropout 0.25 after the pool and 0.5 after dense.",
        **_photo_cnn(dropout=True),
    }
)
PRESETS.register("photo_cnn_l1")(
    {
        "description": "Photo-filter CNN with L1(0.01) on every kernel.",
        **_photo_cnn(conv_penalty={"l1": 0.01}, dense_penalty={"l1": 0.01}),
    }
)
PRESETS.register("photo_cnn_l2")(
    {
        "description": "Photo-filter CNN with L2(0.01) on every kernel.",
        **_photo_cnn(conv_penalty={"l2": 0.01}, dense_penalty={"l2": 0.01}),
    }
)
PRESETS.register("photo_cnn_elastic")(
    {
        "description": "Photo-filter CNN with elastic net L1L2(0.005, 0.005) on the convolutions "
        "and L2(0.01) on the dense layer, as the study wrote it.",
        **_photo_cnn(conv_penalty={"l1": 0.005, "l2": 0.005}, dense_penalty={"l2": 0.01}),
    }
)

# The MRI study lists 4 convs (32/64/128/128, 3x3), 2 max-pools, dense 64 ReLU, dropout 0.2
# without their order; one pool after each pair of convs is the reading used here, with
# Keras's default 'valid' padding. The dense layer stays ReLU in the sigmoid variant, as
# the study describes it ("1 couche fully connected avec 64 neurones avec activation ReLU").
PRESETS.register("mri_cnn")(
    {
        "description": "MRI study CNN: conv32-conv64-pool-conv128-conv128-pool-dense64-dropout0.2.",
        "layers": [
            _conv(32), _conv(64), POOL, _conv(128), _conv(128), POOL, FLATTEN,
            _dense(64, activation="relu"), _dropout(0.2),
        ],
    }
)

PRESETS.register("mri_transfer")(
    {
        "description": "MRI study transfer model: InceptionV3 base and its global average "
        "pool, head dense256-BN-dropout0.5-dense128, base frozen (stages add fine-tuning).",
        "backbone": "inception_v3",
        "pretrained": True,
        "head": [
            _dense(256, activation="relu"),
            {"type": "batchnorm"},
            _dropout(0.5),
            _dense(128, activation="relu"),
        ],
        "freeze": "base",
    }
)

# The chest X-ray study printed the layers but elided forward(); fc1 takes 128*7*7, so each
# pair of convs is followed by the 2x2 pool and its dropout (224 / 2**5 = 7). That gives
# 2,262,434 parameters; the study's text says 2,326,082 without showing where they come from.
PRESETS.register("chest_cnn")(
    {
        "description": "Chest X-ray study 10-conv CNN: 5 x (conv-conv-pool-dropout), dense 256.",
        "layers": [
            layer
            for filters, rate in ((32, 0.25), (64, 0.25), (64, 0.4), (128, 0.4), (128, 0.4))
            for layer in (_conv(filters, 1), _conv(filters, 1), POOL, _dropout(rate))
        ]
        + [FLATTEN, _dense(256), _dropout(0.5)],
    }
)
