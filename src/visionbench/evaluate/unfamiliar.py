"""Unfamiliar images: a score of how unlike the training images an image is, and the
threshold above which the model should not be trusted to answer.

Each detector is registered by name and built on pytorch-ood's implementation (kNN on
normalised features, Mahalanobis, energy, ViM). It is fitted on the penultimate features
of training images (`runtime.features`) and the model's output layer, and everything its
score needs is kept as plain named arrays, saved with safetensors beside the model (never
a pickle): a detector is rebuilt from them wherever the model answers. Scores grow with
unfamiliarity. The threshold is chosen on validation only: the `keep` quantile of the
validation scores, so that share of familiar images passes; test images never move it.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> features, labels = rng.normal(size=(200, 8)), np.arange(200) % 2
    >>> layer = {"weight": rng.normal(size=(2, 8)), "bias": np.zeros(2)}
    >>> arrays = DETECTORS.get("knn")().fit(features, labels, layer)
    >>> scores = score("knn", arrays, np.vstack([features[:5], features[:5] + 40]))
    >>> bool(scores[:5].max() < scores[5:].min())
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from visionbench.errors import UserError
from visionbench.registry import Registry
from visionbench.rundir.documents import FlaggedShare, ForeignSeparation
from visionbench.runtime.features import output_layer

Arrays = dict[str, np.ndarray]
Tensors = dict[str, torch.Tensor]


class Detector(Protocol):
    """Fits on training features (with pytorch-ood) and scores any features (higher = more
    unfamiliar) in plain torch, so that the same code scores in a run, in `predict` and
    inside an exported ONNX graph."""

    def fit(self, features: np.ndarray, labels: np.ndarray, layer: Arrays) -> Arrays:
        """The arrays the score needs, from (N, D) training `features`, their class
        `labels` and the output `layer` ({"weight": (C, D), "bias": (C,)})."""
        ...

    def score(self, arrays: Tensors, features: torch.Tensor) -> torch.Tensor:
        """(N,) unfamiliarity scores of (N, D) float32 `features`."""
        ...


DETECTORS: Registry[type[Detector]] = Registry("unfamiliar detector")

# pytorch-ood's scoring objects build tensors as they go, which torch.export cannot trace
# into a graph ("a fake tensor in the exported program constant's list"), and its kNN
# scores through scikit-learn, refitted at every call: the fits are pytorch-ood's, the
# scores are its formulas restated in a few lines of torch, tested equal to its own.


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def score(method: str, arrays: Arrays, features: np.ndarray) -> np.ndarray:
    """(N,) float64 scores of (N, D) `features` by detector `method` fitted as `arrays`."""
    tensors = {name: _tensor(values) for name, values in arrays.items()}
    with torch.no_grad():
        return DETECTORS.get(method)().score(tensors, _tensor(features)).double().numpy()


def _layer(layer: Arrays) -> Arrays:
    return {"weight": np.asarray(layer["weight"], np.float32),
            "bias": np.asarray(layer["bias"], np.float32)}


def _energy(arrays: Tensors, features: torch.Tensor) -> torch.Tensor:
    """Negative log-sum-exp of the logits from the saved output layer (see `_two_class`)."""
    weight, bias = arrays["weight"], arrays["bias"]
    logits = features @ weight.T + bias
    if weight.shape[0] == 1:
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
    return -torch.logsumexp(logits, dim=1)


@DETECTORS.register("knn")
class NearestNeighbours:
    """Distance to the k-th nearest training feature, both normalised to unit length (Sun
    et al. 2022); k grows with the number of training images (1 per 1,000, at most 50)."""

    def fit(self, features: np.ndarray, labels: np.ndarray, layer: Arrays) -> Arrays:
        bank = _tensor(features)
        bank = bank / bank.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return {"bank": bank.numpy(), **_layer(layer)}

    @staticmethod
    def neighbours(bank_size: int) -> int:
        """k for a bank of `bank_size` training features (a shape, so fixed in a graph)."""
        return int(np.clip(round(bank_size / 1000), 1, 50))

    def score(self, arrays: Tensors, features: torch.Tensor) -> torch.Tensor:
        unit = features / features.norm(dim=1, keepdim=True).clamp(min=1e-12)
        # Between unit vectors |a - b|^2 = 2 - 2 a.b: one matrix product for the whole bank.
        squared = (2 - 2 * unit @ arrays["bank"].T).clamp(min=0)
        k = self.neighbours(arrays["bank"].shape[0])
        return squared.topk(k, dim=1, largest=False).values[:, k - 1].sqrt()


@DETECTORS.register("mahalanobis")
class Mahalanobis:
    """Smallest Mahalanobis distance to a class mean under the shared covariance of the
    training features (Lee et al. 2018), halved as pytorch-ood's score is."""

    def fit(self, features: np.ndarray, labels: np.ndarray, layer: Arrays) -> Arrays:
        from pytorch_ood.detector import Mahalanobis as Fitted

        present = np.unique(labels)
        # pytorch-ood wants every class 0..C-1; classes absent from the sample are skipped.
        dense = np.searchsorted(present, labels)
        detector = Fitted(None).fit_features(_tensor(features), torch.from_numpy(dense))
        return {"mu": detector.mu.numpy(), "precision": detector.precision.numpy(),
                **_layer(layer)}

    def score(self, arrays: Tensors, features: torch.Tensor) -> torch.Tensor:
        mu, precision = arrays["mu"], arrays["precision"]
        # (f - m)'P(f - m) = f'Pf - 2 f'Pm + m'Pm for every class mean m at once: one
        # product with the precision instead of one per class (ten times fewer operations
        # for ten classes). Everything is first centred on the mean of the class means,
        # so the three terms stay of the size of the distances (no cancellation).
        origin = mu.mean(dim=0)
        centred, centres = features - origin, mu - origin
        projected = centred @ precision
        distances = ((projected * centred).sum(dim=1, keepdim=True)
                     - 2 * projected @ centres.T
                     + ((centres @ precision) * centres).sum(dim=1))
        return 0.5 * distances.min(dim=1).values


