"""Split conformal prediction sets: a set of classes per image that holds the true class
with probability at least `coverage` (over exchangeable draws of the calibration and new
images), calibrated on the validation split.

Scores (larger = less conforming):
- `lac` (least ambiguous set-valued classifier, Sadinle et al. 2019): 1 - p(y). The sets
  are the smallest on average.
- `aps` (adaptive prediction sets, Romano et al. 2020): the probability mass of the classes
  ranked at or above y. The sets grow with the model's uncertainty. This is the
  non-randomised form (the same image always gets the same set), whose coverage is at or
  somewhat above the target.

The threshold is the ceil((n + 1) * coverage)-th smallest validation score; a class is in
an image's set when its score is at most the threshold (compared at six decimals). An
empty set (possible with LAC) gets the top class: adding classes never lowers coverage.

Example:
    >>> import numpy as np
    >>> threshold(np.array([0.1, 0.2, 0.3, 0.4]), coverage=0.5)
    0.3
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats

from visionbench.evaluate.statistics import binomial_interval
from visionbench.registry import Registry
from visionbench.rundir.documents import ConformalClass, ConformalSummary

# Scores are compared with the threshold at the precision probabilities are written with
# (six decimals in predict's CSV and the app): the run, predict and the export then give
# the same sets although their probabilities differ in the seventh digit. An additive
# tolerance instead put every class into a confident model's APS sets, whose scores crowd
# just below 1.
PRECISION = 6
# (N, classes) probabilities -> (N, classes) score of each class as the label.
Score = Callable[[np.ndarray], np.ndarray]
SCORES: Registry[Score] = Registry("conformal score")


@SCORES.register("lac")
def _lac(prob: np.ndarray) -> np.ndarray:
    return 1.0 - prob


@SCORES.register("aps")
def _aps(prob: np.ndarray) -> np.ndarray:
    order = np.argsort(-prob, axis=1, kind="stable")
    mass = np.take_along_axis(prob, order, axis=1).cumsum(axis=1)
    scores = np.empty_like(prob)
    np.put_along_axis(scores, order, mass, axis=1)
    return scores


def threshold(calibration_scores: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile of the true classes' scores on the calibration images
    (infinite when there are too few of them for `coverage`: every set is every class)."""
    n = len(calibration_scores)
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        return math.inf
    return float(np.sort(calibration_scores)[rank - 1])


def prediction_sets(prob: np.ndarray, score: str, cutoff: float) -> np.ndarray:
    """(N, classes) boolean membership of each class in each image's set: its score at
    most the threshold, both at `PRECISION` decimals."""
    members = np.round(SCORES.get(score)(prob), PRECISION) <= round(cutoff, PRECISION)
    empty = ~members.any(axis=1)
    members[empty, prob[empty].argmax(axis=1)] = True
    return members


def calibrate(val_prob: np.ndarray, val_true: np.ndarray, score: str, coverage: float
              ) -> float:
    """The threshold of `score` for `coverage`, from validation predictions."""
    scores = SCORES.get(score)(val_prob)[np.arange(len(val_true)), val_true]
    return threshold(scores, coverage)




def below_target_p(hits: int, images: int, coverage: float, calibration_images: int
                   ) -> float:
    """How likely so few of `images` test images would be covered if the sets held the
    split-conformal guarantee for them: the coverage given a calibration set of n images
    is Beta(l, n + 1 - l) with l = ceil((n + 1) coverage) (Vovk 2012; Angelopoulos & Bates
    2021, §C), so the hits are beta-binomial. Testing against the target alone, as if the
    threshold were known exactly, flags sound classes far more often than stated.

    Example:
        >>> round(below_target_p(90, 100, 0.9, 1000), 3)
        0.542
    """
    rank = math.ceil((calibration_images + 1) * coverage)
    if images == 0 or rank > calibration_images:
        return 1.0
    tail = stats.betabinom(images, rank, calibration_images + 1 - rank).cdf(hits)
    return float(tail)


def summarise(test_prob: np.ndarray, test_true: np.ndarray, classes: list[str], score: str,
              coverage: float, cutoff: float, calibration_images: int, level: float = 0.95
              ) -> ConformalSummary:
    """Empirical coverage of the test sets with its interval, set sizes, and coverage per
    class; a class is flagged when its coverage is below what split conformal's own
    randomness explains (`below_target_p` under 1 - `level`, divided by the number of
    classes tested, so a sound run is flagged about 1 - `level` of the time)."""
    members = prediction_sets(test_prob, score, cutoff)
    covered = members[np.arange(len(test_true)), test_true]
    sizes = members.sum(axis=1)
    low, high = binomial_interval(int(covered.sum()), len(covered), level)
    per_class = {}
    tested = max(1, int(sum((test_true == k).any() for k in range(len(classes)))))
    for k, name in enumerate(classes):
        mine = test_true == k
        hits, total = int(covered[mine].sum()), int(mine.sum())
        c_low, c_high = binomial_interval(hits, total, level)
        p_below = below_target_p(hits, total, coverage, calibration_images)
        per_class[name] = ConformalClass(
            coverage=hits / total if total else None, low=c_low, high=c_high, images=total,
            p_below=p_below, below_target=p_below < (1 - level) / tested)
    return ConformalSummary(
        score=score, coverage_target=coverage, threshold=cutoff,
        calibration_images=calibration_images,
        coverage=float(covered.mean()) if len(covered) else None, low=low, high=high,
        mean_set_size=float(sizes.mean()) if len(sizes) else None,
        set_sizes={str(size): int((sizes == size).sum())
                   for size in range(1, len(classes) + 1)},
        per_class=per_class,
        flagged=[name for name, row in per_class.items() if row.below_target])
