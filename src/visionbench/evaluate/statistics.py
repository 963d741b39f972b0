"""Uncertainty and significance: stratified bootstrap intervals, paired bootstrap
differences, McNemar's test and DeLong's test.

Bootstrap resamples are drawn once per test set as a `(B, N)` matrix of counts (each class
resampled within itself, so every resample keeps the class sizes) and shared by every
model, which makes model comparisons paired and lets every metric be computed for all
resamples in a few vectorised operations.

Example:
    >>> import numpy as np
    >>> w = bootstrap_weights(np.array([0, 0, 1, 1, 1]), 4, seed=0)
    >>> w.shape, w[:, :2].sum(axis=1).tolist()
    ((4, 5), [2.0, 2.0, 2.0, 2.0])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats


def bootstrap_weights(y_true: np.ndarray, resamples: int, seed: int = 0) -> np.ndarray:
    """(B, N) counts of each image in each stratified resample (classes keep their sizes).

    float32: counts are small integers (exact), and half the memory makes every
    vectorised metric about twice as fast.
    """
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, len(y_true)), dtype=np.float32)
    for label in np.unique(y_true):
        members = np.flatnonzero(y_true == label)
        weights[:, members] = rng.multinomial(len(members), np.full(len(members),
                                                                     1 / len(members)),
                                              size=resamples)
    return weights


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap values."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def binomial_interval(hits: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion."""
    if total == 0:
        return 0.0, 1.0
    tail = (1 - level) / 2
    low = stats.beta.ppf(tail, hits, total - hits + 1) if hits else 0.0
    high = stats.beta.ppf(1 - tail, hits + 1, total - hits) if hits < total else 1.0
    return float(low), float(high)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, point_a: float, point_b: float,
                     level: float = 0.95) -> dict[str, float]:
    """Difference a - b over shared resamples: estimate, interval and two-sided p-value.

    The p-value is twice the share of resampled differences on the far side of zero
    (a percentile-bootstrap test), floored at 1/B; `resamples` (B) says that resolution.
    """
    diff = a - b
    low, high = percentile_interval(diff, level)
    share = min((diff <= 0).mean(), (diff >= 0).mean())
    p_value = min(1.0, max(2 * share, 1 / len(diff)))
    return {"difference": point_a - point_b, "low": low, "high": high, "p_value": float(p_value),
            "resamples": len(diff)}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's test on paired correctness: exact binomial when the discordant pairs are
    fewer than 25, else the chi-square test with continuity correction."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    if discordant == 0:
        return {"only_a": only_a, "only_b": only_b, "statistic": 0.0, "p_value": 1.0,
                "method": "exact"}
    if discordant < 25:
        p_value = min(1.0, 2 * stats.binom.cdf(min(only_a, only_b), discordant, 0.5))
        return {"only_a": only_a, "only_b": only_b, "statistic": float(min(only_a, only_b)),
                "p_value": float(p_value), "method": "exact"}
    statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
    return {"only_a": only_a, "only_b": only_b, "statistic": float(statistic),
            "p_value": float(stats.chi2.sf(statistic, 1)), "method": "chi2"}


def _midranks(values: np.ndarray) -> np.ndarray:
    return stats.rankdata(values, method="average")


