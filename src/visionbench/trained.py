"""Trained models loaded back from their model folder alone: rebuilt from `model.json`, fed
by the input settings stored there, with the folder's safetensors weights (nothing is
unpickled and no pretrained weights are looked for).

Model folders written before `model.json` existed are read through a card derived from the
run's config.yaml, data.json and the model's metrics.json (`legacy_card`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visionbench.config import Config
from visionbench.errors import UserError
from visionbench.models.build import rebuild
from visionbench.models.family import FAMILIES
from visionbench.rundir.documents import DataRecord, ModelCard, ModelMetrics
from visionbench.rundir.layout import ModelFolder, RunFolder
from visionbench.runtime.device import pick_device
from visionbench.runtime.pipeline import InputPipeline
from visionbench.schemas.inputs import InputSpec


@dataclass
class LoadedModel:
    """A trained classifier on its device, with the pipeline that feeds it."""

    module: torch.nn.Module
    pipeline: InputPipeline
    device: torch.device


def legacy_card(run: RunFolder, config: Config, name: str) -> ModelCard:
    """The card of a model folder written before cards existed, from the run's records."""
    metrics = run.model(name).require(ModelMetrics)
    data = run.require(DataRecord)
    model = config.models[name]
    stored = metrics.input
    spec = InputSpec(size=tuple(stored["size"]), channels=stored["channels"],
                     mean=tuple(stored["mean"]), std=tuple(stored["std"]),
                     per_image=stored.get("per_image", False), resize=model.input.resize)
    return ModelCard(model=name, family=model.family_name, classes=data.classes, input=spec,
                     output=model.output, config=model.model_dump(mode="json"))


def load_trained(folder: ModelFolder, card: ModelCard) -> LoadedModel:
    """Model `card` with the weights of `folder`, on its configured device, in eval mode."""
    from safetensors.torch import load_file

    if not FAMILIES.get(card.family).trainable:
        raise UserError(f"model {card.model} is {card.family}: it has no weights here to load")
    if not folder.weights.is_file():
        raise UserError(f"no trained weights at {folder.weights}")
    built = rebuild(card)
    built.module.load_state_dict(load_file(str(folder.weights)))
    device = pick_device(card.config.get("train", {}).get("device", "auto"))
    module = built.module.to(device).eval()
    return LoadedModel(module, InputPipeline(card.input, device, channels_last=False), device)
