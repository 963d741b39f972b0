"""A model's explanation maps with their deletion scores against a random map's: part of
each model's section."""

from __future__ import annotations

from visionbench import display
from visionbench.evaluate.explain import unfaithful_methods
from visionbench.report.markup import Html, join
from visionbench.report.pictures import inline_picture
from visionbench.rundir.documents import Explanations
from visionbench.rundir.layout import ModelFolder


def explanations_block(explanations: Explanations, folder: ModelFolder) -> Html:
    """The deletion scores against the random map's, a warning for the maps that are no
    better than random, and the maps."""
    deletion = explanations.deletion
    unfaithful = unfaithful_methods(deletion)

    def against_random(method: str) -> str:
        if method == "random":
            return "the reference"
        return "no better than random" if method in unfaithful else "better than random"

    cells = join(Html("<tr><td>{}</td><td>{:.3f}</td><td>{}</td></tr>").format(
        method, score, against_random(method)) for method, score in deletion.items())
    warning = Html()
    if unfaithful:
        warning = Html('<div class="warn">Not faithful for this model: {} removes the pixels '
                       "it marks without lowering the model's confidence more than removing "
                       "random pixels does, so those maps do not show what the model uses: do "
                       "not read them as evidence.</div>").format(
            display.names(m.replace("_", " ") for m in unfaithful))
    return Html('<h3>Explanations</h3><p class="muted">Deletion score: mean probability of the '
                "explained class while the most-attributed pixels are removed (lower = the map "
                "finds what the model uses); a method is evidence only if it scores below a "
                "random map. Maps are drawn over the images as the model sees them (its size "
                "and channels).</p><table><thead><tr><th>method</th><th>deletion</th>"
                "<th>against random</th></tr></thead><tbody>{}</tbody></table>{}{}").format(
        cells, warning, inline_picture(folder.picture("explanations"), "explanation maps"))
