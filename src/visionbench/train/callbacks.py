"""Callbacks of the fit loop, driven by named events.

Events: `on_stage_start`, `on_batch_end`, `on_epoch_end`, `on_stage_end`, and
`on_continue` when a finished model is trained further. A callback sees the trainer only
through `TrainerView` (what it may read, and the two requests it may make: stop, or scale
the learning rate) and has a `state_dict` so a resumed run continues exactly where it
stopped.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from visionbench.runtime.trained import save_weights
from visionbench.schemas.train import EarlyStoppingConfig, PlateauConfig


class TrainerView(Protocol):
    """What a callback may see of the trainer, and change (`stop_training`, `lr_scale`)."""

    epoch: int
    events: list[dict[str, Any]]
    stop_training: bool
    lr_scale: float

    @property
    def evaluated_model(self) -> nn.Module:
        """The model that is validated, kept as the best and saved."""
        ...

    @property
    def stage_name(self) -> str:
        """The stage being trained."""
        ...

    @property
    def base_lr(self) -> float:
        """The stage's learning rate before schedules and plateau scaling."""
        ...

    def monitor(self) -> str:
        """The history key that 'best' refers to."""
        ...

    def running_metrics(self) -> tuple[float, float]:
        """Mean loss and accuracy of the epoch so far."""
        ...

    def save_checkpoint(self, path: Path) -> None:
        """Write the whole training state to `path`."""
        ...


class Callback:
    """Base class: every event does nothing; state is empty."""

    name = "callback"

    def on_stage_start(self, trainer: TrainerView) -> None:
        """A stage (its trainable set and optimizer) begins."""

    def on_batch_end(self, trainer: TrainerView, batch: int, batches: int) -> None:
        """An optimizer step finished."""

    def on_epoch_end(self, trainer: TrainerView, logs: dict[str, Any]) -> None:
        """An epoch finished; `logs` is its history row."""

    def on_stage_end(self, trainer: TrainerView) -> None:
        """The stage's epochs are done or training was stopped."""

    def on_continue(self) -> None:
        """A finished model is trained further (after its state was restored)."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue identically."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`."""


