"""Which model to recommend, chosen on the validation split only.

The test split describes the chosen model once; it never takes part in the choice. Taking
the model with the best test score would report the maximum of several noisy estimates
(optimistic by construction) and let the test split decide, the very leak the tool exists
to prevent.

The rule: compute the primary metric of every model on its validation predictions; the
models whose paired bootstrap difference to the validation-best is not significant (at
`alpha`) are tied with it; among the tied, recommend the smallest (fewest parameters,
which is also what makes a model cheap to run), then the best on validation. A simpler
model that validation cannot tell apart from the best is the safer one to put to work (the
"one standard error" rule of model selection, with a paired test in place of the standard
error). Measured times never decide: they differ between two runs of the same config.

Example:
    >>> import numpy as np
    >>> from visionbench.rundir.predictions import Predictions
    >>> from visionbench.schemas.evaluate import EvaluateConfig
    >>> y = np.array([0, 0, 1, 1])
    >>> good = Predictions(list("abcd"), y, np.array([[.9, .1], [.8, .2], [.3, .7], [.2, .8]]))
    >>> poor = Predictions(list("abcd"), y, np.array([[.4, .6], [.8, .2], [.6, .4], [.2, .8]]))
    >>> choice = recommend({"good": good, "poor": poor}, {"good": 10, "poor": 5},
    ...                    EvaluateConfig(bootstrap=0))
    >>> choice.recommended, choice.values
    ('good', {'good': 1.0, 'poor': 0.5})
"""

from __future__ import annotations

import math

import numpy as np

from visionbench.errors import UserError
from visionbench.evaluate.metrics import METRICS, compute
from visionbench.evaluate.statistics import bootstrap_weights, paired_bootstrap
from visionbench.rundir.documents import Selection
from visionbench.rundir.predictions import Predictions
from visionbench.schemas.evaluate import EvaluateConfig

# A model without a known size (an external file, an ensemble of unknown members) loses
# every tie to one whose size is known.
UNKNOWN = math.inf


def recommend(validation: dict[str, Predictions | None], sizes: dict[str, float],
              settings: EvaluateConfig, tuned: set[str] | None = None) -> Selection:
    """The recommended model and how it was chosen, from validation predictions alone.

    `sizes` maps a model to its parameter count, the tie-breaker; `tuned` names models
    whose settings a sweep chose on this same validation split (their validation scores
    are optimistic: the reason says so where it makes its claim). The result records the
    split, the metric, each model's validation value, the tied set with the paired p-values
    against the validation-best, the recommendation and the reason in words.
    """
    metric = METRICS.get(settings.primary_metric)
    candidates = {name: predictions for name, predictions in validation.items()
                  if predictions is not None and len(predictions.y_true)}
    chosen_by = {"split": "validation", "metric": metric.name, "alpha": settings.alpha}
    if not candidates:
        if len(validation) == 1:
            only = next(iter(validation))
            return Selection(**chosen_by, values={}, p_values={}, tied=[],
                             best_on_validation=None, recommended=only,
                             reason=f"{only} is the only model; it has no validation "
                             "predictions, so nothing was chosen")
        return Selection(**chosen_by, values={}, p_values={}, tied=[], best_on_validation=None,
                         recommended=None, reason="no model has validation predictions, so "
                         "none is recommended; the test table only describes the models")
    reference = next(iter(candidates.values()))
    for name, predictions in candidates.items():
        if predictions.ids != reference.ids:
            raise UserError(f"{name}'s validation predictions are for other images than "
                            f"{next(iter(candidates))}'s: evaluate them in separate runs")
    sign = 1.0 if metric.higher_is_better else -1.0
    point = {n: float(compute([metric.name], p.y_true, p.prob)[metric.name][0])
             for n, p in candidates.items()}
    # An undefined value (an AUC on a validation split of one class) ranks last.
    ranked = sorted(candidates, key=lambda n: (math.isnan(point[n]), -sign * point[n]
                                               if not math.isnan(point[n]) else 0.0))
    leader = ranked[0]
    p_values = _p_values_against(leader, candidates, metric.name, settings)
    tied = [n for n in ranked if n == leader or p_values.get(n, 0.0) >= settings.alpha
            or point[n] == point[leader]]
    chosen = min(tied, key=lambda n: (sizes.get(n, UNKNOWN), ranked.index(n)))
    reason = _reason(chosen, leader, tied, metric.name, settings.alpha, len(candidates))
    if chosen in (tuned or set()):
        reason += (f" — but {chosen}'s settings were tuned on this same validation split, so "
                   "its validation score is optimistic and this comparison favours it; its "
                   "test score is the fair one")
    return Selection(**chosen_by, values=point, p_values=p_values, tied=tied,
                     best_on_validation=leader, recommended=chosen, reason=reason)


def _p_values_against(leader: str, candidates: dict[str, Predictions], metric: str,
                      settings: EvaluateConfig) -> dict[str, float]:
    """Paired bootstrap p-value of each model's difference to `leader` on validation."""
    if not settings.bootstrap or len(candidates) < 2:
        return {}
    truth = candidates[leader].y_true
    weights = bootstrap_weights(truth, settings.bootstrap, settings.seed)
    resampled = {n: compute([metric], p.y_true, p.prob, weights)[metric]
                 for n, p in candidates.items()}
    point = {n: float(compute([metric], p.y_true, p.prob)[metric][0])
             for n, p in candidates.items()}
    against_leader = {}
    for name in candidates:
        if name == leader:
            continue
        defined = np.isfinite(resampled[name]) & np.isfinite(resampled[leader])
        if not defined.any() or math.isnan(point[name]):
            continue
        against_leader[name] = paired_bootstrap(
            resampled[leader][defined], resampled[name][defined], point[leader], point[name],
            settings.confidence)["p_value"]
    return against_leader


def _reason(chosen: str, leader: str, tied: list[str], metric: str, alpha: float,
            candidates: int = 2) -> str:
    if candidates == 1:
        return "the only model with validation predictions: nothing to compare it with"
    if chosen == leader and len(tied) == 1:
        return f"best {metric} on validation, and every other model is significantly worse there"
    if chosen == leader:
        return (f"best {metric} on validation; of the models validation cannot tell apart from "
                f"it (paired bootstrap, alpha {alpha}), it is also the smallest")
    return (f"the smallest of the models validation cannot tell apart from the best on "
            f"validation ({leader}; paired bootstrap of {metric}, alpha {alpha})")
