"""Evaluate every model of a run folder from its saved predictions, and write the
leaderboard (`leaderboard.csv`, `.md`, `.json`), `comparison.json` and each model's
`evaluation.json`. Needs no model weights: `visionbench evaluate RUN_DIR` reruns it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from visionbench.errors import UserError
from visionbench.evaluate.ensemble import write_ensembles
from visionbench.evaluate.evaluation import (
    ModelEvaluation,
    applicable_metrics,
    compare_models,
    evaluate_model,
)
from visionbench.evaluate.metrics import METRICS, compute
from visionbench.evaluate.predictions import Predictions, read_predictions
from visionbench.evaluate.statistics import bootstrap_weights
from visionbench.fileio import write_json, write_text
from visionbench.schemas.evaluate import EvaluateConfig

COLUMNS_AFTER = ("parameters", "epochs", "train_seconds", "mark", "error")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def evaluate_folder(folder: Path, settings: EvaluateConfig, models: list[str]
                    ) -> dict[str, Any]:
    """Evaluate `models` of the run in `folder`, and the ensembles `settings` names whose
    members are all among them and finished; returns the leaderboard as a dict."""
    data = _read_json(folder / "data.json")
    classes, group = data["classes"], data.get("positive_group")
    wanted = {name: members for name, members in settings.ensembles.items()
              if set(members) <= set(models)}
    models = [*models, *write_ensembles(folder, wanted, classes)]
    outcomes = {}
    for name in models:
        path = folder / name / "metrics.json"
        outcomes[name] = _read_json(path) if path.is_file() else {
            "model": name, "status": "not run"}
    predictions: dict[str, Predictions] = {}
    validation: dict[str, Predictions | None] = {}
    for name, outcome in outcomes.items():
        test_file = folder / name / "predictions.csv"
        if outcome.get("status") == "ok" and test_file.is_file():
            predictions[name] = read_predictions(test_file, classes)
            val_file = folder / name / "predictions_val.csv"
            validation[name] = read_predictions(val_file, classes) if val_file.is_file() else None
    weights = None
    if predictions and settings.bootstrap:
        reference = next(iter(predictions.values()))
        for name, other in predictions.items():
            if other.ids != reference.ids:
                raise UserError(f"{name}'s predictions are for other test images than "
                                f"{next(iter(predictions))}'s: evaluate them in separate runs")
        weights = bootstrap_weights(reference.y_true, settings.bootstrap, settings.seed)
    evaluations: dict[str, ModelEvaluation] = {}
    for name, test in predictions.items():
        evaluations[name] = evaluate_model(test, classes, settings, val=validation[name],
                                           group=group, weights=weights)
        leaked = set(data.get("duplicates", {}).get("test_duplicates_of_training", []))
        if leaked:
            evaluations[name].summary["clean_test"] = clean_test(test, leaked, classes,
                                                                 settings)
        repeats = sorted((folder / name / "repeats").glob("*/predictions.csv"))
        if repeats:
            evaluations[name].summary["repeats"] = repeat_statistics(
                [test, *(read_predictions(path, classes) for path in repeats)], settings)
        write_json(folder / name / "evaluation.json", evaluations[name].summary)
    comparison = compare_models(evaluations, predictions, classes, settings)
    write_json(folder / "comparison.json", comparison)
    board = _leaderboard(outcomes, evaluations, comparison, settings)
    write_leaderboard(folder, board)
    return board


def clean_test(test: Predictions, leaked: set[str], classes: list[str],
               settings: EvaluateConfig) -> dict[str, Any]:
    """Headline metrics on the test images that do not duplicate a training image.

    A class can lose every test image to the duplicates: its recall is then undefined
    (None), not 0, and `support` says how many images each class kept.
    """
    keep = np.array([image_id not in leaked for image_id in test.ids])
    subset = Predictions([i for i, k in zip(test.ids, keep, strict=True) if k],
                         test.y_true[keep], test.prob[keep])
    weights = (bootstrap_weights(subset.y_true, settings.bootstrap, settings.seed)
               if settings.bootstrap and len(subset.y_true) else None)
    found = evaluate_model(subset, classes, settings, weights=weights).summary
    support = {c: int((subset.y_true == i).sum()) for i, c in enumerate(classes)}
    return {"images": int(keep.sum()), "removed": int((~keep).sum()),
            "metrics": found["metrics"], "support": support,
            "recall": {c: found["per_class"][c]["recall"] if support[c] else None
                       for c in classes}}


def repeat_statistics(runs: list[Predictions], settings: EvaluateConfig) -> dict[str, Any]:
    """Mean and sample standard deviation of each headline metric across training repeats."""
    names = applicable_metrics(settings.metrics, runs[0].prob.shape[1])
    values = {n: [] for n in names}
    for run in runs:
        for n, v in compute(names, run.y_true, run.prob).items():
            values[n].append(float(v[0]))
    return {
        "count": len(runs),
        "metrics": {n: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)),
                        "values": v} for n, v in values.items()},
    }


def _leaderboard(outcomes: dict[str, dict[str, Any]], evaluations: dict[str, ModelEvaluation],
                 comparison: dict[str, Any], settings: EvaluateConfig) -> dict[str, Any]:
    primary = METRICS.get(settings.primary_metric)
    rows = []
    for name, outcome in outcomes.items():
        row: dict[str, Any] = {"model": name, "status": outcome.get("status", "failed")}
        if name in evaluations:
            summary = evaluations[name].summary
            row["metrics"] = summary["metrics"]
            clinical = summary.get("clinical", {}).get("argmax")
            if clinical:
                row["missed_positives"] = clinical["missed_positives"]["value"]
            row["notes"] = summary["notes"]
            if "clean_test" in summary:
                row["clean_test"] = {"images": summary["clean_test"]["images"],
                                     **summary["clean_test"]["metrics"][primary.name]}
            if "repeats" in summary:
                row["repeats"] = {"count": summary["repeats"]["count"],
                                  **summary["repeats"]["metrics"][primary.name]}
        row["parameters"] = outcome.get("parameters")
        row["epochs"] = outcome.get("epochs")
        row["train_seconds"] = outcome.get("timing", {}).get("train_seconds")
        row["mark"] = comparison["marks"].get(name, "")
        row["error"] = outcome.get("error", "")
        rows.append(row)
    sign = 1 if primary.higher_is_better else -1

    def key(row: dict[str, Any]) -> tuple[bool, float]:
        value = row.get("metrics", {}).get(primary.name, {}).get("value")
        return (value is None, -sign * value if value is not None else 0.0)

    rows.sort(key=key)
    return {"primary_metric": primary.name, "confidence": settings.confidence,
            "alpha": settings.alpha,
            "metrics": [m for m in settings.metrics
                        if any(m in r.get("metrics", {}) for r in rows)],
            "best": comparison["best"], "rows": rows}


def _cell(entry: dict[str, float] | None) -> str:
    if not entry:
        return "–"
    text = f"{entry['value']:.4f}"
    if "low" in entry:
        text += f" [{entry['low']:.4f}, {entry['high']:.4f}]"
    return text


def write_leaderboard(folder: Path, board: dict[str, Any]) -> None:
    """leaderboard.json (everything), .csv (values and interval bounds), .md (readable)."""
    write_json(folder / "leaderboard.json", board)
    metrics = board["metrics"]
    header = ["model", "status"]
    for m in metrics:
        header += [m, f"{m}_low", f"{m}_high"]
    header += ["missed_positives", "repeats", "repeats_mean", "repeats_std", *COLUMNS_AFTER]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in board["rows"]:
        values: list[Any] = [row["model"], row["status"]]
        for m in metrics:
            entry = row.get("metrics", {}).get(m, {})
            values += [entry.get("value", ""), entry.get("low", ""), entry.get("high", "")]
        values.append(row.get("missed_positives", ""))
        spread = row.get("repeats", {})
        values += [spread.get("count", ""), spread.get("mean", ""), spread.get("std", "")]
        values += [row.get(c) if row.get(c) is not None else "" for c in COLUMNS_AFTER]
        writer.writerow(values)
    write_text(folder / "leaderboard.csv", buffer.getvalue())
    shown = [board["primary_metric"]] + [m for m in ("accuracy", "balanced_accuracy",
                                                     "f1_macro", "roc_auc_macro", "log_loss")
                                         if m in metrics and m != board["primary_metric"]]
    level = round(board["confidence"] * 100)
    lines = [f"Ranked by {board['primary_metric']}; brackets: {level} % bootstrap intervals; "
             "mark: paired test against the best model.", "",
             "| model | status | " + " | ".join(shown) + " | missed positives | parameters | "
             "train s | mark |",
             "|" + "---|" * (len(shown) + 6)]
    repeated = any("repeats" in row for row in board["rows"])
    if repeated:
        lines[2] = lines[2].replace(" | missed positives", f" | {shown[0]} over seeds (mean ± sd)"
                                    " | missed positives")
        lines[3] += "---|"
    for row in board["rows"]:
        cells = [_cell(row.get("metrics", {}).get(m)) for m in shown]
        if repeated:
            spread = row.get("repeats")
            cells.append(f"{spread['mean']:.4f} ± {spread['std']:.4f} (n={spread['count']})"
                         if spread else "–")
        missed = row.get("missed_positives")
        lines.append(
            f"| {row['model']} | {row['status']} | " + " | ".join(cells)
            + f" | {'–' if missed is None else int(missed)} | {row.get('parameters') or '–'} | "
            f"{'–' if row.get('train_seconds') is None else round(row['train_seconds'], 1)} | "
            f"{row['mark'] or row['error'][:80]} |"
        )
    write_text(folder / "leaderboard.md", "\n".join(lines) + "\n")
