"""The sweep, under the leaderboard: how many trials, the best one (now a model of the run),
the search's progress, the settings' importance and every trial's settings against its
score."""

from __future__ import annotations

from collections import Counter
from typing import Any

from visionbench.report import charts
from visionbench.report.markup import Html, join, number
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run
from visionbench.rundir.documents import Sweep


@SECTIONS.register("05-sweep")
def sweep_section(page: Page, run: Run) -> None:
    """The sweep's sentence and charts (nothing without a sweep)."""
    sweep = run.folder.read(Sweep)
    if sweep is None or not run.any_trained:
        return
    states = Counter(t.state for t in sweep.trials)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    best = ", ".join(f"{k} {_setting_text(v)}" for k, v in sweep.best.params.items())
    plots = [page.plot(charts.sweep_progress(sweep.trials, sweep.metric))]
    if sweep.importance:
        plots.append(page.plot(charts.sweep_importance(sweep.importance)))
    plots.append(page.plot(charts.sweep_settings(sweep.trials, sweep.metric, sweep.scales)))
    page.add(Html('<h3 id="sweep">Sweep</h3>'
                  '<p class="muted">{trials} trials searched the settings of {model} ({counts}; '
                  "pruner {pruner}), each trained on the training split and scored by {metric} "
                  "on the validation split; the trials were not given the test split. The best, "
                  "trial {number} ({value}: {best}), became model {tuned}, trained again and "
                  "evaluated on test once. Its validation score is the best of {trials} tries, "
                  "so it is optimistic; its test score is not.</p>"
                  '<div class="grid">{plots}</div>').format(
        trials=len(sweep.trials), model=sweep.model, counts=counts, pruner=sweep.pruner,
        metric=sweep.metric, number=sweep.best.number + 1, value=number(sweep.best.value),
        best=best, tuned=sweep.tuned, plots=join(plots)))


def _setting_text(value: Any) -> str:
    """A searched setting's value as the sweep's sentence writes it."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)
