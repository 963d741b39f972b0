"""The leaderboard: every model's test metrics with intervals, ranked, beside the published
references, with the charts that compare them."""

from __future__ import annotations

from visionbench import display
from visionbench.evaluate.leaderboard import recommendation_sentence
from visionbench.evaluate.metrics import METRICS
from visionbench.report import charts
from visionbench.report.markup import Html, breakable, interval_cell, join, number
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run


@SECTIONS.register("02-leaderboard")
def leaderboard_section(page: Page, run: Run) -> None:
    """The sortable table (test metrics, validation, size, time, the paired test against
    the recommended model), the references, and the charts."""
    board, colour = run.board, run.colour
    primary = board.primary_metric
    page.section("leaderboard", "Leaderboard")
    shown = board.shown
    body = []
    for row in board.rows:
        label = Html("{}{}").format(row.model, Html(' <span class="muted">(best on test)</span>')
                                    if row.model == board.test_best else "")
        body.append(Html('<tr><td><span class="swatch" style="background:{}"></span>{}</td>'
                         "<td>{}</td>{}<td>{}</td><td>{}</td>"
                         '<td data-v="{}">{}</td><td>{}</td><td>{}</td></tr>').format(
            colour[row.model], label, row.status.value,
            join(interval_cell(row.metrics.get(m)) for m in shown),
            number(row.validation), number(row.missed_positives, 0), row.parameters or 0,
            number(row.parameters), number(row.train_seconds, 1), row.mark or row.error))
    for name, reference in board.references.items():
        cells = join(Html("<td>{}</td>").format(number(reference.metrics.get(m)))
                     for m in shown)
        body.append(Html('<tr class="reference"><td>{}</td><td>reference</td>{}<td>–</td>'
                         "<td>–</td><td>–</td><td>–</td><td>{}</td></tr>").format(
            name, cells, reference.source))
    page.add(Html('<p class="muted">Click a column to sort. Ranked by test {primary}, a '
                  "description: the recommendation is made on validation ({sentence}) Brackets "
                  "are {level} stratified bootstrap intervals on the test split; the last "
                  "column is the paired test on test against the recommended model.</p>"
                  '<div class="scroll"><table class="sortable"><thead><tr><th>model</th>'
                  "<th>status</th>{head}<th>validation {primary_head}</th>"
                  "<th>missed +</th><th>parameters</th><th>train s</th>"
                  "<th>vs recommended</th></tr></thead><tbody>{body}</tbody></table></div>"
                  '<p class="muted">All metrics of every model, with intervals, are in '
                  "leaderboard.csv and each model's evaluation.json.</p>{references}").format(
        primary=primary, sentence=recommendation_sentence(board),
        level=display.level(board.confidence),
        head=join(Html("<th>{}</th>").format(breakable(m)) for m in shown),
        primary_head=breakable(primary), body=join(body), references=_references(run)))
    if not run.any_trained:
        return  # every model failed: the sentence above says why; no chart has a bar
    bars = [m for m in shown if METRICS.get(m).share]
    rows = board.rows
    plots = [page.plot(charts.metric_bars(rows, bars, colour, board.confidence)),
             page.plot(charts.accuracy_vs_time(rows, primary, colour,
                                               METRICS.get(primary).bounds))]
    if len(run.evaluations) > 1:
        plots.append(page.plot(charts.significance_matrix(run.comparison,
                                                          list(run.evaluations))))
    page.add(Html('<div class="grid">{}</div>').format(join(plots)))


def _references(run: Run) -> Html:
    """Every model against each reference: the verdict per metric, and for accuracy the
    one-sided exact binomial p-values."""
    references = run.comparison.references
    if not references:
        return Html()
    tables = []
    for name, reference in references.items():
        metrics = list(reference.metrics)
        head = join(Html("<th>{} {}</th>").format(breakable(m),
                                                 display.number(reference.metrics[m]))
                    for m in metrics)
        rows = []
        for model, tests in reference.models.items():
            cells = []
            for metric in metrics:
                test = tests.get(metric)
                if test is None:
                    cells.append(Html("<td>–</td>"))
                    continue
                text = test.verdict
                if test.p_greater is not None:
                    text += (f" (p better {display.p_value(test.p_greater)}, p worse "
                             f"{display.p_value(test.p_less)})")
                cells.append(Html("<td>{}</td>").format(text))
            rows.append(Html("<tr><td>{}</td>{}</tr>").format(model, join(cells)))
        source = Html(" ({})").format(reference.source) if reference.source else ""
        tables.append(Html("<h3>Against {}{}</h3><table><thead><tr><th>model</th>{}</tr>"
                           "</thead><tbody>{}</tbody></table>").format(
            name, source, head, join(rows)))
    return Html('<p class="muted">Only a reference\'s numbers are known, not its predictions: '
                "accuracy is tested with a one-sided exact binomial test on this test split's "
                "size; for the other metrics the reference is placed against the model's "
                "bootstrap interval.</p>{}").format(join(tables))
