"""Shift between splits: whether validation and test images come from the training
images' distribution, and which image properties moved."""

from __future__ import annotations

from visionbench import display
from visionbench.report.markup import Html, join, number
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run
from visionbench.rundir.documents import ShiftDocument


@SECTIONS.register("09-shift")
def shift_section(page: Page, run: Run) -> None:
    """The two-sample test per split, then each split's image properties (nothing when the
    run did not test)."""
    document = run.folder.read(ShiftDocument)
    if document is None or not document.splits:
        return
    page.section("shift", "Shift between splits")
    rows = join(Html("<tr><td>{}</td><td>{:,} vs {:,}</td><td>{}</td><td>{}</td><td>{}</td>"
                     "</tr>").format(
        split, test.images, test.reference_images,
        display.p_value(test.p_value, test.permutations + 1), number(test.auc, 3),
        "shifted" if test.shifted else "no shift found")
        for split, test in document.splits.items())
    page.add(Html(
        '<p class="muted">Each split against a sample of training images (stratified by '
        "class), on a generic embedding ({}): a kernel two-sample test (maximum mean "
        "discrepancy, permutation p-value; shifted below {:g}) and, as its effect size, the "
        "cross-validated AUC of a classifier telling the split's images from training images "
        "(0.5: it cannot). A shifted test split means validation scores overstate what test "
        "and real use show. Beside it, simple image properties compared one by one "
        "(Kolmogorov-Smirnov distance, largest first; moved: significant after Bonferroni's "
        "correction and at least {:g}).</p>"
        "<table><thead><tr><th>split</th><th>images vs training</th><th>p</th>"
        "<th>classifier AUC</th><th>verdict</th></tr></thead><tbody>{}</tbody></table>").format(
        document.embedding, document.alpha, document.smallest_distance, rows))
    for split, test in document.splits.items():
        cells = join(Html("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                          "<td>{}</td></tr>").format(
            row.name, number(row.distance, 3), display.p_value(row.p_value),
            _quartiles_text(row.reference), _quartiles_text(row.other),
            "moved" if row.moved else "")
            for row in test.properties)
        page.add(Html("<h3>Image properties: {split} against training</h3><table><thead><tr>"
                      "<th>property</th><th>distance</th><th>p</th><th>training median "
                      "[quartiles]</th><th>{split} median [quartiles]</th><th></th></tr>"
                      "</thead><tbody>{cells}</tbody></table>").format(split=split,
                                                                          cells=cells))


def _quartiles_text(values: list[float]) -> Html:
    """'median [low quartile, high quartile]'."""
    low, middle, high = values
    return Html('{:.3g} <span class="muted">[{:.3g}, {:.3g}]</span>').format(middle, low, high)
