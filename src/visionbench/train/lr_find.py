"""The learning-rate range test (Smith 2017, as fastai's `lr_find`): train for a few hundred
steps while the rate grows geometrically from `start` to `end`, record the loss, and
suggest the rate where the smoothed loss falls fastest. The suggestion is a hint to read
off the curve, never applied by itself.

Example:
    >>> rates = sweep_rates(1e-4, 1.0, 5)
    >>> [f"{r:.0e}" for r in rates]
    ['1e-04', '1e-03', '1e-02', '1e-01', '1e+00']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from visionbench.models.freeze import apply_freeze, set_train_mode
from visionbench.runtime.batches import chunks
from visionbench.train.balance import epoch_order
from visionbench.train.loop import Trainer, _seed
from visionbench.train.optim import make_optimizer

# The recorded loss is smoothed exponentially (bias-corrected) over about a 20th of the
# sweep: enough against batch noise, short enough not to lag the rate it belongs to.
SMOOTHED_SHARE = 1 / 20
DIVERGED = 4.0  # the sweep stops once the smoothed loss exceeds this multiple of its best


def sweep_rates(start: float, end: float, steps: int) -> list[float]:
    """`steps` rates from `start` to `end`, evenly spaced on a log scale."""
    ratio = end / start
    return [start * ratio ** (i / max(steps - 1, 1)) for i in range(steps)]


@dataclass
class LrCurve:
    """The rates tried, the loss at each (raw and smoothed), and the suggested rate."""

    rates: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggestion: float | None = None
    stopped_early: bool = False


def steepest(rates: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest (against log rate) before its minimum;
    None when the loss never falls."""
    lowest = int(np.argmin(smoothed))
    if lowest < 2:
        return None
    slopes = np.gradient(np.asarray(smoothed[:lowest + 1]), np.log(rates[:lowest + 1]))
    return float(rates[int(np.argmin(slopes))])


def find_lr(trainer: Trainer, start: float, end: float, steps: int) -> LrCurve:
    """Sweep the rate over `steps` training steps of `trainer`'s first stage (its freeze
    rule, optimizer and the very step training takes: augmentation, mixing, loss,
    penalties), cycling through the training split; the model's weights change."""
    stage = trainer.stages[0]
    apply_freeze(trainer.built, stage.freeze)
    trainer.optimizer = make_optimizer(
        [p for p in trainer.model.parameters() if p.requires_grad], stage.optimizer)
    cfg = trainer.cfg
    smoothing = max(0.5, 1 - 1 / (SMOOTHED_SHARE * steps))
    curve = LrCurve()
    average, epoch = 0.0, 0
    rates = iter(sweep_rates(start, end, steps))
    while len(curve.rates) < steps:
        set_train_mode(trainer.model)
        gen = torch.Generator().manual_seed(_seed(cfg.seed, 0, epoch))
        order = epoch_order(cfg.balance, trainer.train_images.targets, len(trainer.classes), gen)
        device_gen = torch.Generator(device=trainer.device).manual_seed(_seed(cfg.seed, 0,
                                                                               epoch, 1))
        mix_gen = torch.Generator().manual_seed(_seed(cfg.seed, 0, epoch, 2))
        if not chunks(order, cfg.batch_size):
            break
        for images, targets in trainer.train_images.batches(order, cfg.batch_size):
            rate = next(rates, None)
            if rate is None:
                break
            loss, _, _ = trainer.train_step(images, targets, rate, device_gen, mix_gen)
            value = float(loss.detach())
            if not math.isfinite(value):
                curve.stopped_early = True
                break
            average = smoothing * average + (1 - smoothing) * value
            smooth = average / (1 - smoothing ** (len(curve.rates) + 1))
            curve.rates.append(rate)
            curve.losses.append(value)
            curve.smoothed.append(smooth)
            if smooth > DIVERGED * min(curve.smoothed):
                curve.stopped_early = True
                break
        if curve.stopped_early:
            break
        epoch += 1
    if curve.rates:
        curve.suggestion = steepest(curve.rates, curve.smoothed)
    return curve
