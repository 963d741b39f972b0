"""Runs a config: plan (which models, which folder, may a checkpoint resume), execute (train
or evaluate each model into its folder), collect (run.json, leaderboard, report).

`run_config` and `continue_run` are what the CLI's `run` and `continue` call.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

# Every registry filled for whatever runs a config's work: a Ray worker gets the config
# unpickled, without `load_config` (which fills them once a config's structure is valid).
from visionbench import registries  # noqa: F401
from visionbench.config import Config, load_config
from visionbench.data.dataset import PreparedData, prepare_data, training_hashes
from visionbench.data.inspect import inspect_data
from visionbench.errors import InterruptedRunError, UserError
from visionbench.evaluate.shift import verdict
from visionbench.orchestrate.collect import RunResult, finish_run
from visionbench.orchestrate.execute import Report, run_models
from visionbench.orchestrate.plan import (
    changed_since,
    extended,
    new_run_folder,
    select_models,
)
from visionbench.orchestrate.shift import measure_shift
from visionbench.orchestrate.sweep import run_sweep
from visionbench.orchestrate.task import Mode
from visionbench.orchestrate.unfamiliar import embed_splits, fit_generic, foreign_sets
from visionbench.provenance import command_line, save_config
from visionbench.rundir.documents import (
    GenericUnfamiliar,
    Inspection,
    ModelMetrics,
    ShiftDocument,
    Status,
    TrainingHashes,
)
from visionbench.rundir.layout import RunFolder
from visionbench.runtime.executors import executor_session
from visionbench.track import check_trackers

__all__ = ["RunResult", "continue_run", "run_config"]


def _check_resume(run: RunFolder, config: Config, names: list[str], retrain: list[str]
                  ) -> None:
    """Refuse to resume models whose config changed since the run, unless retrained."""
    unknown = [name for name in retrain if name not in names]
    if unknown:
        raise UserError(f"--retrain {unknown[0]}: not a model this command runs "
                        f"({', '.join(names)})")
    changed = {name: keys for name, keys in
               changed_since(load_config(run.config_file), config, names, run).items()
               if name not in retrain}
    if changed:
        keys = sorted({key for found in changed.values() for key in found})
        again = " ".join(f"--retrain {name}" for name in changed)
        raise UserError(
            f"cannot resume {run.path}: the config of {', '.join(changed)} changed since the "
            f"run ({', '.join(keys[:5])}); nothing was written. To train "
            f"{'it' if len(changed) == 1 else 'them'} again from scratch and keep the other "
            f"models, add {again}; or start a new run")


def run_config(
    config: Config,
    *,
    resume: Path | None = None,
    only: list[str] | None = None,
    retrain: list[str] | None = None,
    report: Report = print,
) -> RunResult:
    """Train every model (or `only` those) of `config`; resume into `resume` if given,
    training the `retrain` models of that folder again from scratch."""
    names = select_models(config, only)
    check_trackers(config.tracking)
    if resume is not None:
        # Checked before anything is decoded or written: a refused resume changes nothing.
        run = RunFolder(resume).check()
        _check_resume(run, config, names, retrain or [])
    data = prepare_data(config.data)
    record = data.record
    skipped = len(record.failures) + (record.ignored_files.count if record.ignored_files else 0)
    if skipped:
        report(f"{skipped} file(s) skipped (unreadable, not images, or links); each is "
               "listed with its reason in data.json and the report")
    if resume is None:
        run = new_run_folder(config)
    for name in retrain or []:
        shutil.rmtree(run.model(name).path, ignore_errors=True)
    save_config(config, run.path)
    run.write(record)
    # What inspect and the report warn of is said here too, before hours of training.
    for warning in record.warnings:
        report(f"warning: {warning.message}")
    run.write(TrainingHashes.model_validate(training_hashes(data)))
    if not run.has(Inspection):
        run.write(Inspection.model_validate(inspect_data(data, run.data_dir)))
    report(f"run folder: {run.path}")
    _generic_embedding_steps(run, config, data, report)
    # One executor session for the whole run (a Ray started once, not per batch of tasks).
    with executor_session(config.execution):
        if config.sweep is not None:
            # The search reads training and validation images only; its best trial joins
            # the run as one more model, evaluated on test once like the others.
            config = run_sweep(config, data, run, report)
            save_config(config, run.path)
            names = [*names, config.sweep.tuned] if config.sweep.tuned not in names else names
        # A resumed run may add models to a folder: those trained before stay on its
        # leaderboard.
        result = RunResult(run, run.outcomes(list(config.models)) if resume is not None
                           else {})
        interrupted = False
        try:
            run_models(config, data, run, names, Mode.RESUME if resume else Mode.NEW, 0, report,
                       result.models)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            # Also after a failure or Ctrl-C: the leaderboard lists whatever finished.
            finish_run(result, config, data, report)
    if interrupted:
        stopped = [n for n, m in result.models.items() if m.status is Status.INTERRUPTED]
        command = command_line()
        resume_command = [*command, "--resume", str(run.path)] if "--resume" not in command \
            else command
        raise InterruptedRunError(f"interrupted during {', '.join(stopped) or 'the run'}; finished "
                          f"models are kept in {run.path}. Resume with: "
                          f"{shlex.join(resume_command)}")
    return result


def _generic_embedding_steps(run: RunFolder, config: Config, data: PreparedData,
                             report: Report) -> None:
    """What reads the generic embedding, once per run and before any model: the generic
    unfamiliar-image detector and the shift test between splits (each skipped when
    switched off, or already written by the run being resumed); a shifted split is said
    before hours of training."""
    unfamiliar, shift = config.evaluate.unfamiliar, config.evaluate.shift
    detector = unfamiliar is not None and unfamiliar.generic and not run.has(GenericUnfamiliar)
    shifting = shift is not None and not run.has(ShiftDocument)
    if not detector and not shifting:
        return
    sample = max(unfamiliar.train_images if detector and unfamiliar else 0,
                 shift.images if shifting and shift else 0)
    embedded = embed_splits(data, sample, config.train.seed, config.train.progress,
                            config.train.device)
    if detector and unfamiliar is not None:
        fit_generic(run, embedded, unfamiliar.train_images, config.train.seed,
                    foreign_sets(data, unfamiliar), config.train.device)
    if shifting and shift is not None:
        measure_shift(run, data, embedded, shift, config.train.seed)
        found = run.read(ShiftDocument)
        for split, tested in (found.splits.items() if found is not None else []):
            if tested.shifted:
                report(f"warning: {verdict(tested, f'the {split} images')}")


def continue_run(path: Path, epochs: int, only: list[str] | None = None,
                 report: Report = print) -> RunResult:
    """Train finished models of a run folder `epochs` more epochs, in place."""
    run = RunFolder(path).check()
    config = load_config(run.config_file)
    if config.data.split.folds is not None:
        raise UserError(f"{path} is cross-validated (split.folds): continuing would train the "
                        "refit model past its folds, so the two would no longer match; run the "
                        "config again with more epochs instead")
    names = select_models(config, only)
    check_trackers(config.tracking)
    if not only:
        # Without --model: the models this run trained; the others are named, not failed.
        skipped = [name for name in names if run.finished(name) is None]
        names = [name for name in names if name not in skipped]
        for name in skipped:
            report(f"{name}: not trained in this run, skipped")
        if not names:
            raise UserError(f"no model of {run.path} has finished training: nothing to "
                            "continue (resume the run first)")
    data = prepare_data(config.data)
    result = RunResult(run, run.outcomes(list(config.models)))
    outcomes: dict[str, ModelMetrics] = {}
    try:
        run_models(config, data, run, names, Mode.CONTINUE, epochs, report, outcomes)
    finally:
        for name, outcome in outcomes.items():
            if outcome.ok:
                result.models[name] = outcome
                config = extended(config, name, epochs)
            else:
                # The model is as it was before: its documents still describe it.
                result.not_continued[name] = outcome
        save_config(config, run.path)
        finish_run(result, config, data, report)
    return result
