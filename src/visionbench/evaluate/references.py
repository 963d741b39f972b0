"""Each model against published or earlier numbers (`evaluate.references`).

Only a reference's numbers are known, not its predictions, so a paired test is impossible.
Accuracy is a count of correct test images: a one-sided exact binomial test asks whether a
model's count is above (or below) what the reference's accuracy predicts on this many
images. For every other metric the reference value is placed against the model's bootstrap
interval (below it, inside it, above it), which is what the interval can say.

Example:
    >>> round(binomial_p(312, 394, 0.74, "greater"), 4)
    0.0098
"""

from __future__ import annotations

from typing import Literal

from scipy import stats

from visionbench.evaluate.metrics import METRICS
from visionbench.rundir.documents import (
    EvaluationDocument,
    ReferenceComparison,
    ReferenceTest,
)
from visionbench.schemas.evaluate import Reference


def binomial_p(correct: int, images: int, reference: float,
               side: Literal["greater", "less"]) -> float:
    """One-sided exact binomial p-value of `correct` of `images` against accuracy
    `reference` (side `greater`: is the model better?)."""
    return float(stats.binomtest(correct, images, reference, side).pvalue)


def against_references(evaluations: dict[str, EvaluationDocument],
                       references: dict[str, Reference], alpha: float
                       ) -> dict[str, ReferenceComparison]:
    """For each reference and model (its evaluation): the tests and placements described
    in the module doc."""
    found: dict[str, ReferenceComparison] = {}
    for name, reference in references.items():
        models = {}
        for model, evaluation in evaluations.items():
            models[model] = {metric: _against(metric, value, evaluation, alpha)
                             for metric, value in reference.metrics.items()
                             if metric in evaluation.metrics}
        found[name] = ReferenceComparison(source=reference.source,
                                          metrics=dict(reference.metrics), models=models)
    return found


def _against(metric: str, reference: float, evaluation: EvaluationDocument, alpha: float
             ) -> ReferenceTest:
    entry = evaluation.metrics[metric]
    value = entry.value
    if metric == "accuracy":
        images = evaluation.images
        correct = round(value * images)
        greater = binomial_p(correct, images, reference, "greater")
        less = binomial_p(correct, images, reference, "less")
        verdict = ("better" if greater < alpha else "worse" if less < alpha
                   else "no significant difference")
        return ReferenceTest(test="exact binomial, one-sided", p_greater=greater, p_less=less,
                             verdict=verdict)
    if entry.low is None or entry.high is None:
        return ReferenceTest(test="none (no interval)", verdict="untested")
    higher = METRICS.get(metric).higher_is_better
    if entry.low <= reference <= entry.high:
        verdict = "within the interval"
    else:
        above_interval = reference > entry.high
        verdict = "better" if above_interval != higher else "worse"
    return ReferenceTest(test="reference against the bootstrap interval", verdict=verdict)
