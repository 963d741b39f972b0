"""Weak segments: where each model does worse, as bins of image properties whose test
accuracy is significantly below the rest."""

from __future__ import annotations

from visionbench import display
from visionbench.report.markup import Html, join
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run
from visionbench.rundir.documents import SegmentRow, Segments


@SECTIONS.register("11-weak-segments")
def weak_segments_section(page: Page, run: Run) -> None:
    """How the bins were cut and tested, and every weak bin of every model (nothing when
    the run measured none)."""
    documents = {row.model: document for row in run.board.rows
                 if (document := run.folder.model(row.model).read(Segments)) is not None}
    if not documents:
        return
    page.section("weak-segments", "Weak segments")
    first = next(iter(documents.values()))
    page.add(Html(
        '<p class="muted">Each image property is cut into {} bins at the quartiles of training '
        "images (never test); a bin is weak when its test accuracy is significantly below the "
        "rest of the test split (one-sided Fisher exact test, Holm-corrected over the {} bins "
        "tried per model, alpha {:g}). Intervals: exact for accuracy, bootstrap for {}. Every "
        "bin is in each model's segments.json.</p>").format(
        first.bins, len(first.rows), first.alpha, first.primary_metric))
    headline = first.primary_metric != "accuracy"
    rows = [Html("<tr><td>{}</td><td>{}</td><td>{:,}</td><td>{}</td><td>{}</td>{}"
                 "<td>{}</td></tr>").format(
                model, _bin_name(row), row.images, display.interval(row.accuracy, 3),
                display.interval(document.accuracy, 3),
                Html("<td>{}</td>").format(display.interval(row.primary, 3)) if headline
                else "", display.p_value(row.adjusted))
            for model, document in documents.items() for row in document.rows if row.weak]
    if not rows:
        page.add(Html("<p>No bin of any property is significantly weaker than the rest of the "
                      "test split, for any model.</p>"))
        return
    page.add(Html("<table><thead><tr><th>model</th><th>segment</th><th>test images</th>"
                  "<th>accuracy there</th><th>accuracy on all test</th>{}"
                  "<th>adjusted p</th></tr></thead><tbody>{}</tbody></table>").format(
        Html("<th>{} there</th>").format(first.primary_metric) if headline else "",
        join(rows)))


def _bin_name(row: SegmentRow) -> str:
    """'brightness below 0.31', 'brightness 0.31 to 0.45', 'brightness 0.62 and above'."""
    if row.low is None and row.high is not None:
        return f"{row.property} below {row.high:.3g}"
    if row.high is None and row.low is not None:
        return f"{row.property} {row.low:.3g} and above"
    return f"{row.property} {row.low:.3g} to {row.high:.3g}"
