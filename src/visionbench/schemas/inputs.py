"""What a trained model is fed: resolved once per model, stored in its folder, read back by
evaluation, explanation and every later use of the model."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict

from visionbench.schemas.base import StrictModel


class InputSpec(StrictModel):
    """Size (H, W), channels, normalisation (per channel, or per image) and how evaluation
    images reach the size (`stretch` or `center_crop`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: tuple[int, int]
    channels: Literal[1, 3]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    per_image: bool = False
    resize: Literal["stretch", "center_crop"] = "stretch"
