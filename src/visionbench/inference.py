"""Trained models of a run folder, loaded back for explanations (no retraining).

Example:
    visionbench explain runs/quickstart/<stamp> --model small_cnn --images my_digit.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from visionbench.config import Config, load_config
from visionbench.data.dataset import PreparedData, prepare_data
from visionbench.data.decode import preprocess
from visionbench.errors import UserError
from visionbench.evaluate.explain import explain_model, pick_images
from visionbench.evaluate.predictions import Predictions, read_predictions
from visionbench.fileio import write_json
from visionbench.models.build import build_model
from visionbench.runtime.device import pick_device
from visionbench.runtime.pipeline import InputPipeline
from visionbench.schemas.evaluate import ExplainConfig


@dataclass
class LoadedModel:
    """A trained classifier on its device, with the pipeline that feeds it."""

    module: torch.nn.Module
    pipeline: InputPipeline
    device: torch.device


def load_trained(config: Config, name: str, data: PreparedData, folder: Path) -> LoadedModel:
    """Rebuild model `name` of a run and load its `model.safetensors`."""
    from safetensors.torch import load_file

    model_cfg = config.models[name]
    if model_cfg.external is not None:
        raise UserError(f"model {name} is external ({model_cfg.external}): explain it where "
                        "it was trained")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"no trained weights at {weights}")
    normalization = data.normalization()
    height, width = data.images.shape[1:3]
    # The weights replace any pretrained ones, so there is nothing to resolve or download.
    built = build_model(model_cfg.model_copy(update={"pretrained": False}), len(data.classes),
                        (height, width, data.channels), normalization.mean, normalization.std,
                        normalization.per_image)
    built.module.load_state_dict(load_file(str(weights)))
    device = pick_device(model_cfg.train.device)
    module = built.module.to(device).eval()
    pipeline = InputPipeline(built.input, device, channels_last=False)
    return LoadedModel(module, pipeline, device)


def explain_images(model: LoadedModel, pictures: np.ndarray, titles: list[str], ids: list[str],
                   classes: np.ndarray | None, config: ExplainConfig, folder: Path
                   ) -> dict[str, Any]:
    """Explain uint8 (N, H, W, C) `pictures` for `classes` (default: the predicted ones)."""
    images = torch.from_numpy(np.ascontiguousarray(pictures)).permute(0, 3, 1, 2).to(
        model.device)
    placeholder = torch.zeros(len(pictures), dtype=torch.long, device=model.device)
    inputs = model.pipeline(images, placeholder, train=False)
    if classes is None:
        with torch.no_grad():
            logits = model.module(inputs)
        predicted = (logits.squeeze(1) > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
        target = predicted
    else:
        target = torch.as_tensor(classes, device=model.device)
    found = explain_model(model.module, inputs, target, pictures, titles, ids, config, folder)
    model.module.zero_grad(set_to_none=True)
    return found


def explain_test_set(model: LoadedModel, data: PreparedData, predictions: Predictions,
                     config: ExplainConfig, folder: Path,
                     test_images: np.ndarray | None = None) -> dict[str, Any]:
    """Maps for a few correct and misclassified test images per class (their predictions).

    `test_images` are `data.arrays("test")[0]` when the caller already has them.
    """
    chosen = pick_images(predictions.y_true, predictions.prob, config.images)
    classes = data.classes
    titles = [f"true {classes[predictions.y_true[i]]}\npred {classes[predictions.y_pred[i]]} "
              f"({predictions.prob[i].max():.2f})" for i in chosen]
    if test_images is None:
        test_images = data.arrays("test")[0]
    return explain_images(model, test_images[chosen], titles,
                          [predictions.ids[i] for i in chosen], predictions.y_pred[chosen],
                          config, folder)


def _decode_files(files: list[Path], data: PreparedData) -> np.ndarray:
    settings = data.config.preprocess
    if settings.size is None:
        settings = settings.model_copy(update={"size": tuple(data.images.shape[1:3])})
    pictures = []
    for path in files:
        try:
            with Image.open(path) as image:
                pixels, _ = preprocess(image, settings)
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"cannot read image {path}: {exc}") from None
        if data.channels == 3 and pixels.shape[-1] == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
        pictures.append(pixels)
    return np.stack(pictures)


def explain_run(folder: Path, name: str, files: list[Path] | None = None,
                methods: list[str] | None = None) -> Path:
    """Explanation maps for model `name` of the run in `folder`; returns the output folder.

    Without `files`, the default test images are explained again into the model folder
    (what the report shows); with `files`, into `<model>/explained/`.
    """
    folder = Path(folder)
    if not (folder / "config.yaml").is_file():
        raise UserError(f"{folder} is not a run folder (no config.yaml)")
    config = load_config(folder / "config.yaml")
    if name not in config.models:
        raise UserError(f"no model {name!r} in this run; models: {list(config.models)}")
    settings = config.evaluate.explain
    if methods:
        settings = settings.model_copy(update={"methods": methods})
    data = prepare_data(config.data)
    model = load_trained(config, name, data, folder / name)
    if not files:
        predictions = read_predictions(folder / name / "predictions.csv", data.classes)
        settings = settings.model_copy(update={"images": settings.images or 8})
        found = explain_test_set(model, data, predictions, settings, folder / name)
        write_json(folder / name / "explanations.json", found)
        return folder / name
    out = folder / name / "explained"
    pictures = _decode_files(files, data)
    titles = [path.name for path in files]
    found = explain_images(model, pictures, titles, [str(p) for p in files], None, settings,
                           out)
    write_json(out / "explanations.json", found)
    return out
