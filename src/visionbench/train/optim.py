"""Optimizers and learning-rate schedules, each one registered function.

The schedule is a multiplier of the base rate computed per step (with an optional linear
warm-up); reduce-on-plateau multiplies a separate scale, so both compose and the whole
state to checkpoint is (step, scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from visionbench.registry import Registry
from visionbench.schemas.train import OptimizerConfig, ScheduleConfig

OPTIMIZERS: Registry[Callable[[Iterable[torch.nn.Parameter], OptimizerConfig],
                              torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig
                   ) -> torch.optim.Optimizer:
    """The configured optimizer over `params`."""
    return OPTIMIZERS.get(cfg.name)(list(params), cfg)


Schedule = Callable[[float, ScheduleConfig, float], float]
SCHEDULES: Registry[Schedule] = Registry("schedule")


@SCHEDULES.register("constant")
def _constant(progress: float, cfg: ScheduleConfig, ratio: float) -> float:
    return 1.0


@SCHEDULES.register("step")
def _step(progress: float, cfg: ScheduleConfig, ratio: float) -> float:
    # `progress` is in epochs here (see lr_factor), so steps fall on epoch boundaries.
    return cfg.gamma ** math.floor(progress / cfg.step_epochs)


@SCHEDULES.register("cosine")
def _cosine(progress: float, cfg: ScheduleConfig, ratio: float) -> float:
    return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@SCHEDULES.register("onecycle")
def _onecycle(progress: float, cfg: ScheduleConfig, ratio: float) -> float:
    start = 1 / 25  # torch's OneCycleLR default div_factor
    if progress < cfg.pct_start:
        return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * progress / cfg.pct_start))
    rest = (progress - cfg.pct_start) / (1 - cfg.pct_start)
    return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0)))


def lr_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, epochs: int,
              base_lr: float) -> float:
    """Multiplier of the base rate at `step` of a stage of `epochs` epochs."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    total = max(epochs * steps_per_epoch - warmup, 1)
    after = step - warmup
    progress = after / steps_per_epoch if cfg.name == "step" else after / total
    return SCHEDULES.get(cfg.name)(progress, cfg, min(cfg.min_lr / base_lr, 1.0))
