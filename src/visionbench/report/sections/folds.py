"""Cross-validation, under the leaderboard: each model's primary metric fold by fold, its
mean with the corrected interval, and the corrected resampled t-test against the
recommended one."""

from __future__ import annotations

from visionbench import display
from visionbench.data.describe import TESTED_BY_ENSEMBLE, TESTED_BY_REFIT
from visionbench.evaluate.metrics import METRICS
from visionbench.report import charts
from visionbench.report.markup import Html, join, number
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run
from visionbench.rundir.documents import LeaderboardRow


@SECTIONS.register("04-folds")
def folds_section(page: Page, run: Run) -> None:
    """The folds' table and spread (nothing without folds)."""
    board = run.board
    rows = [row for row in board.rows if row.folds]
    if not rows or not run.any_trained:
        return
    primary = board.primary_metric
    tests = {test.model: test for test in run.comparison.folds}
    body, below = [], []
    for row in rows:
        folds = row.folds
        assert folds is not None  # the rows shown are those with folds
        outside = _below_every_fold(row, primary)
        if outside:
            below.append(outside)
        tested = tests.get(row.model)
        versus = ("recommended" if row.model == board.recommended else
                  f"{tested.difference:+.4f}, p {display.p_value(tested.p_value)}"
                  if tested else "–")
        body.append(Html("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>").format(
            row.model, display.interval(folds.interval),
            Html(", ").join(number(v) for v in folds.values), versus))
    first = rows[0].folds
    repeats = first.repeats if first else 1
    count = (first.count if first else 0) // max(repeats, 1)
    again = (f", repeated {repeats} times with the folds cut anew and another seed"
             if repeats > 1 else "")
    policy = run.data.split_policy
    tested_by = (TESTED_BY_ENSEMBLE if policy and policy.test_with == "fold_ensemble"
                 else TESTED_BY_REFIT)
    warning = (Html('<div class="warn">{}: the test score is below every fold\'s validation '
                    "{}. The test images may differ from the training images, or the model "
                    "that predicts test (refit or ensemble) behaves unlike the fold models: "
                    "read the test score as the one that counts for new images.</div>").format(
        ", ".join(below), primary) if below else Html())
    page.add(Html('<h3 id="folds">Cross-validation</h3>'
                  '<p class="muted">{count}-fold cross-validation{again}: each model was '
                  "trained once per fold with that fold as validation; {primary} on each "
                  "fold's validation images, their mean with a {level} t interval whose "
                  "variance is corrected for the folds' overlapping training sets, and the "
                  "corrected resampled t-test (Nadeau &amp; Bengio) of each model against the "
                  "recommended one, fold by fold. The recommendation is made on the "
                  "out-of-fold predictions (every training image once); the test split is "
                  "predicted by {tested_by}, and the leaderboard above scores that. Two "
                  "validation numbers differ on purpose: the leaderboard's validation column "
                  "is {primary} on all out-of-fold predictions pooled (every training image "
                  "once), the mean below averages each fold's own value.</p>{warning}"
                  "<table><thead><tr><th>model</th><th>{primary} mean [CI]</th>"
                  "<th>per fold</th><th>vs recommended (difference, p)</th></tr></thead>"
                  "<tbody>{body}</tbody></table>{spread}").format(
        count=count, again=again, primary=primary, level=display.level(board.confidence),
        tested_by=tested_by, warning=warning, body=join(body),
        spread=page.plot(charts.fold_spread(rows, primary, run.colour))))


def _below_every_fold(row: LeaderboardRow, primary: str) -> str | None:
    """'model (0.81 on test; folds 0.86–0.90)' when the test score is worse than every
    fold's validation score, else None."""
    assert row.folds is not None
    values = [v for v in row.folds.values if v is not None]
    entry = row.metrics.get(primary)
    tested_value = entry.value if entry else None
    if not values or tested_value is None:
        return None
    higher = METRICS.get(primary).higher_is_better
    if tested_value < min(values) if higher else tested_value > max(values):
        return (f"{row.model} ({number(tested_value)} on test; folds "
                f"{number(min(values))}–{number(max(values))})")
    return None
