"""One model's work in a run, as one value: which model, on what data, into which folder,
how it starts, and which repeat and fold of it this is."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from visionbench.config import Config
from visionbench.data.dataset import PreparedData
from visionbench.rundir.layout import ModelFolder
from visionbench.schemas.models import ModelConfig


class Mode(str, Enum):
    """How a model's training starts."""

    NEW = "new"  # from scratch
    RESUME = "resume"  # from an interrupted run's last checkpoint
    CONTINUE = "continue"  # a finished model, for more epochs


@dataclass(frozen=True)
class ModelTask:
    """Model `name` of `config`, trained on `data` into `folder`.

    `repeat` (0: the model's own seed) of `repeats`, and `fold` (None: not a fold model) say
    which of a model's supporting trainings this is (whose config is a lighter one);
    `extra_epochs` is what a `continue` adds.
    """

    config: Config
    name: str
    data: PreparedData
    folder: ModelFolder
    mode: Mode = Mode.NEW
    extra_epochs: int = 0
    repeat: int = 0
    repeats: int = 1
    fold: int | None = None

    @property
    def model(self) -> ModelConfig:
        """The model's config."""
        return self.config.models[self.name]

    def but(self, **changes: Any) -> ModelTask:
        """The same task with `changes` (a fold's data and folder, a lighter config)."""
        return dataclasses.replace(self, **changes)

    def label(self, line: str) -> str:
        """`line` as this fold's or repeat's progress says it: 'fold 2/5 (repeat 2/3) of
        ...'; a model's own training says `line` alone."""
        repeat = f" (repeat {self.repeat + 1}/{self.repeats})" if self.repeat else ""
        if self.fold is None:
            return line
        return f"fold {self.fold + 1}/{self.data.config.split.folds}{repeat} of {line}"


@dataclass(frozen=True)
class FoldItem:
    """One fold of one repeat of a cross-validated model: a task of its own for a parallel
    executor."""

    model: str
    repeat: int
    fold: int
