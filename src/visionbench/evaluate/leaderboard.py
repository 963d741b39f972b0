"""Evaluate every model of a run folder from its saved predictions, and write the
leaderboard (`leaderboard.csv`, `.md`, `.json`), `comparison.json` and each model's
`evaluation.json`. Needs no model weights: `visionbench evaluate RUN_DIR` reruns it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from visionbench import csvcells, display
from visionbench.errors import UserError
from visionbench.evaluate.ensemble import write_ensembles
from visionbench.evaluate.evaluation import (
    ModelEvaluation,
    applicable_metrics,
    compare_models,
    evaluate_model,
    paired_gain,
)
from visionbench.evaluate.metrics import METRICS, compute
from visionbench.evaluate.references import against_references
from visionbench.evaluate.selection import UNKNOWN, recommend
from visionbench.evaluate.statistics import (
    bootstrap_weights,
    corrected_interval,
    corrected_resampled_t,
)
from visionbench.evaluate.tta import tta_name
from visionbench.rundir.documents import (
    CleanTest,
    Comparison,
    DataRecord,
    FoldComparison,
    FoldMetric,
    FoldStatistics,
    HeadlineOnCleanTest,
    HeadlineOverFolds,
    HeadlineOverSeeds,
    Leaderboard,
    LeaderboardRow,
    ModelMetrics,
    ReferenceRow,
    RepeatStatistics,
    Spread,
    Status,
    Sweep,
    TtaGain,
)
from visionbench.rundir.layout import ModelFolder, RunFolder
from visionbench.rundir.predictions import Predictions
from visionbench.runtime.progress import Steps
from visionbench.schemas.evaluate import EvaluateConfig

COLUMNS_AFTER = ("parameters", "epochs", "train_seconds", "mark", "error")


def evaluate_folder(run: RunFolder, settings: EvaluateConfig, models: list[str],
                    progress: str = "quiet") -> Leaderboard:
    """Evaluate `models` of `run`, their test-time augmentation rows (with `settings.tta`),
    and the ensembles `settings` names whose members are all among them and finished;
    returns the leaderboard. Each model's bootstrap, then the comparisons, are shown as
    `progress` says."""
    data = run.require(DataRecord)
    classes = data.classes
    wanted = {name: members for name, members in settings.ensembles.items()
              if set(members) <= set(models)}
    augmented = ([tta_name(name) for name in models
                  if (settings.tta.models is None or name in settings.tta.models)
                  and run.model(tta_name(name)).has(ModelMetrics)]
                 if settings.tta is not None else [])
    models = [*models, *augmented, *write_ensembles(run, wanted, classes)]
    outcomes = {name: run.model(name).read(ModelMetrics)
                or ModelMetrics(model=name, status=Status.NOT_RUN) for name in models}
    predictions: dict[str, Predictions] = {}
    validation: dict[str, Predictions | None] = {}
    for name, outcome in outcomes.items():
        folder = run.model(name)
        if outcome.ok and folder.has_predictions("test"):
            predictions[name] = _complete(folder, "test", classes, data, outcome)
            validation[name] = (_complete(folder, "val", classes, data, outcome)
                                if folder.has_predictions("val") else None)
    weights = None
    if predictions and settings.bootstrap:
        reference = next(iter(predictions.values()))
        for name, other in predictions.items():
            if other.ids != reference.ids:
                raise UserError(f"{name}'s predictions are for other test images than "
                                f"{next(iter(predictions))}'s: evaluate them in separate runs")
        weights = bootstrap_weights(reference.y_true, settings.bootstrap, settings.seed)
    with Steps("evaluation", len(predictions) + 1, progress) as steps:
        evaluations = _evaluations(run, data, predictions, validation, settings, weights,
                                   steps.step)
        steps.step("comparing the models")
        board = _compare(run, classes, outcomes, evaluations, predictions, validation,
                         augmented, settings)
    write_leaderboard(run, board)
    return board


def _evaluations(run: RunFolder, data: DataRecord, predictions: dict[str, Predictions],
                 validation: dict[str, Predictions | None], settings: EvaluateConfig,
                 weights: np.ndarray | None, step: Callable[[str], None]
                 ) -> dict[str, ModelEvaluation]:
    """Every metric of each model with test predictions (bootstrap intervals with
    `weights`), written as its evaluation.json."""
    classes, group = data.classes, data.positive_group
    evaluations: dict[str, ModelEvaluation] = {}
    for name, test in predictions.items():
        step(f"model {name}")
        evaluations[name] = evaluate_model(test, classes, settings, val=validation[name],
                                           group=group, weights=weights)
        document = evaluations[name].document
        leaked = data.test_duplicates_of_training
        if leaked:
            document.clean_test = clean_test(test, leaked, classes, settings)
        folds = run.model(name).repeated_folds()
        if folds:
            document.folds = fold_statistics(
                [fold.read_predictions("val", classes) for fold in folds], settings,
                len(run.model(name).folds()))
        repeats = run.model(name).repeats()
        if repeats:
            document.repeats = repeat_statistics(
                [test, *(repeat.read_predictions("test", classes) for repeat in repeats)],
                settings)
        run.model(name).write(document)
    return evaluations


def _compare(run: RunFolder, classes: list[str], outcomes: dict[str, ModelMetrics],
             evaluations: dict[str, ModelEvaluation], predictions: dict[str, Predictions],
             validation: dict[str, Predictions | None], augmented: list[str],
             settings: EvaluateConfig) -> Leaderboard:
    """The recommendation on validation and the comparisons on test, written as
    comparison.json; returns the leaderboard they give."""
    sizes = {name: outcome.parameters or UNKNOWN for name, outcome in outcomes.items()}
    sweep = run.read(Sweep)
    selection = recommend({name: validation[name] for name in predictions}, sizes, settings,
                          tuned={sweep.tuned} if sweep is not None else set())
    comparison = compare_models(evaluations, predictions, classes, settings, selection)
    comparison.references = against_references(
        {name: evaluated.document for name, evaluated in evaluations.items()}, settings.references,
        settings.alpha)
    comparison.tta = [TtaGain(**gain.model_dump(exclude_unset=True),
                              views=outcomes[name].tta.views)
                      for name in augmented if name in evaluations
                      and (source := outcomes[name].tta) is not None
                      and (gain := paired_gain(comparison.pairs, name, source.model,
                                               settings.primary_metric)) is not None]
    comparison.folds = fold_comparisons(
        {name: evaluated.document.folds for name, evaluated in evaluations.items()
         if evaluated.document.folds is not None}, selection.recommended, settings)
    run.write(comparison)
    return _leaderboard(outcomes, evaluations, comparison, settings)


def _complete(folder: ModelFolder, split: str, classes: list[str], data: DataRecord,
              metrics: ModelMetrics) -> Predictions:
    """A model's predictions of `split`, which must cover every image the data record
    counts there (a file cut short would score the rows that are left)."""
    predictions = folder.read_predictions(split, classes, metrics)
    expected = data.totals.get(split)
    if split == "val" and data.folds:
        # Cross-validated: out-of-fold predictions of every training image.
        expected = sum(sum(counts.values()) for counts in data.folds.values())
    if expected is not None and len(predictions.ids) != expected:
        raise UserError(f"{folder.predictions_file(split)} has {len(predictions.ids)} rows "
                        f"but the run's {split} split has {expected} images: the file is cut "
                        f"short or from another run; rerun model {folder.path.name} (delete "
                        "its folder and resume the run)")
    return predictions


def clean_test(test: Predictions, leaked: set[str], classes: list[str],
               settings: EvaluateConfig) -> CleanTest:
    """Headline metrics on the test images that do not duplicate a training image.

    A class can lose every test image to the duplicates: its recall is then undefined
    (None), not 0, and `support` says how many images each class kept.
    """
    keep = np.array([image_id not in leaked for image_id in test.ids])
    subset = Predictions([i for i, k in zip(test.ids, keep, strict=True) if k],
                         test.y_true[keep], test.prob[keep])
    weights = (bootstrap_weights(subset.y_true, settings.bootstrap, settings.seed)
               if settings.bootstrap and len(subset.y_true) else None)
    evaluation = evaluate_model(subset, classes, settings, weights=weights).document
    support = {c: int((subset.y_true == i).sum()) for i, c in enumerate(classes)}
    return CleanTest(images=int(keep.sum()), removed=int((~keep).sum()),
                     metrics=evaluation.metrics, support=support,
                     recall={c: evaluation.per_class[c].recall if support[c] else None
                             for c in classes})


def repeat_statistics(runs: list[Predictions], settings: EvaluateConfig) -> RepeatStatistics:
    """Mean and sample standard deviation of each headline metric across training repeats."""
    names = applicable_metrics(settings.metrics, runs[0].prob.shape[1])
    values = {n: [] for n in names}
    for run in runs:
        for n, v in compute(names, run.y_true, run.prob).items():
            values[n].append(float(v[0]))
    return RepeatStatistics(count=len(runs), metrics={
        n: Spread(mean=float(np.mean(v)), std=float(np.std(v, ddof=1)), values=v)
        for n, v in values.items()})


def fold_statistics(folds: list[Predictions], settings: EvaluateConfig, per_repeat: int
                    ) -> FoldStatistics:
    """Each applicable metric on each fold's validation predictions (every repeat's folds,
    `per_repeat` at a time), with their mean and a corrected t interval (the folds'
    training sets overlap: Nadeau & Bengio; Bouckaert & Frank for repeats)."""
    names = applicable_metrics(settings.metrics, folds[0].prob.shape[1])
    values: dict[str, list[float]] = {n: [] for n in names}
    for fold in folds:
        for n, v in compute(names, fold.y_true, fold.prob).items():
            values[n].append(float(v[0]))
    test_size = float(np.mean([len(fold.ids) for fold in folds]))
    # A fold trains on the repeat's other folds: every non-test image but its own.
    train_size = sum(len(fold.ids) for fold in folds[:per_repeat]) - test_size
    by_metric = {}
    for n, v in values.items():
        mean, low, high = corrected_interval(np.asarray(v), train_size, test_size,
                                             settings.confidence, METRICS.get(n).bounds)
        by_metric[n] = FoldMetric(mean=mean, low=low, high=high, values=v)
    return FoldStatistics(count=len(folds), repeats=len(folds) // max(per_repeat, 1),
                          train_size=train_size, test_size=test_size, metrics=by_metric)


def fold_comparisons(folds: dict[str, FoldStatistics], recommended: str | None,
                     settings: EvaluateConfig) -> list[FoldComparison]:
    """Every cross-validated model against the recommended one on the primary metric, fold
    by fold: the mean difference and the corrected resampled t-test (Nadeau & Bengio)."""
    if recommended not in folds:
        return []
    primary = settings.primary_metric
    base = folds[recommended]
    comparisons = []
    for name, other in folds.items():
        if name == recommended or other.count != base.count:
            continue
        differences = (np.asarray(other.metrics[primary].values)
                       - np.asarray(base.metrics[primary].values))
        t, p = corrected_resampled_t(differences, base.train_size, base.test_size)
        comparisons.append(FoldComparison(model=name, against=recommended, metric=primary,
                                    difference=float(differences.mean()), t=t, p_value=p,
                                    folds=int(base.count)))
    return comparisons


def _leaderboard(outcomes: dict[str, ModelMetrics], evaluations: dict[str, ModelEvaluation],
                 comparison: Comparison, settings: EvaluateConfig) -> Leaderboard:
    primary = METRICS.get(settings.primary_metric)
    rows = []
    for name, outcome in outcomes.items():
        row: dict[str, Any] = {"model": name, "status": outcome.status}
        if name in evaluations:
            document = evaluations[name].document
            row["metrics"] = document.metrics
            if document.clinical is not None:
                row["missed_positives"] = document.clinical.argmax.missed_positives.value
            row["notes"] = document.notes
            if document.clean_test is not None:
                row["clean_test"] = HeadlineOnCleanTest(
                    images=document.clean_test.images, **document.clean_test
                    .metrics[primary.name].model_dump(exclude_unset=True))
            if document.folds is not None:
                tested = next((c for c in comparison.folds if c.model == name), None)
                row["folds"] = HeadlineOverFolds(
                    count=document.folds.count, repeats=document.folds.repeats,
                    **document.folds.metrics[primary.name].model_dump(),
                    **({} if tested is None else {"p_value": tested.p_value}))
            if document.repeats is not None:
                row["repeats"] = HeadlineOverSeeds(
                    count=document.repeats.count,
                    **document.repeats.metrics[primary.name].model_dump())
        row["validation"] = comparison.selection.values.get(name)
        row["parameters"] = outcome.parameters
        row["epochs"] = outcome.epochs
        row["train_seconds"] = outcome.timing.train_seconds
        row["mark"] = comparison.marks.get(name, "")
        row["error"] = outcome.error or ""
        rows.append(LeaderboardRow.model_validate(row))
    sign = 1 if primary.higher_is_better else -1

    def key(row: LeaderboardRow) -> tuple[bool, float]:
        entry = row.metrics.get(primary.name)
        value = None if entry is None else entry.value
        return (value is None, -sign * value if value is not None else 0.0)

    rows.sort(key=key)
    computed = [m for m in settings.metrics if any(m in r.metrics for r in rows)]
    return Leaderboard(
        primary_metric=primary.name, confidence=settings.confidence, alpha=settings.alpha,
        metrics=computed, headline=headline_metrics(primary.name, settings.headline, computed),
        recommended=comparison.recommended, test_best=comparison.test_best,
        rows=rows,
        references={name: ReferenceRow(source=ref.source, metrics=dict(ref.metrics))
                    for name, ref in settings.references.items()})


def headline_metrics(primary: str, headline: list[str], computed: list[str]) -> list[str]:
    """The metrics tables and charts show: the primary one, then the configured headline
    ones that were computed.

    Example:
        >>> headline_metrics("f1_macro", ["accuracy", "f1_macro", "kappa"], ["accuracy"])
        ['f1_macro', 'accuracy']
    """
    return [primary, *(m for m in headline if m != primary and m in computed)]


def _csv(board: Leaderboard) -> str:
    header = ["model", "status"]
    for m in board.metrics:
        header += [m, f"{m}_low", f"{m}_high"]
    header += ["missed_positives", "repeats", "repeats_mean", "repeats_std", *COLUMNS_AFTER]
    buffer = io.StringIO()
    writer = csvcells.Writer(buffer)
    writer.writerow(header)

    def blank(value: Any) -> Any:
        return "" if value is None else value

    for row in board.rows:
        values: list[Any] = [row.model, row.status.value]
        for m in board.metrics:
            entry = row.metrics.get(m)
            values += ["", "", ""] if entry is None else [
                blank(entry.value), blank(entry.low), blank(entry.high)]
        values.append(blank(row.missed_positives))
        spread = row.repeats
        values += (["", "", ""] if spread is None else [spread.count, spread.mean, spread.std])
        values += [blank(getattr(row, c)) for c in COLUMNS_AFTER]
        writer.writerow(values)
    return buffer.getvalue()


def _markdown(board: Leaderboard) -> str:
    primary = board.primary_metric
    shown = board.shown
    lines = [f"Ranked by test {primary} (a description); {recommendation_sentence(board)} "
             f"Brackets: {display.level(board.confidence)} bootstrap intervals on test; mark: "
             "paired test on test against the recommended model.", "",
             "| model | status | " + " | ".join(shown) + f" | validation {primary} | "
             "missed positives | parameters | train s | mark |",
             "|" + "---|" * (len(shown) + 7)]
    repeated = any(row.repeats for row in board.rows)
    if repeated:
        lines[2] = lines[2].replace(" | missed positives", f" | {shown[0]} over seeds (mean ± sd)"
                                    " | missed positives")
        lines[3] += "---|"
    for row in board.rows:
        cells = [display.interval(row.metrics.get(m), 4, 4) for m in shown]
        if repeated:
            cells.append(_spread(row.repeats, "–"))
        missed = row.missed_positives
        lines.append(
            f"| {row.model} | {row.status.value} | " + " | ".join(cells)
            + f" | {display.number(row.validation)} | {'–' if missed is None else int(missed)} | "
            f"{row.parameters or '–'} | "
            f"{'–' if row.train_seconds is None else round(row.train_seconds, 1)} | "
            f"{row.mark or row.error[:80]} |"
        )
    blank = " | –" * (len(lines[2].split(" | ")) - len(shown) - 2)
    for name, reference in board.references.items():
        cells = [display.number(reference.metrics.get(m)) for m in shown]
        lines.append(f"| {name} | reference | " + " | ".join(cells) + blank + " |")
    return "\n".join(lines) + "\n"


def board_table(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """The leaderboard as a table of text, for the terminal and the app: the column names
    and one row per model, then one per reference (status `reference`). Columns: model,
    status, the primary metric on test with its interval, the other headline metrics, the
    primary metric on validation, the spread over seeds (when repeated), missed positives
    (clinical tasks), parameters, training seconds, and the mark against the recommended
    model (or the error)."""
    primary, others = board.primary_metric, board.shown[1:]
    header = ["model", "status", f"{primary} [{display.level(board.confidence)} CI]", *others,
              f"validation {primary}"]
    repeated = any(row.repeats for row in board.rows)
    folded = any(row.folds for row in board.rows)
    clinical = any(row.missed_positives is not None for row in board.rows)
    header += ["seeds: mean ± sd"] * repeated + [f"folds: {primary} [CI], p"] * folded
    header += ["missed positives"] * clinical
    header += ["parameters", "train s", "vs recommended"]
    rows = []
    for row in board.rows:
        cells = [row.model, row.status.value, display.interval(row.metrics.get(primary))]
        cells += [display.number(getattr(row.metrics.get(m), "value", None)) for m in others]
        cells.append(display.number(row.validation))
        if repeated:
            cells.append(_spread(row.repeats, display.MISSING))
        if folded:
            cells.append(fold_cell(row.folds))
        if clinical:
            missed = row.missed_positives
            cells.append(display.MISSING if missed is None else str(int(missed)))
        cells += [display.MISSING if row.parameters is None else f"{row.parameters:,}",
                  display.MISSING if row.train_seconds is None else f"{row.train_seconds:.1f}",
                  row.mark or row.error]
        rows.append(cells)
    for name, reference in board.references.items():
        values = [display.number(reference.metrics.get(m)) for m in [primary, *others]]
        rows.append([name, "reference", *values,
                     *[display.MISSING] * (len(header) - len(values) - 3), "(reference)"])
    return header, rows


def _spread(spread: HeadlineOverSeeds | None, missing: str) -> str:
    """The primary metric over seeds in one cell: mean ± sd (n)."""
    if spread is None:
        return missing
    return f"{spread.mean:.4f} ± {spread.std:.4f} (n={spread.count})"


def fold_cell(folds: HeadlineOverFolds | None) -> str:
    """A model's cross-validated primary metric in one cell: mean [corrected interval], and
    the corrected resampled t-test's p against the recommended model.

    Example:
        >>> fold_cell(HeadlineOverFolds(count=3, mean=0.85, low=0.65, high=1.0,
        ...                             values=[0.7, 0.85, 1.0], p_value=0.16))
        '0.8500 [0.650, 1.000] (3 folds), p 0.160'
    """
    if not folds:
        return display.MISSING
    shape = (f"{folds.count // folds.repeats} folds × {folds.repeats}" if folds.repeats > 1
             else f"{folds.count} folds")
    text = f"{display.interval(folds.interval)} ({shape})"
    return text + (f", p {display.p_value(folds.p_value)}" if folds.p_value is not None
                   else "")


def recommendation_sentence(board: Leaderboard) -> str:
    """Which model is recommended and on what split it was chosen, in one sentence."""
    if board.recommended is None and board.rows and all(
            row.status != Status.OK for row in board.rows):
        reasons = "; ".join(f"{row.model}: {row.error or row.status.value}" for row in board.rows)
        return (f"every model failed, so none is recommended ({reasons}). Fix the reasons "
                "and run again (`--resume RUN_DIR --retrain NAME` keeps the folder).")
    if board.recommended is None:
        return ("no model is recommended: there are no validation predictions to choose on "
                "(a folder written before visionbench chose on validation: `visionbench "
                "evaluate RUN_DIR` chooses again).")
    test_best = ("it is also the best on test." if board.test_best == board.recommended else
                 f"best on test: {board.test_best} (the maximum of several noisy test scores, "
                 "so optimistic; not a recommendation).")
    return (f"recommended: {board.recommended}, chosen on validation {board.primary_metric}; "
            + test_best)


def write_leaderboard(run: RunFolder, board: Leaderboard) -> None:
    """leaderboard.json (everything), .csv (values and interval bounds), .md (readable)."""
    run.write(board)
    run.write_leaderboard_renderings(_csv(board), _markdown(board))
