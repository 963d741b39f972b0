"""Suspected label errors (with `evaluate.label_issues`, or after `visionbench inspect
RUN_DIR`): of the training images, and of the test split when it was asked for."""

from __future__ import annotations

from visionbench.report.markup import Html, join, number
from visionbench.report.page import Page
from visionbench.report.pictures import inline_picture
from visionbench.report.run import SECTIONS, Run
from visionbench.rundir.documents import LabelIssues, LabelIssuesOfTest
from visionbench.rundir.layout import label_issues_chart


@SECTIONS.register("07-label-issues")
def label_issues_section(page: Page, run: Run) -> None:
    """Each split's suspected label errors (nothing when none were looked for)."""
    documents = [(split, document) for kind, split in ((LabelIssues, "val"),
                                                        (LabelIssuesOfTest, "test"))
                 if (document := run.folder.read(kind)) is not None]
    if not documents:
        return
    page.section("label-issues", "Label issues")
    for split, document in documents:
        if split == "test":
            page.add(Html('<h3>Test split</h3><p class="muted">A diagnosis of the test labels '
                          "(asked for with <code>visionbench inspect RUN_DIR --split test"
                          "</code>); nothing in the run is chosen on it.</p>"))
        page.add(_issue_list(run, document, split))


def _issue_list(run: Run, issues: LabelIssues, split: str) -> Html:
    """How many images the model disputes, by pair of classes, the picture, the worst."""
    pairs = join(Html("<tr><td>{}</td><td>{}</td><td>{}</td></tr>").format(
        p.given, p.suggested, p.count) for p in issues.pairs)
    classes = ", ".join(f"{name} {row.issues} of {row.images}"
                        for name, row in issues.by_class.items())
    shown = issues.issues[:issues.shown]
    rows = join(Html("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>").format(
        row.id, row.given, number(row.given_probability, 3), row.suggested,
        number(row.suggested_probability, 3)) for row in shown)
    return Html("<p><b>{}</b> of the {} images scored out of sample ({} predictions of {}) "
                "have a given label the model disputes, by confident learning ({}). Per given "
                "class: {}. They are candidates for a second look, not verdicts: a model's "
                "blind spot looks the same.</p>{}{}{}").format(
        issues.found, issues.images_scored, issues.source, issues.model, issues.method,
        classes,
        Html("<table><thead><tr><th>given</th><th>model says</th><th>images</th></tr>"
             "</thead><tbody>{}</tbody></table>").format(pairs) if pairs else Html(),
        inline_picture(label_issues_chart(run.folder.data_dir, split), "suspected label errors"),
        Html('<h3>The {} most severe</h3><table class="sortable"><thead><tr>'
             "<th>image</th><th>given</th><th>p(given)</th><th>model says</th>"
             "<th>p</th></tr></thead><tbody>{}</tbody></table>"
             '<p class="muted">Every issue is in data/label_issues.json.</p>').format(
            len(shown), rows) if shown else Html())