def delong(scores_a: np.ndarray, scores_b: np.ndarray, positive: np.ndarray
           ) -> dict[str, float]:
    """DeLong's test for two correlated ROC AUCs on the same images (binary `positive`).

    Uses the placement-value form (DeLong et al. 1988; fast midrank computation of
    Sun & Xu 2014).
    """
    positive = positive.astype(bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        return {"auc_a": math.nan, "auc_b": math.nan, "z": math.nan, "p_value": math.nan}
    aucs, v10, v01 = [], [], []
    for scores in (scores_a, scores_b):
        pos, neg = scores[positive], scores[~positive]
        all_ranks = _midranks(np.r_[pos, neg])
        pos_ranks, neg_ranks = _midranks(pos), _midranks(neg)
        aucs.append((all_ranks[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((all_ranks[:m] - pos_ranks) / n)
        v01.append(1 - (all_ranks[m:] - neg_ranks) / m)
    s10 = np.cov(np.vstack(v10)) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack(v01)) if n > 1 else np.zeros((2, 2))
    covariance = s10 / m + s01 / n
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = aucs[0] - aucs[1]
    if variance <= 0:
        p_value = 1.0 if difference == 0 else 0.0
        z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
    else:
        z = difference / math.sqrt(variance)
        p_value = 2 * stats.norm.sf(abs(z))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "z": float(z),
            "p_value": float(p_value)}


# Below this many positives or negatives DeLong's normal approximation rejects too often
# (two random scorers, 200 negatives: 86 % of p < 0.05 with 1 positive, 13 % with 5, 8 %
# with 10, 6.5 % with 30); the paired permutation test is exact at any size.
DELONG_MIN = 30
PERMUTATIONS = 2000


def auc_difference_test(scores_a: np.ndarray, scores_b: np.ndarray, positive: np.ndarray,
                        seed: int = 0) -> dict[str, Any]:
    """Two correlated ROC AUCs on the same images compared: DeLong's test with at least
    `DELONG_MIN` positives and negatives, else a paired permutation test (each image's two
    scores swapped at random, `PERMUTATIONS` times; `method: permutation`, no z)."""
    positive = positive.astype(bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if min(m, n) >= DELONG_MIN or m == 0 or n == 0:
        return delong(scores_a, scores_b, positive)
    return permutation_auc_test(scores_a, scores_b, positive, seed)


def _aucs_by_column(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC of each column of (N, R) `scores` (ties count 1/2)."""
    m, n = int(positive.sum()), int((~positive).sum())
    ranks = stats.rankdata(scores, axis=0)
    return (ranks[positive].sum(axis=0) - m * (m + 1) / 2) / (m * n)


def permutation_auc_test(scores_a: np.ndarray, scores_b: np.ndarray, positive: np.ndarray,
                         seed: int = 0) -> dict[str, Any]:
    """Paired permutation test of AUC(a) = AUC(b): under the null each image's two scores
    are exchangeable; the p-value counts permutations at least as far from 0 as observed.

    Example:
        >>> positive = np.array([True, True, False, False, False])
        >>> a = np.array([0.9, 0.8, 0.1, 0.2, 0.3])
        >>> permutation_auc_test(a, a, positive)["p_value"]
        1.0
    """
    positive = positive.astype(bool)
    rng = np.random.default_rng(seed)
    swap = rng.random((len(positive), PERMUTATIONS)) < 0.5
    a, b = scores_a[:, None], scores_b[:, None]
    observed = _aucs_by_column(np.c_[scores_a, scores_b], positive)
    difference = observed[0] - observed[1]
    permuted = (_aucs_by_column(np.where(swap, b, a), positive)
                - _aucs_by_column(np.where(swap, a, b), positive))
    extreme = int((np.abs(permuted) >= abs(difference) - 1e-12).sum())
    return {"auc_a": float(observed[0]), "auc_b": float(observed[1]), "z": math.nan,
            "p_value": (1 + extreme) / (1 + PERMUTATIONS), "method": "permutation",
            "positives": int(positive.sum()), "negatives": int((~positive).sum())}


def _corrected_error(values: np.ndarray, train_size: float, test_size: float) -> float:
    """Standard error of a mean over resampled folds, widened for their overlap: the
    training sets of k folds share most of their images, so the folds' scores are
    correlated and the naive 1/J under-states the variance (Nadeau & Bengio, 2003)."""
    return math.sqrt((1 / len(values) + test_size / train_size) * float(np.var(values, ddof=1)))


def corrected_resampled_t(differences: np.ndarray, train_size: float, test_size: float
                          ) -> tuple[float, float]:
    """Nadeau and Bengio's corrected resampled t-test of per-fold score differences between
    two models trained on the same folds: (t, two-sided p) with J - 1 degrees of freedom.
    `train_size` and `test_size` are a fold's training and validation sizes.

    Example:
        >>> t, p = corrected_resampled_t(np.array([0.02, 0.03, 0.01]), 2.0, 1.0)
        >>> round(t, 4), round(p, 4)
        (2.1909, 0.1598)
    """
    differences = np.asarray(differences, dtype=float)
    mean = float(differences.mean())
    if len(differences) < 2:
        return math.nan, math.nan
    error = _corrected_error(differences, train_size, test_size)
    if error == 0:
        return (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / error
    return t, float(2 * stats.t.sf(abs(t), len(differences) - 1))


def corrected_interval(values: np.ndarray, train_size: float, test_size: float,
                       confidence: float = 0.95,
                       bounds: tuple[float, float] = (-math.inf, math.inf)
                       ) -> tuple[float, float, float]:
    """(mean, low, high) of per-fold scores: a t interval with the corrected variance, cut
    to the values the metric can take (`bounds`: an accuracy's interval ends at 1).

    Example:
        >>> [round(v, 4) for v in corrected_interval(np.array([0.8, 0.85, 0.9]), 2.0, 1.0)]
        [0.85, 0.6536, 1.0464]
        >>> [round(v, 4) for v in corrected_interval(np.array([0.8, 0.85, 0.9]), 2.0, 1.0,
        ...                                          bounds=(0.0, 1.0))]
        [0.85, 0.6536, 1.0]
    """
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * _corrected_error(
        values, train_size, test_size)
    return mean, max(mean - half, bounds[0]), min(mean + half, bounds[1])