@DETECTORS.register("energy")
class Energy:
    """Negative free energy of the logits (Liu et al. 2020): needs no fitting."""

    def fit(self, features: np.ndarray, labels: np.ndarray, layer: Arrays) -> Arrays:
        return _layer(layer)

    def score(self, arrays: Tensors, features: torch.Tensor) -> torch.Tensor:
        return _energy(arrays, features)


@DETECTORS.register("vim")
class VirtualLogit:
    """ViM (Wang et al. 2022): the feature's norm off the training features' principal
    subspace, scaled to the logits, against the energy of the logits."""

    def fit(self, features: np.ndarray, labels: np.ndarray, layer: Arrays) -> Arrays:
        from pytorch_ood.detector import ViM

        saved = _layer(layer)
        weight, bias = _two_class(saved)
        dimension = features.shape[1]
        if dimension <= weight.shape[0]:
            raise UserError(f"unfamiliar method vim needs more features ({dimension}) than "
                            f"classes ({weight.shape[0]}): choose knn or mahalanobis")
        detector = ViM(None, d=max(1, dimension // 2), w=_tensor(weight), b=_tensor(bias))
        detector.fit_features(_tensor(features), torch.from_numpy(labels))
        return {"origin": detector.u.numpy(), "subspace": detector.principal_subspace.numpy(),
                "alpha": np.array([detector.alpha], np.float32), **saved}

    def score(self, arrays: Tensors, features: torch.Tensor) -> torch.Tensor:
        virtual = ((features - arrays["origin"]) @ arrays["subspace"]).norm(dim=1)
        return virtual * arrays["alpha"][0] + _energy(arrays, features)


def _two_class(layer: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """The output layer as logits of every class: a single binary logit z stands for the
    two logits (0, z), so energy and ViM see two classes."""
    weight, bias = layer["weight"], layer["bias"]
    if weight.shape[0] == 1:
        weight = np.vstack([np.zeros_like(weight), weight])
        bias = np.concatenate([np.zeros_like(bias), bias])
    return weight, bias


def threshold_for(validation_scores: np.ndarray, keep: float) -> float:
    """The score above which an image is unfamiliar: the smallest validation score with at
    least `keep` of the validation images at or below it (the inverse of their empirical
    distribution), so that share of familiar images passes.

    Example:
        >>> threshold_for(np.arange(1, 101, dtype=float), 0.95)
        95.0
    """
    if not len(validation_scores):
        raise UserError("unfamiliar images: the validation split is empty, so no threshold "
                        "can be chosen (give the data a validation split)")
    return float(np.quantile(validation_scores, keep, method="inverted_cdf"))


def output_layer_arrays(module: torch.nn.Module) -> Arrays:
    """The output layer's weight and bias as arrays (what energy and ViM score with)."""
    layer = output_layer(module)
    return {"weight": layer.weight.detach().float().cpu().numpy(),
            "bias": layer.bias.detach().float().cpu().numpy()}


class Rank(nn.Module):
    """An unfamiliarity score's rank among reference (validation) scores: the share of
    them at or below it (0.97: more unusual than 97 % of validation images). Past the
    highest reference score it keeps growing, by the distance beyond it in units of that
    score's distance from the median, so an image far beyond every validation image ranks
    far above 1, not at 1 with them. Two detectors' scores become comparable so. In
    float64, so a rank equals the validation threshold it is compared with exactly."""

    def __init__(self, reference: np.ndarray) -> None:
        super().__init__()
        ordered = np.sort(np.asarray(reference, np.float64))
        self.register_buffer("ordered", torch.from_numpy(ordered))
        self.top = float(ordered[-1]) if len(ordered) else float("inf")
        self.spread = max(self.top - float(np.median(ordered)), 1e-12) if len(ordered) \
            else 1.0

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """(N,) float64 ranks of (N,) scores."""
        scores = scores.double()
        if torch.compiler.is_exporting():  # ONNX has no searchsorted: count, as it does
            below = (scores[:, None] >= self.ordered[None, :]).sum(dim=1)
        else:
            below = torch.searchsorted(self.ordered, scores.contiguous(), right=True)
        rank = below.double() / max(len(self.ordered), 1)
        return torch.where(scores > self.top, 1 + (scores - self.top) / self.spread, rank)


def familiarity_rank(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """`Rank` of each of `scores` among the `reference` scores.

    Example:
        >>> familiarity_rank(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 2.0, 4.0, 7.0]))
        array([0. , 0.5, 1. , 3. ])
    """
    with torch.no_grad():
        return Rank(reference)(torch.from_numpy(np.asarray(scores, np.float64))).numpy()


def combined(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Unfamiliarity from several detectors: for each image the highest of its ranks among
    the validation scores of each (`parts`: (validation scores, scores)); one detector's
    alarm is enough."""
    return np.max([familiarity_rank(reference, scores) for reference, scores in parts], axis=0)


class _Held(nn.Module):
    """Named arrays as float32 buffers (they travel with the module to a device, and into
    an exported graph as its constants)."""

    def __init__(self, arrays: Arrays) -> None:
        super().__init__()
        self.names = sorted(arrays)
        for name in self.names:
            self.register_buffer(name, _tensor(arrays[name]))

    def tensors(self) -> Tensors:
        """The arrays by name."""
        return {name: getattr(self, name) for name in self.names}


class Scorer(nn.Module):
    """The unfamiliarity that `fit_unfamiliar`'s threshold applies to, of new images: the
    detector's score of their features, or, when it was fitted with the run's generic
    detector, the higher of the two ranks among validation scores (`combined`), the
    generic one read from the images themselves by `embedding`. One module for a run's
    `predict` and for the exported graph, so both give the same flags."""

    def __init__(self, method: str, arrays: Arrays,
                 generic: tuple[str, Arrays, nn.Module] | None = None) -> None:
        super().__init__()
        references = ("val_scores", "generic_val_scores")
        self.detector = DETECTORS.get(method)()
        self.arrays = _Held({k: v for k, v in arrays.items() if k not in references})
        self.combined = "generic_val_scores" in arrays
        if self.combined:
            if generic is None:
                raise UserError("this model's detector also reads the generic embedding, "
                                "which the run folder lacks: run `visionbench run` again")
            generic_method, generic_arrays, self.embedding = generic
            self.generic_detector = DETECTORS.get(generic_method)()
            self.generic_arrays = _Held({k: v for k, v in generic_arrays.items()
                                         if not k.startswith("scores_")})
            self.own_rank = Rank(arrays["val_scores"])
            self.generic_rank = Rank(arrays["generic_val_scores"])

    def forward(self, features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(N,) float64 unfamiliarity of images from their (N, D) penultimate `features`
        and their uint8 (N, C, H, W) `images` (read only when combined)."""
        scores = self.detector.score(self.arrays.tensors(), features.float())
        if not self.combined:
            return scores.double()
        generic = self.generic_detector.score(self.generic_arrays.tensors(),
                                              self.embedding(images))
        return torch.maximum(self.own_rank(scores), self.generic_rank(generic))


@dataclass
class Fitted:
    """A fitted detector: its arrays, the threshold chosen on validation, what it flags per
    split (images, flagged, share) and each split's scores."""

    arrays: Arrays
    threshold: float
    flagged: dict[str, dict[str, float]]
    scores: dict[str, np.ndarray]


def fit_unfamiliar(method: str, keep: float, train: tuple[np.ndarray, np.ndarray],
                   validation: np.ndarray, layer: Arrays, scored: dict[str, np.ndarray],
                   generic: dict[str, np.ndarray] | None = None) -> Fitted:
    """Fit detector `method` on `train` (features, labels) and score `validation` and each
    of the `scored` splits' features. Alone, the threshold is on the detector's score;
    with `generic` (split -> the generic embedding detector's scores, "val" and each split
    of `scored`, in the same image order) it is on the combined rank (`combined`). Either
    way it is chosen on validation only, so that `keep` of it passes."""
    arrays = DETECTORS.get(method)().fit(*train, layer)
    own = {"val": score(method, arrays, validation),
           **{split: score(method, arrays, features) for split, features in scored.items()}}
    if generic is not None:
        arrays["val_scores"] = own["val"]
        arrays["generic_val_scores"] = generic["val"]
        own = {split: combined([(own["val"], values), (generic["val"], generic[split])])
               for split, values in own.items()}
    threshold = threshold_for(own["val"], keep)
    return Fitted(arrays, threshold, {split: flag_counts(values, threshold)
                                      for split, values in own.items()}, own)


def flag_counts(scores: np.ndarray, threshold: float) -> FlaggedShare:
    """How many of `scores` are above `threshold`: images, flagged, share."""
    count = int((scores > threshold).sum())
    return FlaggedShare(images=len(scores), flagged=count, share=count / max(len(scores), 1))


# Bootstrap resamples scored at once by `separation`.
BLOCK = 100


def weighted_auroc(familiar: np.ndarray, foreign: np.ndarray, familiar_weights: np.ndarray,
                   foreign_weights: np.ndarray) -> np.ndarray:
    """(B,) AUROCs (foreign positive) under B weightings of the images (bootstrap
    counts; rows of ones give the plain AUROC): the weighted chance that a foreign score
    beats a familiar one, ties counting half, from one sort for all B.

    Example:
        >>> weighted_auroc(np.array([0.0, 1.0]), np.array([1.0, 2.0]),
        ...                np.ones((1, 2)), np.ones((1, 2)))
        array([0.875])
    """
    scores = np.r_[familiar, foreign].astype(np.float64)
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    weights = np.hstack([familiar_weights, np.zeros_like(foreign_weights)])[:, order]
    # Familiar weight strictly below each score and tied with it, via the run of equal
    # scores each position belongs to.
    starts = np.searchsorted(ordered, ordered, side="left")
    ends = np.searchsorted(ordered, ordered, side="right")
    cumulative = np.hstack([np.zeros((len(weights), 1)), np.cumsum(weights, axis=1)])
    below = cumulative[:, starts]
    tied = cumulative[:, ends] - below
    is_foreign = order >= len(familiar)
    positive = np.hstack([np.zeros_like(familiar_weights), foreign_weights])[:, order]
    wins = ((below + 0.5 * tied) * positive)[:, is_foreign].sum(axis=1)
    total = familiar_weights.sum(axis=1) * foreign_weights.sum(axis=1)
    return wins / np.maximum(total, 1e-12)


def separation(familiar: np.ndarray, foreign: np.ndarray, threshold: float,
               resamples: int = 1000, confidence: float = 0.95, seed: int = 0
               ) -> ForeignSeparation:
    """How well scores tell `foreign` images from `familiar` ones: AUROC (foreign
    positive) with a percentile bootstrap interval (each set resampled on its own), the
    false-positive rate at 95 % true-positive rate (the share of familiar images at or
    above the score that 95 % of foreign images reach), and the share of foreign images
    flagged at `threshold`.

    Example:
        >>> found = separation(np.arange(100.0), np.arange(100.0) + 1000, 99.0, 50)
        >>> found.auroc, found.fpr_at_95, found.flagged
        (1.0, 0.0, 1.0)
    """
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for first in range(0, resamples, BLOCK):  # a block at a time: memory stays bounded
        size = min(BLOCK, resamples - first)
        counts = [rng.multinomial(len(side), np.full(len(side), 1 / len(side)), size=size)
                  for side in (familiar, foreign)]
        values.extend(weighted_auroc(familiar, foreign, *counts).tolist())
    tail = (1 - confidence) / 2
    reached = np.quantile(foreign, 0.05, method="inverted_cdf")
    ones = (np.ones((1, len(familiar))), np.ones((1, len(foreign))))
    return ForeignSeparation(
        images=len(foreign), auroc=float(weighted_auroc(familiar, foreign, *ones)[0]),
        auroc_low=float(np.quantile(values, tail)) if values else float("nan"),
        auroc_high=float(np.quantile(values, 1 - tail)) if values else float("nan"),
        fpr_at_95=float((familiar >= reached).mean()),
        flagged=float((foreign > threshold).mean()))
