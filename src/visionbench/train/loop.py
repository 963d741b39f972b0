"""The fit loop: stages of epochs of steps, with callbacks on named events.

One `Trainer` trains one model through its stages (each with its own trainable set,
optimizer and schedule). Its whole state — weights, optimizer, callbacks, history, RNG,
position — is one checkpoint, so a crashed run resumes to the same result as an
uninterrupted one, and a finished model can continue for more epochs.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.utils import ModelEmaV3

from visionbench.errors import UserError
from visionbench.fileio import atomic_path
from visionbench.models.build import BuiltModel
from visionbench.models.freeze import apply_freeze, set_train_mode
from visionbench.models.outputs import OUTPUTS
from visionbench.runtime.batches import Evaluation, SplitImages, chunks
from visionbench.runtime.features import reading_features
from visionbench.runtime.pipeline import InputPipeline
from visionbench.schemas.models import FreezeSpec, ModelConfig
from visionbench.schemas.train import OptimizerConfig, TrainConfig
from visionbench.train.augment import BatchAugmenter
from visionbench.train.balance import class_weights, epoch_order
from visionbench.train.callbacks import Callback, EarlyStopping, ReduceLROnPlateau
from visionbench.train.mix import BatchMixer
from visionbench.train.optim import lr_factor, make_optimizer


class TrainingDivergedError(Exception):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Stage:
    """A stretch of training with one trainable set and one optimizer."""

    name: str
    epochs: int
    freeze: FreezeSpec
    optimizer: OptimizerConfig


def plan_stages(config: ModelConfig) -> list[Stage]:
    """The model's stages, or one stage from its `train` and `freeze` settings."""
    if not config.stages:
        return [Stage("train", config.train.epochs, config.freeze, config.train.optimizer)]
    return [
        Stage(s.name, s.epochs, s.freeze, s.optimizer or config.train.optimizer)
        for s in config.stages
    ]


