"""Metrics as pure, vectorised functions, each one registered.

Two kinds, so the same code gives the point estimate and every bootstrap resample:

- confusion metrics take weighted confusion matrices `(B, K, K)` (rows = true class,
  columns = predicted) and return `(B,)` values;
- score metrics take `(y_true, probabilities, weights)` with `weights` of shape `(B, N)`
  (per-image resample counts; a row of ones is the plain estimate) and return `(B,)`.

Names follow scikit-learn: `*_score`-like metrics (higher is better) and `*_loss` (lower
is better). Undefined ratios (no predicted or no true image of a class) count as 0, as
scikit-learn's `zero_division=0`, and `undefined_notes` says where that happened.

The MRI study's "global" metrics are here under their own names:
`precision_weighted` and `recall_weighted` are its global precision and recall (support-
weighted means); `global_f1` is the formula it wrote (harmonic mean of those two);
`f1_weighted` is what its table printed (support-weighted mean of per-class F1).

Example:
    >>> import numpy as np
    >>> conf = np.array([[[5, 1], [2, 2]]], dtype=float)
    >>> float(METRICS.get("accuracy").fn(conf)[0])
    0.7
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from visionbench.registry import Registry


@dataclass(frozen=True)
class Metric:
    """A registered metric: its kind, function and direction."""

    name: str
    kind: str  # "confusion" or "score"
    fn: Callable[..., np.ndarray]
    higher_is_better: bool
    description: str


METRICS: Registry[Metric] = Registry("metric")


def _register(kind: str, higher_is_better: bool = True) -> Callable:
    def add(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        name = fn.__name__.lstrip("_")
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        METRICS.register(name)(Metric(name, kind, fn, higher_is_better, doc))
        return fn

    return add


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (scikit-learn's zero_division=0)."""
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def confusion_counts(conf: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class tp, fp, fn, tn and support of `(B, K, K)` confusion matrices, each (B, K)."""
    tp = np.diagonal(conf, axis1=1, axis2=2)
    support = conf.sum(axis=2)
    predicted = conf.sum(axis=1)
    total = conf.sum(axis=(1, 2))[:, None]
    fp, fn = predicted - tp, support - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": total - tp - fp - fn, "support": support}


def per_class(conf: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall (sensitivity), specificity and F1, each (B, K)."""
    c = confusion_counts(conf)
    precision = _divide(c["tp"], c["tp"] + c["fp"])
    recall = _divide(c["tp"], c["tp"] + c["fn"])
    return {
        "precision": precision,
        "recall": recall,
        "specificity": _divide(c["tn"], c["tn"] + c["fp"]),
        "f1": _divide(2 * precision * recall, precision + recall),
        **c,
    }


def _weighted(values: np.ndarray, support: np.ndarray) -> np.ndarray:
    return _divide((values * support).sum(axis=1), support.sum(axis=1))


@_register("confusion")
def _accuracy(conf: np.ndarray) -> np.ndarray:
    """Share of images whose predicted class is the true class."""
    return _divide(np.trace(conf, axis1=1, axis2=2), conf.sum(axis=(1, 2)))


@_register("confusion")
def _balanced_accuracy(conf: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in the true labels."""
    p = per_class(conf)
    present = p["support"] > 0
    return _divide((p["recall"] * present).sum(axis=1), present.sum(axis=1))


def _macro(name: str) -> Callable[[np.ndarray], np.ndarray]:
    def fn(conf: np.ndarray) -> np.ndarray:
        return per_class(conf)[name].mean(axis=1)

    return fn


def _weighted_of(name: str) -> Callable[[np.ndarray], np.ndarray]:
    def fn(conf: np.ndarray) -> np.ndarray:
        p = per_class(conf)
        return _weighted(p[name], p["support"])

    return fn


for _stat in ("precision", "recall", "f1"):
    METRICS.register(f"{_stat}_macro")(Metric(
        f"{_stat}_macro", "confusion", _macro(_stat), True,
        f"Unweighted mean of per-class {_stat}."))
    METRICS.register(f"{_stat}_weighted")(Metric(
        f"{_stat}_weighted", "confusion", _weighted_of(_stat), True,
        f"Support-weighted mean of per-class {_stat} (the MRI study's global "
        f"{'F1 as its table printed it' if _stat == 'f1' else _stat})."))


@_register("confusion")
def _global_f1(conf: np.ndarray) -> np.ndarray:
    """Harmonic mean of weighted precision and weighted recall (the MRI study's formula)."""
    p = per_class(conf)
    precision = _weighted(p["precision"], p["support"])
    recall = _weighted(p["recall"], p["support"])
    return _divide(2 * precision * recall, precision + recall)


@_register("confusion")
def _cohen_kappa(conf: np.ndarray) -> np.ndarray:
    """Agreement beyond chance between true and predicted classes."""
    total = conf.sum(axis=(1, 2))
    observed = _divide(np.trace(conf, axis1=1, axis2=2), total)
    expected = _divide((conf.sum(axis=2) * conf.sum(axis=1)).sum(axis=1), total**2)
    return _divide(observed - expected, 1 - expected)


@_register("confusion")
def _matthews_corrcoef(conf: np.ndarray) -> np.ndarray:
    """Matthews correlation coefficient (multiclass form)."""
    total = conf.sum(axis=(1, 2))
    correct = np.trace(conf, axis1=1, axis2=2)
    true = conf.sum(axis=2)
    predicted = conf.sum(axis=1)
    cov = correct * total - (true * predicted).sum(axis=1)
    den = np.sqrt((total**2 - (predicted**2).sum(axis=1)) * (total**2 - (true**2).sum(axis=1)))
    return _divide(cov, den)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _divide(weights @ values, weights.sum(axis=1))


EPS = 1e-15


@_register("score", higher_is_better=False)
def _log_loss(y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean negative log-probability of the true class (probabilities renormalised)."""
    prob = prob / prob.sum(axis=1, keepdims=True)
    true_prob = np.clip(prob[np.arange(len(y_true)), y_true], EPS, 1 - EPS)
    return _weighted_mean(-np.log(true_prob), weights)


@_register("score", higher_is_better=False)
def _brier_score(y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean squared distance to the one-hot truth (halved for two classes, as scikit-learn)."""
    onehot = np.eye(prob.shape[1])[y_true]
    each = ((prob - onehot) ** 2).sum(axis=1)
    if prob.shape[1] == 2:
        each = each / 2
    return _weighted_mean(each, weights)


def top_k_hits(y_true: np.ndarray, prob: np.ndarray, k: int) -> np.ndarray:
    """1 where the true class is among the k most probable; among tied probabilities the
    later class ranks first, as scikit-learn's stable sort does."""
    true_prob = prob[np.arange(len(y_true)), y_true][:, None]
    later = np.arange(prob.shape[1])[None, :] > y_true[:, None]
    ahead = (prob > true_prob) | ((prob == true_prob) & later)
    return (ahead.sum(axis=1) < k).astype(float)


@_register("score")
def _top_2_accuracy(y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Share of images whose true class is among the 2 most probable."""
    return _weighted_mean(top_k_hits(y_true, prob, 2), weights)


def auc_ovr(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of `scores` for the binary `positive` labels, per weight row, ties as 1/2.

    Vectorised over rows of `weights` (B, N): one sort, cumulative weights per row.
    """
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Tied scores form groups: a positive beats the negatives below its group, half the tied.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    pos = positive[order].astype(bool)
    neg_w = np.where(pos, 0.0, w)
    pos_w = np.where(pos, w, 0.0)
    neg_in_group = np.add.reduceat(neg_w, starts, axis=1)
    pos_in_group = np.add.reduceat(pos_w, starts, axis=1)
    neg_below = np.cumsum(neg_in_group, axis=1) - neg_in_group
    wins = (pos_in_group * (neg_below + 0.5 * neg_in_group)).sum(axis=1)
    return _divide(wins, pos_w.sum(axis=1) * neg_w.sum(axis=1))


def _class_aucs(y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, K) one-vs-rest AUC per class; for two classes both columns are the same AUC."""
    return np.stack(
        [auc_ovr(prob[:, k], y_true == k, weights) for k in range(prob.shape[1])], axis=1
    )


@_register("score")
def _roc_auc_macro(y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unweighted mean of one-vs-rest ROC AUCs (the AUC itself for two classes)."""
    if prob.shape[1] == 2:
        return auc_ovr(prob[:, 1], y_true == 1, weights)
    return _class_aucs(y_true, prob, weights).mean(axis=1)


@_register("score")
def _roc_auc_weighted(y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Support-weighted mean of one-vs-rest ROC AUCs (the MRI study's global AUC)."""
    if prob.shape[1] == 2:
        return auc_ovr(prob[:, 1], y_true == 1, weights)
    onehot = np.eye(prob.shape[1])[y_true]
    support = weights @ onehot
    return _weighted(_class_aucs(y_true, prob, weights), support)


ECE_BINS = 15


@_register("score", higher_is_better=False)
def _expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray
                                ) -> np.ndarray:
    """Mean |confidence - accuracy| over 15 equal-width confidence bins, weighted by size."""
    confidence = prob.max(axis=1)
    correct = (prob.argmax(axis=1) == y_true).astype(float)
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    member = np.eye(ECE_BINS)[bins]
    count = weights @ member
    gap = np.abs(weights @ (member * confidence[:, None]) - weights @ (member * correct[:, None]))
    return _divide(gap.sum(axis=1), count.sum(axis=1))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """(B, K, K) weighted confusion matrices; `weights` (B, N) or None for one plain matrix."""
    cell = y_true * n_classes + y_pred
    if weights is None:
        counts = np.bincount(cell, minlength=n_classes**2)[None].astype(float)
    else:
        onehot = np.zeros((len(cell), n_classes**2), dtype=weights.dtype)
        onehot[np.arange(len(cell)), cell] = 1
        counts = weights @ onehot
    return counts.reshape(-1, n_classes, n_classes)


def compute(
    names: list[str], y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Each named metric for every weight row (or once, unweighted): name -> (B,)."""
    n_classes = prob.shape[1]
    if weights is None:
        weights = np.ones((1, len(y_true)))
    conf = confusion_matrix(y_true, prob.argmax(axis=1), n_classes, weights)
    results = {}
    for name in names:
        metric = METRICS.get(name)
        if metric.kind == "confusion":
            results[name] = metric.fn(conf)
        else:
            results[name] = metric.fn(y_true, prob, weights)
    return results


def undefined_notes(conf: np.ndarray, classes: list[str]) -> list[str]:
    """Where a ratio was undefined and counted as 0 (one plain confusion matrix)."""
    c = confusion_counts(conf[None] if conf.ndim == 2 else conf[:1])
    notes = []
    for k, name in enumerate(classes):
        if c["tp"][0, k] + c["fp"][0, k] == 0:
            notes.append(f"no image was predicted {name}: its precision is undefined, counted 0")
        if c["support"][0, k] == 0:
            notes.append(f"no test image is {name}: its recall is undefined, counted 0")
    return notes
