"""The run in MLflow: one parent run (the config's settings, the report, the leaderboard)
and one nested run per model (its settings, a curve per history column by epoch, its test
metrics with their interval bounds, its model card and, when exported, its ONNX export)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import yaml

from visionbench.rundir.documents import (
    EvaluationDocument,
    FoldStatistics,
    History,
    Leaderboard,
    ModelCard,
)
from visionbench.rundir.layout import RunFolder
from visionbench.schemas.tracking import TrackingConfig
from visionbench.track.trackers import TRACKERS, epoch_curves, flatten

SQLITE = "sqlite:///"
ARTIFACTS = "mlflow-artifacts"
# MLflow takes at most 100 parameters and 1,000 metrics per call, values of 6,000 characters.
PARAMS_PER_CALL, METRICS_PER_CALL, VALUE_LENGTH = 100, 1000, 6000


def _local_artifacts(uri: str) -> str | None:
    """Beside a SQLite store, the folder for its artefacts; MLflow would otherwise write them
    into the current folder (`./mlruns`). A server keeps its own (None).

    Example:
        >>> _local_artifacts("sqlite:////runs/x/mlflow.db")
        'file:///runs/x/mlflow-artifacts'
    """
    if not uri.startswith(SQLITE):
        return None
    return (Path(uri.removeprefix(SQLITE)).resolve().parent / ARTIFACTS).as_uri()


def _fold_metrics(folds: FoldStatistics | None, now: int) -> list[Any]:
    """A cross-validated model's metrics: each fold's value (`fold_<metric>`, the fold's
    index as its step) and the mean over folds with its corrected interval
    (`cv_<metric>`, `_low`, `_high`)."""
    from mlflow.entities import Metric

    metrics = []
    for name, summary in (folds.metrics if folds else {}).items():
        metrics += [Metric(f"fold_{name}", float(value), now, step)
                    for step, value in enumerate(summary.values)]
        for suffix, value in (("", summary.mean), ("_low", summary.low),
                              ("_high", summary.high)):
            if value is not None and math.isfinite(value):
                metrics.append(Metric(f"cv_{name}{suffix}", float(value), now, 0))
    return metrics


@TRACKERS.register("mlflow")
def log_to_mlflow(run: RunFolder, settings: TrackingConfig) -> dict[str, Any]:
    """Log the run folder to MLflow (default store: a SQLite file in the run folder, with
    the artefacts beside it)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = settings.uri or f"{SQLITE}{run.mlflow_store.resolve()}"
    client = MlflowClient(tracking_uri=uri)
    name = settings.experiment or run.path.parent.name
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        experiment_id = client.create_experiment(
            name, artifact_location=_local_artifacts(uri))
    board = run.require(Leaderboard)
    now = int(time.time() * 1000)

    def log(run_id: str, params: dict[str, str], metrics: list[Metric]) -> None:
        batch = [Param(k, v[:VALUE_LENGTH]) for k, v in params.items()]
        for first in range(0, len(batch), PARAMS_PER_CALL):
            client.log_batch(run_id, params=batch[first:first + PARAMS_PER_CALL])
        for first in range(0, len(metrics), METRICS_PER_CALL):
            client.log_batch(run_id, metrics=metrics[first:first + METRICS_PER_CALL])

    parent = client.create_run(experiment_id, run_name=run.path.name, tags={
        "visionbench.run_folder": str(run.path.resolve()),
        "visionbench.recommended": board.recommended or "",
        "visionbench.primary_metric": board.primary_metric})
    parent_id = parent.info.run_id
    saved = yaml.safe_load(run.config_file.read_text(encoding="utf-8")) or {}
    log(parent_id, flatten({k: v for k, v in saved.items()
                            if k not in ("models", "provenance")}), [])
    for file in (run.report_file, run.config_file, run.leaderboard_csv):
        if file.is_file():
            client.log_artifact(parent_id, str(file))

    children = {}
    for row in board.rows:
        folder = run.model(row.model)
        child = client.create_run(experiment_id, run_name=row.model, tags={
            "mlflow.parentRunId": parent_id, "visionbench.status": row.status.value,
            "visionbench.mark": row.mark})
        child_id = child.info.run_id
        card = folder.read(ModelCard)
        history = folder.read(History)
        metrics = [Metric(key, value, now, epoch.epoch)
                   for epoch in (history.epochs if history else [])
                   for key, value in epoch_curves(epoch).items()]
        for metric, interval in row.metrics.items():
            for suffix, value in (("", interval.value), ("_low", interval.low),
                                  ("_high", interval.high)):
                if value is not None:
                    metrics.append(Metric(f"test_{metric}{suffix}", float(value), now, 0))
        if row.validation is not None:
            metrics.append(Metric(f"val_{board.primary_metric}", row.validation, now, 0))
        evaluation = folder.read(EvaluationDocument)
        metrics += _fold_metrics(evaluation.folds if evaluation else None, now)
        log(child_id, flatten({"model": card.config}) if card else {}, metrics)
        if card is not None:
            client.log_artifact(child_id, str(folder.file(ModelCard)))
        exported = run.export_folder(row.model)
        if exported.is_export():
            client.log_artifacts(child_id, str(exported.path), artifact_path="export")
        client.set_terminated(child_id, status="FINISHED" if row.status.value == "ok"
                              else "FAILED")
        children[row.model] = child_id
    client.set_terminated(parent_id, status="FINISHED")
    return {"where": f"{uri} (experiment {name!r}, run {parent_id})", "uri": uri,
            "experiment": name, "experiment_id": experiment_id, "run_id": parent_id,
            "model_runs": children}
