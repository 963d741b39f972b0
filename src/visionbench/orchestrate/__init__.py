"""Runs a config: plan (which models, which folder, may a checkpoint resume), execute (train
or evaluate each model into its folder), collect (run.json, leaderboard, report).

`run_config` and `continue_run` are what the CLI's `run` and `continue` call.
"""

from __future__ import annotations

from pathlib import Path

from visionbench.config import Config, load_config
from visionbench.data.dataset import prepare_data
from visionbench.data.inspect import inspect_data
from visionbench.orchestrate.collect import RunResult, finish_run
from visionbench.orchestrate.execute import Report, run_models
from visionbench.orchestrate.plan import extended, new_run_folder, select_models
from visionbench.provenance import save_config
from visionbench.rundir.documents import DataRecord, Inspection, ModelMetrics
from visionbench.rundir.layout import RunFolder

__all__ = ["RunResult", "continue_run", "run_config"]


def run_config(
    config: Config,
    *,
    resume: Path | None = None,
    only: list[str] | None = None,
    report: Report = print,
) -> RunResult:
    """Train every model (or `only` those) of `config`; resume into `resume` if given."""
    names = select_models(config, only)
    data = prepare_data(config.data)
    run = RunFolder(resume).check() if resume is not None else new_run_folder(config)
    save_config(config, run.path)
    run.write(DataRecord.model_validate(data.record))
    if not run.has(Inspection):
        run.write(Inspection.model_validate(inspect_data(data, run.data_dir)))
    report(f"run folder: {run.path}")
    # A resumed run may add models to a folder: those trained before stay on its leaderboard.
    result = RunResult(run, run.outcomes(list(config.models)) if resume is not None else {})
    try:
        run_models(config, data, run, names, "resume" if resume else "new", 0, report,
                   result.models)
    finally:
        # Also on Ctrl-C: the leaderboard lists whatever finished.
        finish_run(result, config)
    return result


def continue_run(path: Path, epochs: int, only: list[str] | None = None,
                 report: Report = print) -> RunResult:
    """Train finished models of a run folder `epochs` more epochs, in place."""
    run = RunFolder(path).check()
    config = load_config(run.config_file)
    names = select_models(config, only)
    data = prepare_data(config.data)
    result = RunResult(run, run.outcomes(list(config.models)))
    outcomes: dict[str, ModelMetrics] = {}
    try:
        run_models(config, data, run, names, "continue", epochs, report, outcomes)
    finally:
        for name, outcome in outcomes.items():
            result.models[name] = outcome
            if outcome.ok:
                config = extended(config, name, epochs)
        save_config(config, run.path)
        finish_run(result, config)
    return result
