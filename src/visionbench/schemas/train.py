"""Typed training settings: optimizer, schedule, callbacks, loss, augmentation, balancing.

The top-level `train:` section is the default of every model; a model's own `train:` keys
are deep-merged over it when the config is loaded, so each model carries a complete
`TrainConfig` and the saved config says exactly how each model was trained.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from visionbench.schemas.base import Registered, StrictModel


class OptimizerConfig(StrictModel):
    """Optimizer (a registry name: sgd, adam, adamw, rmsprop) and its settings."""

    name: Annotated[str, Registered("optimizer")] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(StrictModel):
    """Learning-rate schedule, applied per step: constant, step, cosine or onecycle.

    `warmup_epochs` ramps the rate linearly from zero first. `step` multiplies by `gamma`
    every `step_epochs`; `cosine` decays to `min_lr`; `onecycle` rises to `lr` over
    `pct_start` of training and anneals to `min_lr`.
    """

    name: Annotated[str, Registered("schedule")] = "constant"
    warmup_epochs: float = Field(0.0, ge=0)
    step_epochs: int = Field(10, ge=1)
    gamma: float = Field(0.1, gt=0)
    min_lr: float = Field(0.0, ge=0)
    pct_start: float = Field(0.3, gt=0, lt=1)


Monitor = Literal["val_loss", "val_accuracy", "train_loss", "train_accuracy"]


class EarlyStoppingConfig(StrictModel):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs."""

    monitor: Monitor = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)
    restore_best: bool = True


class PlateauConfig(StrictModel):
    """Multiply the learning rate by `factor` when `monitor` stalls for `patience` epochs."""

    monitor: Monitor = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(2, ge=1)
    min_delta: float = Field(0.0, ge=0)
    min_lr: float = Field(0.0, ge=0)


class LossConfig(StrictModel):
    """Cross-entropy with optional label smoothing and class weights (`balanced` or a list);
    `focal_gamma` > 0 makes it the focal loss (Lin et al. 2017), which down-weights the
    images a model already classifies confidently: an aid on imbalanced sets, beside or
    instead of class weights."""

    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] | list[float] = "none"
    focal_gamma: float = Field(0.0, ge=0, le=10)


class PenaltyConfig(StrictModel):
    """L1 / L2 (elastic net when both) on every weight matrix and kernel, biases excluded."""

    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)


class CropConfig(StrictModel):
    """Random resized crop: area fraction in `scale`, aspect ratio in `ratio`."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


class AutoAugmentConfig(StrictModel):
    """A policy of random operations on every training image, batched on the device:
    `trivial` (TrivialAugment: one operation, a random magnitude) or `rand` (RandAugment:
    `ops` operations at `magnitude` out of 30)."""

    policy: Literal["trivial", "rand"] = "trivial"
    ops: int = Field(2, ge=1, le=5)
    magnitude: int = Field(9, ge=0, le=30)


class AugmentConfig(StrictModel):
    """Batch augmentation on the device; every key off by default.

    Probabilities for flips; maximum magnitudes for the rest (rotation in degrees, zoom
    and shift as fractions of the size, brightness/contrast as relative changes, noise as
    the std of Gaussian noise on [0, 1] pixels). `classes` restricts augmentation to some
    classes (the photo-filter study augmented only its minority class).
    """

    hflip: float = Field(0.0, ge=0, le=1)
    vflip: float = Field(0.0, ge=0, le=1)
    rotation: float = Field(0.0, ge=0, le=180)
    zoom: float = Field(0.0, ge=0, lt=1)
    shift: float = Field(0.0, ge=0, lt=1)
    crop: CropConfig | None = None
    brightness: float = Field(0.0, ge=0, le=1)
    contrast: float = Field(0.0, ge=0, le=1)
    noise: float = Field(0.0, ge=0)
    fill: Literal["border", "zeros", "reflection"] = "border"
    auto: AutoAugmentConfig | None = None
    classes: list[str] | None = None

    @property
    def active(self) -> bool:
        """Whether any augmentation is switched on."""
        return bool(
            self.hflip or self.vflip or self.rotation or self.zoom or self.shift or self.crop
            or self.brightness or self.contrast or self.noise or self.auto
        )


class EmaConfig(StrictModel):
    """An exponential moving average of the weights (timm's `ModelEmaV3`): evaluated after
    every epoch, and saved as the model. With `warmup`, the decay grows as
    1 - (1 + step / warmup_gamma) ** -warmup_power up to `decay`, so a short run still
    averages its late weights rather than its random start."""

    decay: float = Field(0.999, gt=0, lt=1)
    warmup: bool = True
    warmup_gamma: float = Field(1.0, gt=0)
    warmup_power: float = Field(3 / 4, gt=0)


class MixConfig(StrictModel):
    """Mixup or CutMix (timm's batch mode): with probability `prob` a batch is mixed with
    itself reversed, by a share drawn from Beta(`alpha`, `alpha`); the loss reads the
    mixed labels (label smoothing applies to them)."""

    alpha: float = Field(..., gt=0)
    prob: float = Field(1.0, gt=0, le=1)


class DistributedConfig(StrictModel):
    """One model trained by several processes with PyTorch's DistributedDataParallel: each
    process takes its share of every batch (the same batches as one process would make),
    gradients are averaged, and the first process alone writes. `backend`: `auto` is NCCL
    on GPUs (one device per process) and gloo on CPUs."""

    processes: int = Field(2, ge=2)
    backend: Literal["auto", "gloo", "nccl"] = "auto"


class TrainConfig(StrictModel):
    """How one model is trained (the `train:` section, merged with the model's own)."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    seed: int = 0
    repeats: int = Field(1, ge=1, description="Train K times with seeds seed..seed+K-1; "
                         "metrics report mean and std across them.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    plateau: PlateauConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    loss: LossConfig = Field(default_factory=LossConfig)
    penalty: PenaltyConfig = Field(default_factory=PenaltyConfig)
    grad_clip: float | None = Field(None, gt=0)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    mixup: MixConfig | None = None
    cutmix: MixConfig | None = None
    ema: EmaConfig | None = None
    balance: Annotated[str, Registered("balance method")] = "none"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True
    compile: bool = False
    distributed: DistributedConfig | None = None
    memory_budget_mb: int = Field(4096, ge=0)
    checkpoint: bool = True
    progress: Literal["auto", "bar", "lines", "quiet"] = "auto"