def _direction(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "max" if monitor.endswith("accuracy") else "min"


class _Monitor:
    """Tracks the best value of one history key with a minimum improvement."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        self.monitor = monitor
        self.sign = 1.0 if _direction(monitor, mode) == "min" else -1.0
        self.min_delta = min_delta
        self.best = math.inf
        self.wait = 0

    def improved(self, logs: dict[str, Any]) -> bool:
        value = self.sign * float(logs[self.monitor])
        if value < self.best - self.min_delta:
            self.best = value
            self.wait = 0
            return True
        self.wait += 1
        return False

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]


class EarlyStopping(Callback):
    """Stop when the monitored value stalls; restore the best epoch's weights at stage end."""

    name = "early_stopping"

    def __init__(self, cfg: EarlyStoppingConfig) -> None:
        self.cfg = cfg
        self.tracker = _Monitor(cfg.monitor, cfg.mode, cfg.min_delta)
        self.best_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, trainer: TrainerView, logs: dict[str, Any]) -> None:
        if self.tracker.improved(logs):
            self.best_epoch = logs["epoch"]
            if self.cfg.restore_best:
                state = trainer.evaluated_model.state_dict()
                self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        elif self.tracker.wait >= self.cfg.patience:
            trainer.stop_training = True
            self.stopped_epoch = logs["epoch"]

    def on_stage_end(self, trainer: TrainerView) -> None:
        if self.cfg.restore_best and self.best_weights is not None:
            trainer.evaluated_model.load_state_dict(self.best_weights)
        trainer.events.append({
            "event": "early_stopping", "stage": trainer.stage_name,
            "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch,
            "restored": bool(self.cfg.restore_best and self.best_weights is not None),
        })

    def on_continue(self) -> None:
        # More epochs were asked for: patience starts afresh.
        self.tracker.wait = 0
        self.stopped_epoch = None

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state(), "best_epoch": self.best_epoch,
                "best_weights": self.best_weights, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load(state["tracker"])
        self.best_epoch, self.best_weights = state["best_epoch"], state["best_weights"]
        self.stopped_epoch = state["stopped_epoch"]


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when the monitored value stalls."""

    name = "plateau"

    def __init__(self, cfg: PlateauConfig) -> None:
        self.cfg = cfg
        self.tracker = _Monitor(cfg.monitor, cfg.mode, cfg.min_delta)

    def on_epoch_end(self, trainer: TrainerView, logs: dict[str, Any]) -> None:
        if self.tracker.improved(logs) or self.tracker.wait < self.cfg.patience:
            return
        base = trainer.base_lr
        floor = self.cfg.min_lr / base
        new_scale = max(trainer.lr_scale * self.cfg.factor, floor)
        if new_scale < trainer.lr_scale:
            trainer.lr_scale = new_scale
            trainer.events.append({"event": "lr_reduced", "epoch": logs["epoch"],
                                   "lr": base * new_scale})
        self.tracker.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load(state["tracker"])


class Checkpoint(Callback):
    """Write the trainer's whole state after every epoch (`last.pt`) and the best weights
    by the trainer's monitor (`best.safetensors`).

    Runs after the other callbacks so the saved state includes their decisions.
    """

    name = "checkpoint"

    def __init__(self, last: Path, best: Path) -> None:
        self.last, self.best = last, best
        self.tracker: _Monitor | None = None
        self._saved: dict[str, Any] | None = None

    def on_stage_start(self, trainer: TrainerView) -> None:
        if self.tracker is None:
            self.tracker = _Monitor(trainer.monitor(), "auto", 0.0)
            if self._saved is not None:
                self.tracker.load(self._saved)

    def on_epoch_end(self, trainer: TrainerView, logs: dict[str, Any]) -> None:
        assert self.tracker is not None, "on_stage_start comes first"
        if self.tracker.improved(logs):
            save_weights(trainer.evaluated_model, self.best)
        trainer.save_checkpoint(self.last)

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state() if self.tracker else self._saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved = state["tracker"]
        if self.tracker is not None and self._saved is not None:
            self.tracker.load(self._saved)


class Progress(Callback):
    """A live bar with running loss/accuracy on a terminal; one line per epoch otherwise."""

    name = "progress"

    def __init__(self, label: str, mode: str) -> None:
        self.label = label
        interactive = sys.stderr.isatty()
        self.bar = mode == "bar" or (mode == "auto" and interactive)
        self.quiet = mode == "quiet"
        self._progress: Any = None
        self._task: Any = None
        self._last = 0.0

    def on_batch_end(self, trainer: TrainerView, batch: int, batches: int) -> None:
        if not self.bar:
            return
        if self._progress is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                "{task.total}"), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                transient=True,
            )
            self._progress.start()
        description = f"{self.label} {trainer.stage_name} epoch {trainer.epoch + 1}"
        if self._task is None:
            self._task = self._progress.add_task(description, total=batches, stats="")
        now = time.perf_counter()
        # Reading the running loss synchronises with the device, so do it a few times a second.
        stats = None
        if now - self._last > 0.25 or batch == batches:
            self._last = now
            loss, accuracy = trainer.running_metrics()
            stats = f"loss {loss:.4f} acc {accuracy:.3f}"
        self._progress.update(self._task, completed=batch, total=batches,
                              description=description, **({"stats": stats} if stats else {}))

    def on_epoch_end(self, trainer: TrainerView, logs: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None
        if self.quiet:
            return
        parts = [f"{self.label} {logs['stage']} epoch {logs['epoch']}"]
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            if logs.get(key) is not None:
                parts.append(f"{key} {logs[key]:.4f}")
        parts.append(f"lr {logs['lr']:.2e}")
        parts.append(f"{logs['seconds']:.1f}s")
        print("  ".join(parts), file=sys.stderr, flush=True)

