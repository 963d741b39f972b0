"""Metrics as pure, vectorised functions, each one registered.

Two kinds, so the same code gives the point estimate and every bootstrap resample:

- confusion metrics take weighted confusion matrices `(B, K, K)` (rows = true class,
  columns = predicted) and return `(B,)` values;
- score metrics take `ScoreInputs`: labels, probabilities and `weights` of shape `(B, N)`
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

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from visionbench.registry import Registry
from visionbench.rundir.documents import Notice


@dataclass(frozen=True)
class Metric:
    """A registered metric: its kind, function and direction."""

    name: str
    kind: str  # "confusion" or "score"
    fn: Callable[..., np.ndarray]
    higher_is_better: bool
    description: str
    # A share of images or of a class in [0, 1], higher better: drawn as a bar on one axis.
    share: bool = True
    # The values the metric can take: an interval around an estimate is cut to them.
    bounds: tuple[float, float] = (0.0, 1.0)


METRICS: Registry[Metric] = Registry("metric")


def _register(kind: str, higher_is_better: bool = True, share: bool | None = None,
              bounds: tuple[float, float] = (0.0, 1.0)) -> Callable:
    def add(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        name = fn.__name__.lstrip("_")
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        METRICS.register(name)(Metric(name, kind, fn, higher_is_better, doc,
                                      higher_is_better if share is None else share, bounds))
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
def _f1_micro(conf: np.ndarray) -> np.ndarray:
    """F1 of the pooled counts; equals accuracy (and micro precision and recall) when each
    image has exactly one label."""
    c = confusion_counts(conf)
    tp, fp, fn = c["tp"].sum(axis=1), c["fp"].sum(axis=1), c["fn"].sum(axis=1)
    return _divide(2 * tp, 2 * tp + fp + fn)


@_register("confusion")
def _global_f1(conf: np.ndarray) -> np.ndarray:
    """Harmonic mean of weighted precision and weighted recall (the MRI study's formula)."""
    p = per_class(conf)
    precision = _weighted(p["precision"], p["support"])
    recall = _weighted(p["recall"], p["support"])
    return _divide(2 * precision * recall, precision + recall)


@_register("confusion", share=False, bounds=(-1.0, 1.0))
def _cohen_kappa(conf: np.ndarray) -> np.ndarray:
    """Agreement beyond chance between true and predicted classes."""
    total = conf.sum(axis=(1, 2))
    observed = _divide(np.trace(conf, axis1=1, axis2=2), total)
    expected = _divide((conf.sum(axis=2) * conf.sum(axis=1)).sum(axis=1), total**2)
    return _divide(observed - expected, 1 - expected)


@_register("confusion", share=False, bounds=(-1.0, 1.0))
def _matthews_corrcoef(conf: np.ndarray) -> np.ndarray:
    """Matthews correlation coefficient (multiclass form)."""
    total = conf.sum(axis=(1, 2))
    correct = np.trace(conf, axis1=1, axis2=2)
    true = conf.sum(axis=2)
    predicted = conf.sum(axis=1)
    cov = correct * total - (true * predicted).sum(axis=1)
    den = np.sqrt((total**2 - (predicted**2).sum(axis=1)) * (total**2 - (true**2).sum(axis=1)))
    return _divide(cov, den)


def auc_ovr(scores: np.ndarray, positive: np.ndarray, weights_by_image: np.ndarray
            ) -> np.ndarray:
    """ROC AUC of `scores` for binary `positive` labels, per resample; ties count 1/2. It is
    undefined (NaN, as in scikit-learn) where a resample holds no positive or no negative.

    `weights_by_image` is (N, B): image-major, so gathering images copies contiguous rows.
    Negatives are sorted once, each positive finds its place by binary search, and one
    cumulative sum over the sorted negatives serves every resample.
    """
    positive = positive.astype(bool)
    pos_idx, neg_idx = np.flatnonzero(positive), np.flatnonzero(~positive)
    neg_order = neg_idx[np.argsort(scores[neg_idx], kind="mergesort")]
    neg_scores = scores[neg_order]
    below = np.searchsorted(neg_scores, scores[pos_idx], side="left")
    not_above = np.searchsorted(neg_scores, scores[pos_idx], side="right")
    # Prefix sums of the sorted negatives' weights are needed only where positives land:
    # sum the runs between those places, then accumulate the (few) run sums.
    cuts = np.unique(np.r_[0, below, not_above, len(neg_order)])
    run_of = np.searchsorted(cuts, np.arange(len(neg_order)), side="right") - 1
    runs = _group_sums(run_of, neg_order, len(cuts) - 1, weights_by_image)
    prefix = np.zeros((len(cuts), weights_by_image.shape[1]), dtype=weights_by_image.dtype)
    np.cumsum(runs, axis=0, out=prefix[1 : len(runs) + 1])
    at_below, at_not_above = np.searchsorted(cuts, below), np.searchsorted(cuts, not_above)
    pos_weights = weights_by_image[pos_idx]
    # Negatives strictly below count 1, tied ones 1/2: the mean of the two prefix sums.
    # Products of resample counts are exact in float32; their sum is taken in float64.
    pairs = pos_weights * (prefix[at_below] + prefix[at_not_above])
    wins = pairs.sum(axis=0, dtype=np.float64) / 2
    totals = pos_weights.sum(axis=0, dtype=np.float64) * prefix[-1].astype(np.float64)
    out = np.full(totals.shape, np.nan)
    np.divide(wins, totals, out=out, where=totals != 0)
    return out


def renormalised(prob: np.ndarray) -> np.ndarray:
    """(N, K) probabilities divided by their sum per image: the one convention of every
    probability metric (and the reliability diagram).

    Example:
        >>> renormalised(np.array([[0.6, 0.6]])).tolist()
        [[0.5, 0.5]]
    """
    return prob / prob.sum(axis=1, keepdims=True)


def mean_of_defined(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per row, the (weighted) mean of the finite values: a class without a defined AUC in
    a resample (absent from it) is left out of that resample's average, not counted as 0.

    Example:
        >>> mean_of_defined(np.array([[1.0, 1.0, np.nan]]))
        array([1.])
    """
    defined = np.isfinite(values)
    weights = np.ones_like(values) if weights is None else weights
    weights = np.where(defined, weights, 0.0)
    total = weights.sum(axis=1)
    out = np.full(len(values), np.nan)
    np.divide((np.where(defined, values, 0.0) * weights).sum(axis=1), total, out=out,
              where=total != 0)
    return out


def _group_sums(group: np.ndarray, images: np.ndarray, groups: int,
                weights_by_image: np.ndarray) -> np.ndarray:
    """(groups, B): for each group, the sum of its images' weight rows.

    A sparse indicator matrix times the weights: no copy of the (N, B) weights is made.
    """
    indicator = sparse.csr_matrix(
        (np.ones(len(images), dtype=weights_by_image.dtype), (group, images)),
        shape=(groups, weights_by_image.shape[0]),
    )
    return np.asarray(indicator @ weights_by_image)


class ScoreInputs:
    """What score metrics read: labels, probabilities, resample weights, shared results.

    Work that several metrics need (one-vs-rest AUCs per class) is done once per input.
    """

    def __init__(self, y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> None:
        self.y_true, self.prob, self.weights = y_true, prob, weights
        self._class_aucs: np.ndarray | None = None
        self._by_image: np.ndarray | None = None
        self._distribution: np.ndarray | None = None

    @property
    def distribution(self) -> np.ndarray:
        """The probabilities renormalised to sum to 1 per image: what log loss, the Brier
        score and the calibration error all read (one convention; a softmax already sums to
        1, per-class sigmoid outputs do not). Ranking metrics (AUC) read `prob` itself."""
        if self._distribution is None:
            self._distribution = renormalised(self.prob)
        return self._distribution

    @property
    def weights_by_image(self) -> np.ndarray:
        """The weights as (N, B), contiguous per image."""
        if self._by_image is None:
            self._by_image = np.ascontiguousarray(self.weights.T)
        return self._by_image

    @property
    def class_aucs(self) -> np.ndarray:
        """(B, K) one-vs-rest AUC per class."""
        if self._class_aucs is None:
            self._class_aucs = np.stack(
                [auc_ovr(self.prob[:, k], self.y_true == k, self.weights_by_image)
                 for k in range(self.prob.shape[1])], axis=1)
        return self._class_aucs

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Weighted mean of one value per image, per weight row."""
        return _divide(self.weights @ values, self.weights.sum(axis=1))


EPS = 1e-15


@_register("score", higher_is_better=False, bounds=(0.0, math.inf))
def _log_loss(inputs: ScoreInputs) -> np.ndarray:
    """Mean negative log-probability of the true class (probabilities renormalised)."""
    prob = inputs.distribution
    true_prob = np.clip(prob[np.arange(len(inputs.y_true)), inputs.y_true], EPS, 1 - EPS)
    return inputs.mean(-np.log(true_prob))


@_register("score", higher_is_better=False, bounds=(0.0, 2.0))
def _brier_score(inputs: ScoreInputs) -> np.ndarray:
    """Mean squared distance to the one-hot truth (probabilities renormalised; halved for two
    classes, as scikit-learn)."""
    onehot = np.eye(inputs.prob.shape[1])[inputs.y_true]
    each = ((inputs.distribution - onehot) ** 2).sum(axis=1)
    if inputs.prob.shape[1] == 2:
        each = each / 2
    return inputs.mean(each)


def top_k_hits(y_true: np.ndarray, prob: np.ndarray, k: int) -> np.ndarray:
    """1 where the true class is among the k most probable; among tied probabilities the
    later class ranks first, as scikit-learn's stable sort does."""
    true_prob = prob[np.arange(len(y_true)), y_true][:, None]
    later = np.arange(prob.shape[1])[None, :] > y_true[:, None]
    ahead = (prob > true_prob) | ((prob == true_prob) & later)
    return (ahead.sum(axis=1) < k).astype(float)


@_register("score")
def _top_2_accuracy(inputs: ScoreInputs) -> np.ndarray:
    """Share of images whose true class is among the 2 most probable."""
    return inputs.mean(top_k_hits(inputs.y_true, inputs.prob, 2))


@_register("score")
def _roc_auc_macro(inputs: ScoreInputs) -> np.ndarray:
    """Unweighted mean of one-vs-rest ROC AUCs over the classes present (the AUC itself for
    two classes); a class absent from the test images has no AUC and is left out."""
    if inputs.prob.shape[1] == 2:
        return inputs.class_aucs[:, 1]
    return mean_of_defined(inputs.class_aucs)


@_register("score")
def _roc_auc_weighted(inputs: ScoreInputs) -> np.ndarray:
    """Support-weighted mean of one-vs-rest ROC AUCs (the MRI study's global AUC)."""
    if inputs.prob.shape[1] == 2:
        return inputs.class_aucs[:, 1]
    support = inputs.weights @ np.eye(inputs.prob.shape[1])[inputs.y_true]
    return mean_of_defined(inputs.class_aucs, support)


ECE_BINS = 15


@_register("score", higher_is_better=False)
def _expected_calibration_error(inputs: ScoreInputs) -> np.ndarray:
    """Mean |confidence - accuracy| over 15 equal-width confidence bins, weighted by size
    (probabilities renormalised)."""
    confidence = inputs.distribution.max(axis=1)
    correct = (inputs.prob.argmax(axis=1) == inputs.y_true).astype(float)
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    member = np.eye(ECE_BINS)[bins]
    weights = inputs.weights
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
        counts = _cell_sums(cell, n_classes**2, np.ascontiguousarray(weights.T))
    return counts.reshape(-1, n_classes, n_classes)


def _cell_sums(cell: np.ndarray, cells: int, weights_by_image: np.ndarray) -> np.ndarray:
    """(B, cells) sums of the image weights falling in each confusion-matrix cell.

    Sums of integer resample counts are exact in float32; the result is float64.
    """
    return _group_sums(cell, np.arange(len(cell)), cells, weights_by_image).T.astype(np.float64)


def compute(
    names: list[str], y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Each named metric for every weight row (or once, unweighted): name -> (B,)."""
    n_classes = prob.shape[1]
    if weights is None:
        weights = np.ones((1, len(y_true)))
    inputs = ScoreInputs(y_true, prob, weights)
    cell = y_true * n_classes + prob.argmax(axis=1)
    conf = _cell_sums(cell, n_classes**2, inputs.weights_by_image).reshape(
        -1, n_classes, n_classes)
    results = {}
    for name in names:
        metric = METRICS.get(name)
        results[name] = metric.fn(conf) if metric.kind == "confusion" else metric.fn(inputs)
    return results


def undefined_notes(conf: np.ndarray, classes: list[str]) -> list[Notice]:
    """Where a ratio was undefined and counted as 0 (one plain confusion matrix)."""
    c = confusion_counts(conf[None] if conf.ndim == 2 else conf[:1])
    never_predicted = [name for k, name in enumerate(classes)
                       if c["tp"][0, k] + c["fp"][0, k] == 0]
    absent = [name for k, name in enumerate(classes) if c["support"][0, k] == 0]
    notes = []
    if never_predicted:
        notes.append(Notice(code="never_predicted", data={"classes": never_predicted},
                            message=f"no image was predicted {', '.join(never_predicted)}: "
                            "precision undefined there, counted 0"))
    if absent:
        notes.append(Notice(code="absent_class", data={"classes": absent},
                            message=f"no test image is {', '.join(absent)}: recall undefined "
                            "there, counted 0; left out of the macro and weighted ROC AUC"))
    return notes
