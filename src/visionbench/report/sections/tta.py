"""Test-time augmentation, under the leaderboard: each `<model>+tta` row against its plain
model on the same test images."""

from __future__ import annotations

from visionbench import display
from visionbench.report.markup import Html, join
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run


@SECTIONS.register("03-tta")
def tta_section(page: Page, run: Run) -> None:
    """The paired difference, its interval and p-values per TTA row (nothing without such
    rows)."""
    gains = run.comparison.tta
    if not gains or not run.any_trained:
        return
    body = []
    for gain in gains:
        difference = ("–" if gain.difference is None else
                      f"{gain.difference:+.4f} [{gain.low:+.4f}, {gain.high:+.4f}]")
        body.append(Html("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                         "<td>{}</td></tr>").format(
            gain.model, gain.against, ", ".join(gain.views), difference,
            "–" if gain.p_value is None else display.p_value(gain.p_value),
            display.p_value(gain.mcnemar_p)))
    page.add(Html('<h3 id="tta">Test-time augmentation</h3>'
                  '<p class="muted">Each model\'s probabilities averaged over views of every '
                  "image, against the plain model on the same test images: the "
                  "paired difference in {metric} with its {level} paired bootstrap interval "
                  "and p-value, and McNemar's test on the images each gets right. Whether it is "
                  "used is decided like any choice, on validation (the recommendation).</p>"
                  "<table><thead><tr><th>with TTA</th><th>plain</th><th>views</th>"
                  "<th>{metric} difference [CI]</th><th>p (bootstrap)</th><th>p (McNemar)</th>"
                  "</tr></thead><tbody>{body}</tbody></table>").format(
        metric=gains[0].metric, level=display.level(run.board.confidence), body=join(body)))
