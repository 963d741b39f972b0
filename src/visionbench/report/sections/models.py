"""One section per model: what it is fed, its training curves, confusion, curves,
reliability, robustness, per-class table, clinical reading, calibration, prediction sets,
error pictures and explanations."""

from __future__ import annotations

from visionbench import display
from visionbench.evaluate.robustness import SEVERITY
from visionbench.report import charts
from visionbench.report.markup import Html, join, number
from visionbench.report.page import Page
from visionbench.report.pictures import inline_picture
from visionbench.report.run import SECTIONS, Run
from visionbench.report.sections.calibration import conformal_table, temperature_table
from visionbench.report.sections.clinical import clinical_table
from visionbench.report.sections.explanations import explanations_block
from visionbench.rundir.documents import (
    EvaluationDocument,
    Explanations,
    History,
    LeaderboardRow,
    ModelCard,
    ModelMetrics,
    Robustness,
    Status,
)
from visionbench.rundir.layout import ModelFolder
from visionbench.schemas.inputs import InputSpec

# Beyond this factor an enlarged image is flagged: its extra pixels carry no information.
UPSAMPLING_FLAG = 2.0
PER_CLASS = ("precision", "recall", "specificity", "f1", "support", "tp", "fp", "fn", "auc")
COUNTS = ("support", "tp", "fp", "fn")
ERROR_PICTURES = (("misclassified", "Misclassified"), ("top_losses", "Top losses"),
                  ("error_rate", "Error rate"))


@SECTIONS.register("12-models")
def models_section(page: Page, run: Run) -> None:
    """A section per model, in the leaderboard's order."""
    for row in run.board.rows:
        page.step(f"model {row.model}")
        page.section(f"model-{row.model}", f"Model {row.model}")
        folder = run.folder.model(row.model)
        card = folder.read(ModelCard)
        if card is not None:
            page.add(input_settings(card.input, run))
        metrics = folder.read(ModelMetrics)
        if metrics is not None and metrics.notes:
            page.add(Html('<p class="muted">{}.</p>').format("; ".join(metrics.notes)))
        page.add(_model_section(page, folder, row, run.evaluations.get(row.model),
                                run.data.classes, run.colour[row.model]))


def native_side(run: Run) -> int:
    """The smaller side of the images as the data gave them: the median source size (from
    the inspection) when known, never more than the decoded size."""
    decoded = min(run.data.image_shape)
    stats = run.inspection.image_stats if run.inspection else {}
    medians = [min(split.width.median, split.height.median) for split in stats.values()]
    return int(min(decoded, *medians)) if medians else decoded


def input_settings(spec: InputSpec, run: Run) -> Html:
    """What the model is fed, from its model card, and a flag when that enlarges the images
    more than UPSAMPLING_FLAG times."""
    height, width = spec.size
    norm = ("each image scaled to mean 0 and standard deviation 1" if spec.per_image else
            f"mean {display.names(f'{m:.3f}' for m in spec.mean)}, std "
            f"{display.names(f'{s:.3f}' for s in spec.std)}")
    text = Html('<p class="muted">Input: {}×{} px, {} channel(s), {}; evaluation images reach '
                "the size by {}.</p>").format(
        height, width, spec.channels, norm,
        "a centre crop" if spec.resize == "center_crop" else "stretching")
    native = native_side(run)
    factor = min(height, width) / native if native else 1.0
    if factor > UPSAMPLING_FLAG:
        text += Html('<div class="warn">This model sees {}×{} px made from images of about {} '
                     "px: upsampled {:.1f}×. The added pixels carry no information, and each "
                     "image costs about {:.0f}× the compute of its native size; a backbone "
                     "pretrained on large images may still gain from it, so compare with a "
                     "model at the native size before paying for it.</div>").format(
            height, width, native, factor, factor ** 2)
    return text


