"""Weak segments: where on an image property a model does worse than on the whole test
split.

Each property (`evaluate.shift.PROPERTIES`, and the source files' size and aspect ratio)
is cut into quantile bins whose edges come from the training images (never from test),
and each bin's test images are scored: accuracy with its exact interval, the headline
metric with a bootstrap interval. A bin is weak when its accuracy is significantly below
that of the rest of the test split (one-sided Fisher exact test), after Holm's correction
for every bin of every property tried.

Example:
    >>> rng = np.random.default_rng(0)
    >>> darkness = rng.uniform(size=400)
    >>> correct = rng.uniform(size=400) > np.where(darkness < 0.25, 0.5, 0.1)
    >>> edges = bin_edges(rng.uniform(size=1000), 4)
    >>> found = weak_bins({"brightness": darkness}, {"brightness": edges}, correct, 0.05)
    >>> [(row.name, row.bin, row.weak) for row in found if row.weak]
    [('brightness', 0, True)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def bin_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """The inner edges of `bins` quantile bins of `reference` values (training images),
    duplicates dropped (a property with few values gets fewer bins)."""
    if not len(reference):
        return np.zeros(0)
    inner = np.quantile(np.asarray(reference, np.float64), np.arange(1, bins) / bins)
    return np.unique(inner)


@dataclass(frozen=True)
class Bin:
    """One bin of one property on the test split: its bounds (None: open), its images, how
    many the model got right, and the one-sided p-value (raw and Holm-adjusted) that its
    accuracy is below the rest's."""

    name: str
    bin: int
    low: float | None
    high: float | None
    members: np.ndarray
    correct: int
    p_value: float
    adjusted: float
    weak: bool


def weak_bins(values: dict[str, np.ndarray], edges: dict[str, np.ndarray],
              correct: np.ndarray, alpha: float) -> list[Bin]:
    """Every bin of every property (`values`: per test image; `edges`: from training),
    with its test against the rest of the test split and Holm's correction over all."""
    groups = []
    for name, per_image in values.items():
        cuts = edges.get(name)
        if cuts is None or not len(cuts):
            continue
        # right=False: an image equal to an edge goes to the bin above it.
        where = np.digitize(per_image, cuts)
        for number in range(len(cuts) + 1):
            groups.append((name, number, float(cuts[number - 1]) if number else None,
                           float(cuts[number]) if number < len(cuts) else None,
                           np.flatnonzero(where == number)))
    return _below_the_rest(groups, correct, alpha)


def weak_groups(members: dict[str, np.ndarray], correct: np.ndarray, alpha: float
                ) -> list[Bin]:
    """Named groups of test images (an image-quality issue's, say: positions into
    `correct`), each tested against the rest of the test split, Holm-corrected."""
    return _below_the_rest([(name, 0, None, None, np.asarray(found, int))
                            for name, found in members.items()], correct, alpha)


def _below_the_rest(groups: list[tuple[str, int, float | None, float | None, np.ndarray]],
                    correct: np.ndarray, alpha: float) -> list[Bin]:
    """Each group's one-sided Fisher exact test (accuracy below the rest's), then Holm's
    correction over the groups tested; empty groups and the whole split are skipped."""
    from scipy.stats import fisher_exact

    correct = np.asarray(correct, bool)
    tested = []
    for name, number, low, high, members in groups:
        if not len(members) or len(members) == len(correct):
            continue
        inside = int(correct[members].sum())
        outside = int(correct.sum()) - inside
        rest = len(correct) - len(members)
        table = [[inside, len(members) - inside], [outside, rest - outside]]
        p_value = float(fisher_exact(table, alternative="less").pvalue)
        tested.append((name, number, low, high, members, inside, p_value))
    adjusted = holm([row[-1] for row in tested])
    return [Bin(name, number, low, high, members, inside, p_value, fixed, fixed < alpha)
            for (name, number, low, high, members, inside, p_value), fixed
            in zip(tested, adjusted, strict=True)]


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (each at most 1, never below an earlier one).

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    order = np.argsort(p_values, kind="stable")
    count = len(p_values)
    adjusted = np.zeros(count)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return [round(float(value), 12) for value in adjusted]
