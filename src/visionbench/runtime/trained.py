"""Trained models loaded back from their model folder alone: rebuilt from `model.json`, fed
by the input settings stored there, with the folder's safetensors weights (nothing is
unpickled and no pretrained weights are looked for).

Model folders written before `model.json` existed are read through a card derived from the
run's records (`visionbench.orchestrate.explain.legacy_card`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from visionbench.errors import UserError
from visionbench.fileio import atomic_path
from visionbench.models.build import rebuild
from visionbench.models.family import FAMILIES
from visionbench.rundir.documents import ModelCard
from visionbench.rundir.layout import ModelFolder
from visionbench.runtime.device import pick_device
from visionbench.runtime.pipeline import InputPipeline


@dataclass
class LoadedModel:
    """A trained classifier on its device, with the pipeline that feeds it."""

    module: torch.nn.Module
    pipeline: InputPipeline
    device: torch.device


def save_weights(module: torch.nn.Module, path: Path) -> None:
    """Write a module's weights (tensors only: safetensors) to `path` atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def load_trained(folder: ModelFolder, card: ModelCard) -> LoadedModel:
    """Model `card` with the weights of `folder`, on its configured device, in eval mode."""
    from safetensors.torch import load_file

    if not FAMILIES.get(card.family).trainable:
        raise UserError(f"model {card.model} is {card.family}: it has no weights here to load")
    if not folder.weights.is_file():
        raise UserError(f"no trained weights at {folder.weights}")
    built = rebuild(card)
    try:
        built.module.load_state_dict(load_file(str(folder.weights)))
    except OSError:
        raise
    except Exception as exc:  # safetensors' and torch's errors for damaged or foreign weights
        raise UserError(f"{folder.weights} does not fit model {card.model} as its model.json "
                        f"describes it ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
                        ": the weights are damaged or belong to another model") from None
    device = pick_device(card.config.get("train", {}).get("device", "auto"))
    module = built.module.to(device).eval()
    return LoadedModel(module, InputPipeline(card.input, device, channels_last=False), device)
