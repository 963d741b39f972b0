"""Suspected label errors by confident learning (Northcutt et al. 2021), through cleanlab's
`find_label_issues`: from out-of-sample probabilities, the images whose given label the
model disputes, ranked by the model's confidence in the given label (lowest first).

Out of sample is what makes it sound: validation predictions, or out-of-fold predictions
of every training image with `split.folds`. The model is never asked about images it was
trained on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from visionbench.errors import UserError
from visionbench.rundir.documents import ClassIssues, LabelIssue, LabelPair
from visionbench.rundir.predictions import Predictions

METHOD = "cleanlab find_label_issues (prune_by_noise_rate), ranked by self-confidence"


def label_issues(predictions: Predictions, classes: list[str]) -> dict[str, Any]:
    """Every suspected label error of `predictions` (out of sample), most severe first,
    with counts per given class and per (given, suggested) pair."""
    # Imported here: cleanlab takes a while to load and most runs do not need it.
    from cleanlab.filter import find_label_issues

    labels, prob = predictions.y_true, predictions.prob
    present = np.bincount(labels, minlength=len(classes))
    # cleanlab needs each class among the labels; with one missing it cannot estimate
    # that class's noise rates.
    if (present == 0).any() or len(labels) < 2 * len(classes):
        missing = [c for c, n in zip(classes, present, strict=True) if n == 0]
        raise UserError("label issues need out-of-sample predictions of every class "
                        f"(missing: {', '.join(missing) or 'too few images'}): give the run "
                        "a larger validation split (data.split.val) or use data.split.folds")
    ranked = find_label_issues(labels, prob, return_indices_ranked_by="self_confidence",
                               n_jobs=1)
    issues = []
    for index in ranked.tolist():
        given, suggested = int(labels[index]), int(prob[index].argmax())
        issues.append(LabelIssue(id=predictions.ids[index], given=classes[given],
                                 suggested=classes[suggested],
                                 given_probability=float(prob[index, given]),
                                 suggested_probability=float(prob[index, suggested])))
    found = Counter(row.given for row in issues)
    pairs = Counter((row.given, row.suggested) for row in issues)
    return {
        "method": METHOD, "images_scored": len(labels), "found": len(issues),
        "by_class": {name: ClassIssues(images=int(present[k]), issues=found.get(name, 0))
                     for k, name in enumerate(classes)},
        "pairs": [LabelPair(given=given, suggested=suggested, count=count)
                  for (given, suggested), count in pairs.most_common()],
        "issues": issues,
    }
