"""Image quality: cleanvision's issues per split and class, with examples, and each model's
accuracy on the test images that have each issue."""

from __future__ import annotations

from visionbench import display
from visionbench.data.quality import QUALITY_ISSUES, quality_chart
from visionbench.report.markup import Html, join
from visionbench.report.page import Page
from visionbench.report.pictures import inline_picture
from visionbench.report.run import SECTIONS, Run
from visionbench.rundir.documents import Segments

SPLITS = ("train", "val", "test")


@SECTIONS.register("08-quality")
def quality_section(page: Page, run: Run) -> None:
    """The issues' table and examples (nothing when the inspection found none)."""
    quality = run.inspection.quality if run.inspection else None
    issues = {name: issue for name, issue in (quality.issues.items() if quality else [])
              if issue.images}
    if quality is None or not issues:
        return
    page.section("quality", "Image quality")
    # An "issue" every image has is a property of the dataset: said once, not scored.
    everywhere = [issue.meaning for issue in issues.values() if issue.images == quality.images]
    if everywhere:
        page.add(Html("<p>Every image: {}.</p>").format(", ".join(everywhere)))
    issues = {name: issue for name, issue in issues.items() if issue.images < quality.images}
    if not issues:
        return
    segments = {row.model: document for row in run.board.rows
                if (document := run.folder.model(row.model).read(Segments)) is not None}
    page.add(Html('<p class="muted">Checked on all {:,} images: cleanvision\'s checks (too '
                  "dark, too light, blurry, low information, odd source size or aspect ratio, "
                  "stored as grey), given the decoded images and the files' own sizes and "
                  "modes, and grey content stored as colour. An image may have several. Per "
                  "model: accuracy on the test images with the issue, and whether it is "
                  "significantly below the rest (Fisher exact, Holm-corrected).</p>").format(
        quality.images))
    splits = [split for split in SPLITS if any(split in issue.counts for issue in issues.values())]
    heads = join(Html("<th>{}</th>").format(split) for split in splits)
    heads += join(Html("<th>{}: test accuracy</th>").format(model) for model in segments)
    rows = []
    for name, issue in issues.items():
        cells = join(Html("<td>{:,}</td>").format(sum(issue.counts.get(split, {}).values()))
                     for split in splits)
        for document in segments.values():
            row = next((r for r in document.quality if r.property == name), None)
            cells += (Html("<td>–</td>") if row is None else
                      Html("<td>{}{}</td>").format(display.interval(row.accuracy, 3),
                                                  Html(" <b>weak</b>") if row.weak else ""))
        by_class = "; ".join(f"{split}: " + ", ".join(f"{label} {count:,}"
                                                      for label, count in counts.items())
                             for split, counts in issue.counts.items())
        rows.append(Html('<tr><td>{}<br><span class="muted">{}</span></td><td>{:,}</td>{}'
                         "</tr>").format(issue.meaning, by_class, issue.images, cells))
    page.add(Html("<table><thead><tr><th>issue</th><th>images</th>{}</tr></thead>"
                  "<tbody>{}</tbody></table>").format(heads, join(rows)))
    for name, issue in issues.items():
        # The file is named by visionbench from a known issue, never by the document.
        if issue.picture and name in QUALITY_ISSUES:
            page.add(Html("<h3>{}: examples</h3>{}").format(
                issue.meaning, inline_picture(quality_chart(run.folder.data_dir, name),
                                              issue.meaning)))
