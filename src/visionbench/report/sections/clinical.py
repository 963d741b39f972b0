"""The positive reading of a model (sensitivity, specificity, predictive values, missed
positives) at argmax and at the threshold chosen on validation: part of each model's
section, and named in the summary."""

from __future__ import annotations

from visionbench.report.markup import Html, interval_cell, join
from visionbench.rundir.documents import ClinicalReading


def positive_name(clinical: ClinicalReading) -> str:
    """'Positive reading (pneumonia)' or the group's name with its classes, each once."""
    classes = clinical.positive_classes
    group = clinical.group
    if group and [group] != classes:
        return f"Reading '{group}' ({', '.join(classes)})"
    return f"Positive class {', '.join(classes)}"


def clinical_table(clinical: ClinicalReading) -> Html:
    """The positive reading at argmax and at the validation threshold; what is positive and
    where the threshold comes from are said once, above the table."""
    rows = []
    chosen = clinical.chosen_threshold
    readings = [("argmax", clinical.argmax)]
    if clinical.threshold is not None and chosen is not None:
        readings.append((f"threshold {chosen.threshold:.3f}", clinical.threshold))
    for label, values in readings:
        cells = join(interval_cell(getattr(values, key))
                     for key in ("sensitivity", "specificity", "ppv", "npv"))
        rows.append(Html("<tr><td>{}</td>{}<td>{}</td><td>{}</td></tr>").format(
            label, cells, int(values.missed_positives.value), int(values.false_alarms.value)))
    source = Html()
    if chosen:
        source = Html(" The threshold on the positive probability is chosen on the validation "
                      "split only ({}{}).").format(
            chosen.method or "", Html("; {}").format(chosen.note) if chosen.note else "")
    return Html('<h3>Clinical reading</h3><p class="muted">{} read as positive, the rest as '
                "negative.{}</p>"
                "<table><thead><tr><th>decision</th><th>sensitivity</th><th>specificity</th>"
                "<th>PPV</th><th>NPV</th><th>missed positives</th><th>false alarms</th></tr>"
                "</thead><tbody>{}</tbody></table>").format(
        positive_name(clinical), source, join(rows))