def _seed(*parts: int) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class Trainer:
    """Trains one built model on the train split, validating on val after each epoch."""

    def __init__(
        self,
        built: BuiltModel,
        cfg: TrainConfig,
        stages: list[Stage],
        train: SplitImages,
        val: SplitImages | None,
        classes: list[str],
        device: torch.device,
        callbacks: list[Callback] | None = None,
        meta: dict[str, Any] | None = None,
        rank: tuple[int, int] | None = None,
    ) -> None:
        self.built, self.cfg, self.stages = built, cfg, stages
        # (this process, processes) when several train one model (DDP); None alone.
        self.rank = rank
        self.train_images, self.val_images = train, val
        self.classes, self.device = classes, device
        self.model = built.module.to(device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        if rank is not None:
            # Built before any stage freezes a layer, so every parameter is synchronised;
            # a frozen one simply has no gradient to average in its stage (DDP must then
            # look for the parameters a step leaves out).
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=any(stage.freeze != "none" for stage in stages))
        chosen = None
        if cfg.augment.classes is not None:
            unknown = sorted(set(cfg.augment.classes) - set(classes))
            if unknown:
                raise UserError(f"augment.classes: unknown class(es) {unknown}; known: {classes}")
            chosen = torch.tensor([classes.index(c) for c in cfg.augment.classes], device=device)
        augmenter = (BatchAugmenter(cfg.augment, built.input.size, chosen)
                     if cfg.augment.active else None)
        self.pipeline = InputPipeline(built.input, device, cfg.channels_last, augmenter)
        self.mixer = (BatchMixer(cfg.mixup, cfg.cutmix, len(classes))
                      if cfg.mixup or cfg.cutmix else None)
        # The average of the weights is what is evaluated and saved when enabled.
        self.ema = None if cfg.ema is None else ModelEmaV3(
            self.model, decay=cfg.ema.decay, use_warmup=cfg.ema.warmup,
            warmup_gamma=cfg.ema.warmup_gamma, warmup_power=cfg.ema.warmup_power)
        self.ema_updates = 0
        self.output = OUTPUTS.get(built.output)
        weights = class_weights(cfg.loss.class_weights, train.targets, len(classes))
        self.class_weights = None if weights is None else weights.to(device)
        self.autocast = (device.type == "cuda" and cfg.precision in ("auto", "bf16")) or (
            cfg.precision == "bf16"
        )
        self.extra_callbacks = callbacks or []
        self.meta = meta or {}
        self.callbacks: list[Callback] = []
        self.history: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.freeze_reports: list[dict[str, Any]] = []
        self.stage_index = self.epoch_in_stage = self.step_in_stage = self.epoch = 0
        self.lr_scale = 1.0
        self.stop_training = False
        self.train_seconds = 0.0
        self.images_seen = 0
        self.finished = False
        self._pending: dict[str, Any] | None = None
        self._continued = False
        self._sums = torch.zeros(2, device=device)
        self._count = 0
        self._check_monitors()

    @property
    def evaluated_model(self) -> torch.nn.Module:
        """The model that is validated, kept as the best and saved: the moving average of
        the weights with `train.ema`, else the trained model itself."""
        return self.model if self.ema is None else self.ema.module

    @property
    def stage(self) -> Stage:
        """The stage being trained."""
        return self.stages[min(self.stage_index, len(self.stages) - 1)]

    @property
    def stage_name(self) -> str:
        """The name of the stage being trained."""
        return self.stage.name

    @property
    def base_lr(self) -> float:
        """The stage's learning rate before schedules and plateau scaling."""
        return self.stage.optimizer.lr

    def _check_monitors(self) -> None:
        for watched in (self.cfg.early_stopping, self.cfg.plateau):
            if watched is not None and watched.monitor.startswith("val") and not self.val_images:
                raise UserError(
                    f"{watched.monitor} is monitored but the data has no validation split: "
                    "set data.split.val or monitor train_loss"
                )

    def monitor(self) -> str:
        """What 'best' means for checkpoints: early stopping's monitor, else val/train loss."""
        if self.cfg.early_stopping is not None:
            return self.cfg.early_stopping.monitor
        return "val_loss" if self.val_images else "train_loss"

    # -- the loop ---------------------------------------------------------------------

    def fit(self) -> None:
        """Train every remaining stage (from the `load_state_dict` position, if one was loaded)."""
        while not self.finished:
            self._start_stage()
            stage = self.stage
            while self.epoch_in_stage < stage.epochs and not self.stop_training:
                logs = self._train_epoch()
                self.history.append(logs)
                self._emit("on_epoch_end", logs)
            self._emit("on_stage_end")
            if self.stage_index + 1 == len(self.stages):
                # Keep the last stage's position: `continue_training` picks up from it.
                break
            self.stage_index += 1
            self.epoch_in_stage = self.step_in_stage = 0
            self.lr_scale, self.stop_training = 1.0, False
        self.finished = True

    def _start_stage(self) -> None:
        stage = self.stage
        report = apply_freeze(self.built, stage.freeze)
        if len(self.freeze_reports) <= self.stage_index:
            self.freeze_reports.append({"stage": stage.name, **report.as_dict()})
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not trainable:
            raise UserError(f"stage {stage.name}: the freeze rule leaves nothing to train")
        self.optimizer = make_optimizer(trainable, stage.optimizer)
        self.callbacks = []
        if self.cfg.early_stopping is not None:
            self.callbacks.append(EarlyStopping(self.cfg.early_stopping))
        if self.cfg.plateau is not None:
            self.callbacks.append(ReduceLROnPlateau(self.cfg.plateau))
        self.callbacks += self.extra_callbacks
        if self._pending is not None:
            self.optimizer.load_state_dict(self._pending["optimizer"])
            for callback in self.callbacks:
                if callback.name in self._pending["callbacks"]:
                    callback.load_state_dict(self._pending["callbacks"][callback.name])
            self._pending = None
        if self._continued:
            for callback in self.callbacks:
                callback.on_continue()
            self._continued = False
        self._emit("on_stage_start")

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def _lr(self, steps_per_epoch: int) -> float:
        stage = self.stage
        factor = lr_factor(self.cfg.schedule, self.step_in_stage, steps_per_epoch, stage.epochs,
                           stage.optimizer.lr)
        return stage.optimizer.lr * factor * self.lr_scale

    def running_metrics(self) -> tuple[float, float]:
        """Mean loss and accuracy of the epoch so far (synchronises with the device)."""
        loss, correct = self._sums.tolist()
        if not math.isfinite(loss):
            raise TrainingDivergedError(f"loss became {loss} in epoch {self.epoch + 1}")
        return loss / max(self._count, 1), correct / max(self._count, 1)

    def _penalty(self) -> torch.Tensor | None:
        total = None
        terms = [(p.module.weight, p.l1, p.l2) for p in self.built.penalties]
        global_penalty = self.cfg.penalty
        if global_penalty.l1 or global_penalty.l2:
            terms += [(w, global_penalty.l1, global_penalty.l2)
                      for w in self.model.parameters() if w.requires_grad and w.dim() > 1]
        for weight, l1, l2 in terms:
            term = l1 * weight.abs().sum() + l2 * weight.pow(2).sum()
            total = term if total is None else total + term
        return total

    def train_step(self, images: torch.Tensor, targets: torch.Tensor, lr: float,
                   device_gen: torch.Generator, mix_gen: torch.Generator,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch at rate `lr` (augmentation, mixing, loss,
        penalties, clipping, the optimizer and the weight average); returns the batch's loss
        before penalties, the logits, and the targets this process trained on."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        share = 1.0
        if self.rank is not None:
            # Every process makes the same batches and trains on its share of each; the
            # shares' losses are weighted so that averaging their gradients gives the
            # whole batch's.
            this, processes = self.rank
            size = len(targets)
            images, targets = images[this::processes], targets[this::processes]
            share = len(targets) * processes / size
        inputs = self.pipeline(images, targets, train=True, gen=device_gen)
        goal = targets
        if self.mixer is not None:
            inputs, goal = self.mixer(inputs, targets, mix_gen)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.forward(inputs)
        loss = self.output.loss(logits, goal, self.class_weights,
                                self.cfg.loss.label_smoothing, self.cfg.loss.focal_gamma)
        penalty = self._penalty()
        total = loss * share if penalty is None else loss * share + penalty
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema_updates += 1
            self.ema.update(self.model, step=self.ema_updates)
        return loss, logits, targets

    def _train_epoch(self) -> dict[str, Any]:
        started = time.perf_counter()
        set_train_mode(self.model)
        gen = torch.Generator().manual_seed(
            _seed(self.cfg.seed, self.stage_index, self.epoch_in_stage))
        order = epoch_order(self.cfg.balance, self.train_images.targets, len(self.classes), gen)
        device_gen = torch.Generator(device=self.device).manual_seed(
            _seed(self.cfg.seed, self.stage_index, self.epoch_in_stage, 1))
        mix_gen = torch.Generator().manual_seed(
            _seed(self.cfg.seed, self.stage_index, self.epoch_in_stage, 2))
        batches = len(chunks(order, self.cfg.batch_size))
        self._sums.zero_()
        self._count = 0
        lr = self._lr(batches)
        for batch, (images, targets) in enumerate(
            self.train_images.batches(order, self.cfg.batch_size), start=1
        ):
            lr = self._lr(batches)
            loss, logits, targets = self.train_step(images, targets, lr, device_gen, mix_gen)
            with torch.no_grad():
                correct = (self.output.probabilities(logits).argmax(1) == targets).sum()
                self._sums[0] += loss.detach().float() * len(targets)
                self._sums[1] += correct
            self._count += len(targets)
            self.step_in_stage += 1
            self._emit("on_batch_end", batch, batches)
        if self.rank is not None:
            # The epoch's numbers of the whole batch, identical in every process.
            counted = torch.cat([self._sums, torch.tensor([float(self._count)],
                                                          device=self.device)])
            torch.distributed.all_reduce(counted)
            self._sums.copy_(counted[:2])
            self._count = int(counted[2])
        train_loss, train_accuracy = self.running_metrics()
        seconds = time.perf_counter() - started
        self.train_seconds += seconds
        self.images_seen += len(order)
        self.epoch_in_stage += 1
        self.epoch += 1
        logs: dict[str, Any] = {
            "epoch": self.epoch, "stage": self.stage.name, "train_loss": train_loss,
            "train_accuracy": train_accuracy, "val_loss": None, "val_accuracy": None,
            "lr": lr, "seconds": seconds, "images": len(order),
        }
        if self.val_images:
            result = self.evaluate(self.val_images)
            logs["val_loss"], logs["val_accuracy"] = result.loss, result.accuracy
            # The epoch's last step can leave NaN weights after finite training losses.
            if not math.isfinite(result.loss):
                raise TrainingDivergedError(f"validation loss became {result.loss} in epoch "
                                            f"{self.epoch}")
        return logs

    def extend(self, epochs: int) -> None:
        """Continue a finished model: its last stage gets `epochs` more epochs.

        Call after `load_state_dict`; early stopping's patience starts afresh.
        """
        last = self.stages[-1]
        self.stages[-1] = Stage(last.name, last.epochs + epochs, last.freeze, last.optimizer)
        self.finished = self.stop_training = False
        self._continued = True

    # -- evaluation --------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: SplitImages,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 features: bool = False) -> Evaluation:
        """Loss, accuracy and per-image probabilities of the current model on `split`
        (with `transform` applied to every image before normalisation, if given), and with
        `features` its penultimate features, read in the same pass."""
        self.model.eval()
        # Features are read by a hook on the plain module (a compiled graph may skip it).
        model = (self.evaluated_model if features
                 else self.forward if self.ema is None else self.ema.module)
        order = torch.arange(len(split))
        batch_size = self.cfg.eval_batch_size or self.cfg.batch_size * 2
        probabilities, losses = [], torch.zeros((), device=self.device)
        with (reading_features(self.evaluated_model) if features
              else contextlib.nullcontext([])) as read:
            for images, targets in split.batches(order, batch_size):
                inputs = self.pipeline(images, targets, train=False, transform=transform)
                with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                    enabled=self.autocast):
                    logits = model(inputs)
                losses += self.output.loss(logits, targets, None, 0.0) * len(targets)
                probabilities.append(self.output.probabilities(logits))
        probs = torch.cat(probabilities).cpu()
        loss = float(losses) / max(len(split), 1)
        hits = probs.argmax(1) == split.targets
        accuracy = float(hits.double().mean()) if len(split) else 0.0
        return Evaluation(loss, accuracy, probs, torch.cat(read) if read else None)

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training identically."""
        state = {
            "position": {
                "stage_index": self.stage_index, "epoch_in_stage": self.epoch_in_stage,
                "step_in_stage": self.step_in_stage, "epoch": self.epoch,
                "lr_scale": self.lr_scale, "stop_training": self.stop_training,
                "finished": self.finished,
            },
            "history": self.history, "events": self.events,
            "freeze_reports": self.freeze_reports,
            "timing": {"train_seconds": self.train_seconds, "images_seen": self.images_seen},
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else {"weights": self.ema.module.state_dict(),
                                                  "updates": self.ema_updates},
            # A state loaded after the last epoch never starts a stage again: what it
            # loaded is still the optimizer's and the callbacks' state.
            "optimizer": self._pending["optimizer"] if self._pending is not None
            else self.optimizer.state_dict(),
            "callbacks": self._pending["callbacks"] if self._pending is not None
            else {c.name: c.state_dict() for c in self.callbacks},
            "rng": {"torch": torch.get_rng_state()},
            "meta": self.meta,
        }
        if self.device.type == "cuda":
            state["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_checkpoint(self, path: Path) -> None:
        """Write `state_dict()` atomically to `path`."""
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: weights and RNG now, optimizer and callbacks when the
        stage starts."""
        position = state["position"]
        self.stage_index, self.epoch_in_stage = position["stage_index"], position["epoch_in_stage"]
        self.step_in_stage, self.epoch = position["step_in_stage"], position["epoch"]
        self.lr_scale, self.stop_training = position["lr_scale"], position["stop_training"]
        self.finished = position["finished"]
        self.history, self.events = list(state["history"]), list(state["events"])
        self.freeze_reports = list(state["freeze_reports"])
        self.train_seconds = state["timing"]["train_seconds"]
        self.images_seen = state["timing"]["images_seen"]
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise UserError("the checkpoint was trained without train.ema: train this "
                                "model from scratch to average its weights")
            self.ema.module.load_state_dict(state["ema"]["weights"])
            self.ema_updates = state["ema"]["updates"]
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self._pending = {"optimizer": state["optimizer"], "callbacks": state["callbacks"]}