def _model_section(page: Page, folder: ModelFolder, row: LeaderboardRow,
                   document: EvaluationDocument | None, classes: list[str], colour: str
                   ) -> Html:
    metrics = folder.read(ModelMetrics)
    if row.status is not Status.OK or document is None or metrics is None:
        return Html('<div class="warn">{}</div>').format(row.error or "not evaluated")
    parts = []
    if metrics.description:
        parts.append(Html("<p>{}</p>").format(metrics.description))
    earlier = folder.earlier_states()
    if earlier:
        kept = ", ".join(f"after epoch {epochs} (in {state.path.name})"
                         for epochs, state in earlier)
        parts.append(Html('<p class="muted">Evaluated after {} epochs (training was '
                          "continued); the evaluations made before are kept: {}.</p>").format(
            metrics.epochs, kept))
    if metrics.stages:
        parts.append(Html('<p class="muted">{}</p>').format("; ".join(
            f"stage {s.stage}: {s.trainable:,} trainable, {s.frozen:,} frozen ({s.rule})"
            for s in metrics.stages)))
    robustness = folder.read(Robustness)
    parts.append(Html('<div class="grid">{}</div>').format(
        join(_plots(page, folder, document, classes, colour, robustness))))
    if (robustness and robustness.corruptions and robustness.images
            and robustness.images < (robustness.test_images or 0)):
        parts.append(Html('<p class="muted">Robustness ran on a stratified sample of {:,} of '
                          "the {:,} test images (evaluate.robustness_images); each accuracy "
                          "under corruption has the exact 95 % binomial interval of that "
                          "sample.</p>").format(robustness.images, robustness.test_images))
    parts.append(_per_class(document))
    if document.clinical:
        parts.append(clinical_table(document.clinical))
    if document.temperature:
        parts.append(temperature_table(document.temperature))
    if document.conformal:
        parts.append(conformal_table(document.conformal))
    for note in document.notes:
        parts.append(Html('<div class="warn">{}</div>').format(note.message))
    for name, caption in ERROR_PICTURES:
        picture = inline_picture(folder.picture(name), caption)
        if picture:
            parts.append(Html("<h3>{}</h3>{}").format(caption, picture))
    explanations = folder.read(Explanations)
    if explanations and explanations.error is None:
        parts.append(explanations_block(explanations, folder))
    elif explanations:
        parts.append(Html('<div class="warn">no explanations: {}</div>').format(
            explanations.error))
    return join(parts)


def _plots(page: Page, folder: ModelFolder, document: EvaluationDocument, classes: list[str],
           colour: str, robustness: Robustness | None) -> list[Html]:
    """The model's charts: training curves, confusion (counts and shares), ROC and PR
    curves, reliability, robustness."""
    plots = []
    history = folder.read(History)
    if history and history.epochs:
        plots += [page.plot(f) for f in charts.training_curves(history, colour)]
    plots.append(page.plot(charts.confusion(document, classes, False)))
    plots.append(page.plot(charts.confusion(document, classes, True)))
    if document.roc:
        # With two classes the curves of the two classes mirror each other: draw the
        # positive one (class 1, or the configured positive group's class).
        drawn = classes if len(classes) != 2 else (
            document.clinical.positive_classes if document.clinical else classes[1:])
        plots.append(page.plot(charts.curves(document, "roc", drawn)))
        plots.append(page.plot(charts.curves(document, "pr", drawn)))
    plots.append(page.plot(charts.reliability(document, colour)))
    if robustness and robustness.corruptions:
        plots.append(page.plot(charts.robustness(robustness, colour, SEVERITY)))
    return plots


def _per_class(document: EvaluationDocument) -> Html:
    """Precision, recall, specificity, F1, counts and AUC of each class, sortable."""
    body = join(Html("<tr><td>{}</td>{}</tr>").format(name, join(
        Html("<td>{}</td>").format(number(getattr(row, stat), 0 if stat in COUNTS else 3))
        for stat in PER_CLASS)) for name, row in document.per_class.items())
    return Html('<h3>Per class</h3><table class="sortable"><thead><tr><th>class</th>{}</tr>'
                "</thead><tbody>{}</tbody></table>").format(
        join(Html("<th>{}</th>").format(stat) for stat in PER_CLASS), body)
