"""What a trained model is fed: resolved once per model, stored in its folder, read back by
evaluation, explanation and every later use of the model."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, model_validator

from visionbench.schemas.base import StrictModel

# The largest image side a model is fed or a run decodes to: a 4096 x 4096 RGB batch of 64
# is already 3 GB of uint8. A run folder saying more was edited, and would exhaust memory.
MAX_SIDE = 4096


def size_problem(size: tuple[int, ...] | list[int]) -> str | None:
    """Why `size` (height, width) cannot be an image size, or None.

    Example:
        >>> size_problem((40000, 40000))
        'sides must be between 1 and 4096 pixels, not (40000, 40000)'
    """
    if not all(1 <= side <= MAX_SIDE for side in size):
        return f"sides must be between 1 and {MAX_SIDE} pixels, not {tuple(size)}"
    return None


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

    @model_validator(mode="after")
    def _usable(self) -> InputSpec:
        # Read back from a model card that may have been edited: a zero or NaN std makes
        # every probability NaN, a huge size exhausts memory.
        problem = size_problem(self.size)
        if problem is not None:
            raise ValueError(f"size: {problem}")
        if not all(math.isfinite(v) for v in self.mean):
            raise ValueError("mean must be finite")
        if not all(math.isfinite(v) and v > 0 for v in self.std):
            raise ValueError(f"std must be positive and finite, not {self.std}")
        return self
