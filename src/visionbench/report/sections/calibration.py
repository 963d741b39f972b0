"""Acting on a model's probabilities: temperature scaling and conformal prediction sets,
part of each model's section."""

from __future__ import annotations

from visionbench.report.markup import Html, join, number
from visionbench.rundir.documents import ConformalSummary, TemperatureScaling


def temperature_table(scaling: TemperatureScaling) -> Html:
    """Temperature scaling: the fitted temperature and calibration before and after."""
    rows = join(Html("<tr><td>{}</td><td>{}</td><td>{}</td></tr>").format(
        name.replace("_", " "), number(values.before), number(values.after))
        for name, values in scaling.test.items())
    nll = scaling.validation_nll
    return Html("<h3>Calibration</h3>"
                "<p>Temperature scaling: every logit divided by <b>{:.3f}</b>, "
                "fitted on the {} validation images (their negative "
                "log-likelihood {:.4f} → {:.4f}). It never changes the "
                "predicted class; predict returns the calibrated probabilities. On test:</p>"
                "<table><thead><tr><th>metric</th><th>as trained</th><th>calibrated</th></tr>"
                "</thead><tbody>{}</tbody></table>").format(
        scaling.value, scaling.validation_images, nll.before, nll.after, rows)


def conformal_table(sets: ConformalSummary) -> Html:
    """Conformal prediction sets: coverage on test against the target, sizes, per class."""
    target = sets.coverage_target
    rows = join(Html("<tr><td>{}</td><td>{} [{}, {}]</td><td>{}</td><td>{}</td></tr>").format(
        name, number(row.coverage, 3), number(row.low, 3), number(row.high, 3), row.images,
        "below target" if row.below_target else "")
        for name, row in sets.per_class.items())
    sizes = ", ".join(f"{count} of size {size}" for size, count in sets.set_sizes.items()
                      if count)
    flagged = sets.flagged
    warning = (Html('<div class="warn">coverage of {} is below the {:.0%} target by more than '
                    "the randomness of the calibration and test images explains "
                    "(beta-binomial, corrected for the number of classes): the sets are "
                    "reliable on average, not for this class</div>").format(
        ", ".join(flagged), target) if flagged else Html())
    return Html("<h3>Prediction sets</h3>"
                "<p>Split conformal sets ({} score) for {:.0%} coverage, calibrated on {} "
                "validation images: on test they held the true class for <b>{}</b> of images "
                "[{}, {}], with {} classes on average ({}). "
                "The guarantee holds on average over images, not for each class:</p>"
                "<table><thead><tr><th>class</th><th>coverage [CI]</th><th>images</th>"
                "<th></th></tr></thead><tbody>{}</tbody></table>{}").format(
        sets.score.upper(), target, sets.calibration_images, number(sets.coverage, 3),
        number(sets.low, 3), number(sets.high, 3), number(sets.mean_set_size, 2), sizes, rows,
        warning)
