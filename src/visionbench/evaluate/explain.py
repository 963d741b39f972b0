"""Explanation maps (Captum) and how faithful they are.

Each method is one registered function from (model, normalised inputs, target classes) to
one non-negative map per image (N, H, W), computed on logits, in batches. The deletion
score measures faithfulness: remove the most-attributed pixels first (replaced by the
dataset mean, i.e. 0 after normalisation) and watch the predicted class's probability
fall; the area under that curve is low for a map that finds what the model uses, and a
random map is the reference.

Example:
    >>> sorted(METHODS.names())
    ['gradcam', 'guided_backprop', 'integrated_gradients', 'occlusion', 'smoothgrad']
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

from visionbench.errors import UserError
from visionbench.pictures import contact_sheet, heat_overlay, save_png, tile
from visionbench.registry import Registry
from visionbench.rundir.documents import Explanations
from visionbench.runtime.progress import ignore
from visionbench.schemas.evaluate import ExplainConfig


@dataclass(frozen=True)
class ExplainSettings:
    """Cost knobs shared by the methods."""

    steps: int = 32  # integrated gradients
    samples: int = 16  # smoothgrad
    noise: float = 0.15  # smoothgrad noise, as a fraction of the input's range
    batch_size: int = 16  # images (and IG steps) per forward pass: bounds memory


# Pixels on the longer side of each picture of the explanation figure.
EXPLANATION_TILE = 144

Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, nn.Module | None, ExplainSettings],
                  torch.Tensor]
METHODS: Registry[Method] = Registry("explanation method")


def last_conv_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The last `Conv2d` in definition order (Grad-CAM's default layer)."""
    convolutions = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise UserError("the model has no convolution, so Grad-CAM has no layer to use")
    return convolutions[-1]


def find_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """The named module, or the last convolution when `name` is None."""
    if name is None:
        return last_conv_layer(model)
    modules = dict(model.named_modules())
    if name not in modules:
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)][-5:]
        raise UserError(f"no layer {name!r} in the model; last convolutions: {convs}")
    return name, modules[name]


