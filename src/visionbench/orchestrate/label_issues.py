"""Suspected label errors of a finished run: found from a model's out-of-sample
predictions, written to `data/label_issues.json` with a thumbnail grid of the worst."""

from __future__ import annotations

from pathlib import Path

from visionbench.config import load_config
from visionbench.data.dataset import PreparedData, prepare_data
from visionbench.errors import UserError
from visionbench.evaluate.error_examples import draw_grid
from visionbench.evaluate.label_issues import label_issues
from visionbench.report.build import write_report
from visionbench.rundir.documents import (
    Comparison,
    DataRecord,
    LabelIssues,
    LabelIssuesOfTest,
)
from visionbench.rundir.layout import RunFolder, label_issues_chart
from visionbench.schemas.evaluate import LabelIssuesConfig


def write_label_issues(run: RunFolder, settings: LabelIssuesConfig, data: PreparedData,
                       split: str = "val") -> LabelIssues:
    """Find the label issues of `settings.model` (default: the run's recommended model) on
    its validation or out-of-fold predictions (or, with `split="test"`, on its test
    predictions: a diagnosis of the test labels); write the document and the thumbnails."""
    comparison = run.read(Comparison)
    model = settings.model or (comparison.recommended if comparison else None)
    if model is None:
        raise UserError("label issues: the run recommends no model; name one with "
                        "evaluate.label_issues.model")
    metrics = run.finished(model)
    folder = run.model(model)
    if metrics is None or not folder.has_predictions(split):
        raise UserError(f"label issues: model {model} has no {split} predictions to "
                        "score the labels with")
    record = run.require(DataRecord)
    predictions = folder.read_predictions(split, record.classes, metrics)
    kind = LabelIssuesOfTest if split == "test" else LabelIssues
    source = "test" if split == "test" else "out-of-fold" if record.folds else "validation"
    issues = kind(model=model, source=source, shown=settings.shown,
                 **label_issues(predictions, record.classes))
    run.write(issues)
    shown = issues.issues[:settings.shown]
    if shown:
        draw_grid(data.pictures([row.id for row in shown]),
                  [f"{row.id.rsplit('/', 1)[-1][-24:]}\ngiven {row.given} "
                   f"({row.given_probability:.2f})\nmodel: {row.suggested} "
                   f"({row.suggested_probability:.2f})" for row in shown],
                  label_issues_chart(run.data_dir, split),
                  f"Suspected label errors: {issues.found} of {issues.images_scored} images "
                  f"({issues.source} predictions of {model})")
    return issues


def label_issues_of_run(path: Path, model: str | None = None, split: str = "val"
                        ) -> LabelIssues:
    """`visionbench inspect RUN_DIR`: the label issues of a finished run (of `model`, else
    the config's choice, else the recommended model; of the images scored on validation or
    out of fold, or of `split` test), written into the run folder, whose report is
    rewritten to show them."""
    run = RunFolder(path).check()
    config = load_config(run.config_file)
    settings = (config.evaluate.label_issues or LabelIssuesConfig()).model_copy()
    if model is not None:
        settings.model = model
    issues = write_label_issues(run, settings, prepare_data(config.data), split)
    write_report(run, "quiet")
    return issues
