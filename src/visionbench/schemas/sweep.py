"""A search over a model's settings on validation only (`sweep:`)."""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field, model_validator

from visionbench.schemas.base import StrictModel


class Dimension(StrictModel):
    """One searched setting: a range (`low`, `high`, optional `log` scale and `step`;
    integers when both ends and the step are whole numbers) or a list of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Dimension:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low and high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (a range) or choices (a list)")
        if self.low >= self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self

    @property
    def whole(self) -> bool:
        """Whether the range is of integers."""
        return all(float(v).is_integer() for v in (self.low, self.high, self.step or 1))


class SweepConfig(StrictModel):
    """Search `space` (keys are paths in `model`'s settings: `train.optimizer.lr`,
    `layers.0.filters`, `input.size`, ...) with Optuna's TPE sampler for `trials` trials,
    each scored by the primary metric on the validation split alone (the test split is not
    given to the trials). Unpromising trials stop early (`pruner`: `median`, `asha` —
    successive halving — or `none`) on the validation curve. The best trial becomes model
    `name` (default `<model>_tuned`) of the run, trained and evaluated on test once."""

    model: str
    space: dict[str, Dimension] = Field(min_length=1)
    trials: int = Field(20, ge=1)
    pruner: Literal["median", "asha", "none"] = "median"
    seed: int = 0
    parallel: int = Field(4, ge=1, description="Trials at a time with a parallel executor "
                          "(execution.executor: ray); one at a time locally.")
    name: str | None = None

    @property
    def tuned(self) -> str:
        """The name the best trial takes among the run's models."""
        return self.name or f"{self.model}_tuned"


def with_setting(settings: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of nested `settings` with the value at dotted `path` replaced (a number in the
    path indexes a list); a path that names nothing is a ValueError saying where it stops.

    Example:
        >>> with_setting({"layers": [{"filters": 8}], "train": {"lr": 0.1}},
        ...              "layers.0.filters", 16)["layers"]
        [{'filters': 16}]
    """
    found = copy.deepcopy(settings)
    node: Any = found
    keys = path.split(".")
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            if last:
                node[int(key)] = value
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            if last:
                node[key] = value
            node = node[key]
        else:
            where = ".".join(keys[:depth]) or "the model"
            raise ValueError(f"{path}: {where} has no {key!r}")
    return found
