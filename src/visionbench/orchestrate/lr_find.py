"""`visionbench lr-find`: the learning-rate range test of one model of a config, drawn as
a picture with the suggested rate marked, its numbers beside it, and the `--set` that
applies the suggestion (a hint to check on the curve, not a choice made for the user)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from visionbench.config import Config
from visionbench.data.dataset import prepare_data
from visionbench.errors import UserError
from visionbench.evaluate.error_examples import pyplot
from visionbench.fileio import atomic_path, write_json
from visionbench.models.build import build_model
from visionbench.models.family import family_of
from visionbench.orchestrate.execute import data_facts
from visionbench.rundir.layout import lr_find_files
from visionbench.runtime.batches import SplitImages
from visionbench.runtime.device import pick_device
from visionbench.train.loop import Trainer, plan_stages
from visionbench.train.lr_find import LrCurve, find_lr


@dataclass
class LrFinding:
    """The curve, where it was drawn and written, and how to apply the suggestion."""

    curve: LrCurve
    picture: Path
    record: Path
    setting: str | None


def _set_option(config: Config, name: str, rate: float) -> str:
    """The `--set` (or the config key) that trains model `name` at `rate`."""
    stages = config.models[name].stages
    if stages:
        return (f"stage {stages[0].name} of {name}: set models.{name}.stages[0].optimizer.lr "
                f"to {rate:.2g} in the config")
    return f"--set models.{name}.train.optimizer.lr={rate:.2g}"


def _draw(curve: LrCurve, path: Path, title: str) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2), layout="constrained")
    axis.plot(curve.rates, curve.losses, color="#bbb", linewidth=0.8, label="loss")
    axis.plot(curve.rates, curve.smoothed, color="#1f77b4", label="smoothed loss")
    if curve.suggestion is not None:
        axis.axvline(curve.suggestion, color="#d62728", linestyle="--",
                     label=f"steepest descent: {curve.suggestion:.2g}")
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    # The end of a diverging sweep would squash the useful part of the curve.
    top = min(max(curve.smoothed), 2 * curve.smoothed[0]) if curve.smoothed else 1.0
    axis.set_ylim(min(curve.losses, default=0.0) * 0.95, top * 1.05)
    axis.set_title(title, fontsize=10)
    axis.legend()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def lr_find(config: Config, name: str, steps: int = 200, start: float = 1e-7,
            end: float = 10.0) -> LrFinding:
    """Run the range test on model `name` of `config` and write its picture and numbers."""
    if name not in config.models:
        raise UserError(f"--model {name}: not a model of this config (models: "
                        f"{', '.join(config.models)})")
    if not 0 < start < end:
        raise UserError(f"--start {start:g} and --end {end:g}: the sweep needs "
                        "0 < start < end")
    model_cfg = config.models[name]
    if not family_of(model_cfg).trainable:
        raise UserError(f"model {name} is {model_cfg.family_name}: it is not trained here")
    data = prepare_data(config.data)
    if not len(data.positions("train")):
        raise UserError("the training split is empty")
    train_cfg = model_cfg.train
    device = pick_device(train_cfg.device)
    torch.manual_seed(train_cfg.seed)
    facts = data_facts(data)
    built = build_model(model_cfg, len(data.classes), facts.image_shape, facts.mean, facts.std,
                        facts.per_image)
    budget = train_cfg.memory_budget_mb
    val = SplitImages(data, "val", device, budget) if len(data.positions("val")) else None
    trainer = Trainer(built, train_cfg, plan_stages(model_cfg),
                      SplitImages(data, "train", device, budget), val, data.classes, device)
    curve = find_lr(trainer, start, end, steps)
    if len(curve.rates) < 3:
        raise UserError(f"the loss diverged after {len(curve.rates)} step(s): lower --start "
                        f"(now {start:g})")
    picture, record = lr_find_files(config.output.dir, str(config.output.name), name)
    picture.parent.mkdir(parents=True, exist_ok=True)
    stage = plan_stages(model_cfg)[0].name
    _draw(curve, picture, f"{config.output.name}: {name}, stage {stage}, "
          f"batch {train_cfg.batch_size} ({device})")
    setting = None if curve.suggestion is None else _set_option(config, name, curve.suggestion)
    write_json(record, {"model": name, "stage": stage, "start": start, "end": end,
                        "steps": steps, "device": str(device), "setting": setting,
                        **asdict(curve)})
    return LrFinding(curve, picture, record, setting)