def _pixel_map(attribution: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) attributions -> (N, H, W) magnitude maps."""
    return attribution.abs().sum(dim=1)


@METHODS.register("gradcam")
def _gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: nn.Module | None,
             settings: ExplainSettings) -> torch.Tensor:
    from captum.attr import LayerAttribution, LayerGradCam

    assert layer is not None
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")
    return upsampled.sum(dim=1).clamp(min=0)


@METHODS.register("integrated_gradients")
def _integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                          layer: nn.Module | None, settings: ExplainSettings) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    attributions = IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=settings.steps,
        internal_batch_size=settings.batch_size)
    return _pixel_map(attributions)


@METHODS.register("smoothgrad")
def _smoothgrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                layer: nn.Module | None, settings: ExplainSettings) -> torch.Tensor:
    from captum.attr import NoiseTunnel, Saliency

    spread = float((x.amax() - x.amin()).item()) * settings.noise
    attributions = NoiseTunnel(Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=settings.samples, stdevs=spread, target=target,
        nt_samples_batch_size=settings.batch_size, abs=True)
    return _pixel_map(attributions)


@METHODS.register("guided_backprop")
def _guided_backprop(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                     layer: nn.Module | None, settings: ExplainSettings) -> torch.Tensor:
    from captum.attr import GuidedBackprop

    # Captum says, once per model, that it hooks the ReLUs for the attribution and removes
    # the hooks after it: that is what guided backprop is, not something to act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations",
                                category=UserWarning)
        return _pixel_map(GuidedBackprop(model).attribute(x, target=target))


@METHODS.register("occlusion")
def _occlusion(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
               layer: nn.Module | None, settings: ExplainSettings) -> torch.Tensor:
    from captum.attr import Occlusion

    height, width = x.shape[-2:]
    # An 8 x 8 grid of non-overlapping patches: 64 forward passes per image.
    window = (x.shape[1], max(2, height // 8), max(2, width // 8))
    stride = window
    attributions = Occlusion(model).attribute(
        x, sliding_window_shapes=window, strides=stride, baselines=0.0, target=target,
        perturbations_per_eval=settings.batch_size)
    # Occlusion's sign says which way the score moved; drops (positive) are the evidence.
    return attributions.sum(dim=1).clamp(min=0)


def explain(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, method: str,
            settings: ExplainSettings, layer: nn.Module | None = None) -> torch.Tensor:
    """(N, H, W) maps in [0, 1] (each image scaled by its maximum), computed in batches."""
    run = METHODS.get(method)
    if method == "gradcam" and layer is None:
        layer = last_conv_layer(model)[1]
    model.eval()
    maps = []
    for start in range(0, len(inputs), settings.batch_size):
        x = inputs[start : start + settings.batch_size].clone().requires_grad_(True)
        batch_maps = run(model, x, targets[start : start + settings.batch_size], layer, settings)
        maps.append(batch_maps.detach().float())
    result = torch.cat(maps)
    peak = result.flatten(1).amax(dim=1).clamp(min=1e-12).view(-1, 1, 1)
    return result / peak


@torch.no_grad()
def deletion_curve(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   maps: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """(N, steps + 1) probability of the target class as the top-attributed pixels are
    replaced by 0 (the dataset mean after normalisation), from 0 % to 100 % removed."""
    model.eval()
    n, _, height, width = inputs.shape
    order = maps.flatten(1).argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    # Index tensors made here must live on the maps' device (a CUDA scatter refuses CPU ones).
    ranks.scatter_(1, order, torch.arange(height * width, device=order.device).expand(n, -1))
    curves = []
    for step in range(steps + 1):
        keep = (ranks >= round(step / steps * height * width)).view(n, 1, height, width)
        logits = model(inputs * keep).float()
        if logits.shape[1] == 1:
            positive = torch.sigmoid(logits.squeeze(1))
            probabilities = torch.stack([1 - positive, positive], dim=1)
        else:
            probabilities = F.softmax(logits, dim=1)
        curves.append(probabilities[torch.arange(n, device=targets.device), targets])
    return torch.stack(curves, dim=1)


def deletion_score(curves: torch.Tensor) -> np.ndarray:
    """Area under each deletion curve (trapezoid on [0, 1]); lower = more faithful."""
    values = curves.cpu().numpy()
    return ((values[:, 1:] + values[:, :-1]) / 2).mean(axis=1)


def pick_images(y_true: np.ndarray, prob: np.ndarray, count: int) -> list[int]:
    """Per class, the most confident correct image and the most confident mistake, taken
    round-robin over classes until `count` images."""
    y_pred = prob.argmax(axis=1)
    confidence = prob.max(axis=1)
    queues = []
    for label in range(prob.shape[1]):
        for correct in (True, False):
            members = np.flatnonzero((y_true == label) & ((y_pred == y_true) == correct))
            queues.append(list(members[np.argsort(-confidence[members])]))
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(int(queue.pop(0)))
    return chosen


def explanation_figure(pictures: np.ndarray, maps: dict[str, np.ndarray], titles: list[str],
                       path: Path) -> None:
    """One row per image: the image, then each method's heat map over it; the images must
    be at the maps' size (the model's input), or a map would cover the wrong pixels."""
    for method, method_maps in maps.items():
        if method_maps.shape[1:] != pictures.shape[1:3]:
            raise ValueError(f"{method} maps are {method_maps.shape[1:]} but the images "
                             f"{pictures.shape[1:3]}: draw the images at the model's size")

    methods = list(maps)
    pictures_drawn, captions = [], []
    for row, picture in enumerate(pictures):
        pictures_drawn.append(tile(picture, EXPLANATION_TILE))
        captions.append(titles[row])
        for method in methods:
            pictures_drawn.append(tile(heat_overlay(picture, maps[method][row]),
                                       EXPLANATION_TILE))
            captions.append(method.replace("_", " "))
    save_png(contact_sheet(pictures_drawn, captions, columns=len(methods) + 1), path)


def explain_model(
    model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, pictures: np.ndarray,
    titles: list[str], ids: list[str], config: ExplainConfig, picture: Path,
    step: Callable[[str], None] = ignore,
) -> Explanations:
    """Maps of every configured method for `inputs` (normalised, on the model's device),
    explaining class `classes[i]` of image i; their deletion scores beside a random map's;
    and the maps drawn over the images into `picture`. `step` hears of each method (and
    of the drawing) as it starts.

    A one-logit (sigmoid) model has one output to explain: its maps show the evidence for
    the positive class whatever `classes` says.
    """
    with torch.no_grad():
        single_logit = model(inputs[:1]).shape[1] == 1
    targets = torch.zeros_like(classes) if single_logit else classes
    classes = torch.ones_like(classes) if single_logit else classes
    settings = ExplainSettings(config.steps, config.samples, batch_size=config.batch_size)
    methods, notes = list(config.methods), []
    layer_name, layer = None, None
    if "gradcam" in methods:
        if config.layer is None and not any(isinstance(m, nn.Conv2d) for m in model.modules()):
            methods.remove("gradcam")
            notes.append("no convolution in this model: Grad-CAM skipped")
        else:
            layer_name, layer = find_layer(model, config.layer)
    maps: dict[str, np.ndarray] = {}
    scores: dict[str, Any] = {}
    for method in methods:
        step(method.replace("_", " "))
        attribution = explain(model, inputs, targets, method, settings, layer)
        maps[method] = attribution.cpu().numpy()
        per_image = deletion_score(deletion_curve(model, inputs, classes, attribution))
        scores[method] = {"mean": float(per_image.mean()), "images": per_image.tolist()}
    noise = torch.rand(inputs.shape[0], *inputs.shape[-2:],
                       generator=torch.Generator().manual_seed(0)).to(inputs.device)
    random_scores = deletion_score(deletion_curve(model, inputs, classes, noise))
    step("drawing the maps")
    explanation_figure(pictures, maps, titles, picture)
    return Explanations(
        images=ids, titles=titles, gradcam_layer=layer_name, methods=methods, notes=notes,
        deletion={"random": float(random_scores.mean()),
                  **{m: s["mean"] for m, s in scores.items()}},
        deletion_per_image={m: s["images"] for m, s in scores.items()},
        file=picture.name,
        note="deletion: mean probability of the explained class while the most-attributed "
             "pixels are removed (lower = more faithful); 'random' is a random map's.",
    )


def unfaithful_methods(deletion: dict[str, float]) -> list[str]:
    """Methods whose deletion score is no better (no lower) than the random map's: their
    maps do not find what the model uses, and are not evidence for this model.

    Example:
        >>> unfaithful_methods({"random": 0.4, "gradcam": 0.45, "occlusion": 0.1})
        ['gradcam']
    """
    random = deletion.get("random")
    if random is None:
        return []
    return [method for method, score in deletion.items()
            if method != "random" and score >= random]
