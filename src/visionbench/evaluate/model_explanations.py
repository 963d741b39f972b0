"""Explanation maps of a trained model: on chosen test images (what the report shows) or on
any images, written into a model folder.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from visionbench.evaluate.explain import explain_model, pick_images
from visionbench.rundir.documents import Explanations
from visionbench.rundir.layout import ModelFolder
from visionbench.rundir.predictions import Predictions
from visionbench.runtime.progress import ignore
from visionbench.runtime.trained import LoadedModel
from visionbench.schemas.evaluate import ExplainConfig


def explain_images(model: LoadedModel, pictures: np.ndarray, titles: list[str], ids: list[str],
                   classes: np.ndarray | None, config: ExplainConfig, folder: ModelFolder,
                   step: Callable[[str], None] = ignore) -> Explanations:
    """Explain uint8 (N, H, W, C) `pictures` for `classes` (default: the predicted ones).

    The maps are drawn over the images as the model saw them (its channels, at its input
    size), so a model that enlarges or crops its input gets its maps on the right pixels.
    """
    images = torch.from_numpy(np.ascontiguousarray(pictures)).permute(0, 3, 1, 2).to(
        model.device)
    placeholder = torch.zeros(len(pictures), dtype=torch.long, device=model.device)
    inputs = model.pipeline(images, placeholder, train=False)
    seen = model.pipeline.at_model_size(images).clamp(0, 1).mul(255).round().byte()
    seen = seen.permute(0, 2, 3, 1).cpu().numpy()
    if classes is None:
        with torch.no_grad():
            logits = model.module(inputs)
        predicted = (logits.squeeze(1) > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
        target = predicted
    else:
        target = torch.as_tensor(classes, device=model.device)
    found = explain_model(model.module, inputs, target, seen, titles, ids, config,
                          folder.picture("explanations"), step)
    model.module.zero_grad(set_to_none=True)
    return found


def explain_test_set(model: LoadedModel, classes: list[str], predictions: Predictions,
                     config: ExplainConfig, folder: ModelFolder,
                     test_images: np.ndarray | Callable[[list[str]], np.ndarray],
                     step: Callable[[str], None] = ignore) -> Explanations:
    """Maps for a few correct and misclassified test images per class (their predictions).

    `test_images` are every test image in prediction order, or a function that gives the
    images of some test ids (so only the chosen few are decoded).
    """
    chosen = pick_images(predictions.y_true, predictions.prob, config.images)
    titles = [f"true {classes[predictions.y_true[i]]}\npred {classes[predictions.y_pred[i]]} "
              f"({predictions.prob[i].max():.2f})" for i in chosen]
    ids = [predictions.ids[i] for i in chosen]
    pictures = test_images(ids) if callable(test_images) else test_images[chosen]
    return explain_images(model, pictures, titles, ids, predictions.y_pred[chosen], config,
                          folder, step)
