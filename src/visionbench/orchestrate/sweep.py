"""A sweep: Optuna searches one model's settings, every trial trained on the training split
and scored on the validation split, with the test split taken away from the data the
trials get. The best trial then joins the run as one more model, trained and evaluated on
test once like every other."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionbench.config import Config
from visionbench.data.dataset import PreparedData
from visionbench.errors import UserError
from visionbench.evaluate.metrics import METRICS, compute
from visionbench.orchestrate.execute import Report, light_config, train_model
from visionbench.orchestrate.task import ModelTask
from visionbench.rundir.documents import Sweep, SweepBest, SweepTrial
from visionbench.rundir.layout import RunFolder
from visionbench.runtime.executors import EXECUTORS
from visionbench.schemas.models import ModelConfig
from visionbench.schemas.sweep import Dimension, with_setting
from visionbench.train.callbacks import Callback, TrainerView
from visionbench.train.loop import TrainingDivergedError


class Pruning(Callback):
    """Reports each epoch's validation value to the trial and stops a trial the pruner
    finds unpromising."""

    name = "pruning"

    def __init__(self, trial: Any, key: str) -> None:
        self.trial, self.key = trial, key

    def on_epoch_end(self, trainer: TrainerView, logs: dict[str, Any]) -> None:
        """Report the epoch; raise Optuna's TrialPruned when the pruner says stop."""
        import optuna

        value = logs.get(self.key)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), trainer.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {trainer.epoch}")


def _suggest(trial: Any, path: str, dimension: Dimension) -> Any:
    if dimension.choices is not None:
        return trial.suggest_categorical(path, dimension.choices)
    assert dimension.low is not None and dimension.high is not None
    if dimension.whole:
        return trial.suggest_int(path, int(dimension.low), int(dimension.high),
                                 step=int(dimension.step or 1), log=dimension.log)
    return trial.suggest_float(path, dimension.low, dimension.high, step=dimension.step,
                               log=dimension.log)


def tuned_model(config: Config, values: dict[str, Any]) -> ModelConfig:
    """The swept model's settings with `values` (path -> value) in place."""
    assert config.sweep is not None
    settings = config.models[config.sweep.model].model_dump(mode="json")
    for path, value in values.items():
        settings = with_setting(settings, path, value)
    return ModelConfig.model_validate(settings)


def run_sweep(config: Config, data: PreparedData, run: RunFolder, report: Report) -> Config:
    """Search the swept model's settings, write `sweep.json`, and return the config with the
    best trial added as model `sweep.tuned` (a finished sweep of a resumed run is reused)."""
    try:
        import optuna
    except ImportError:
        raise UserError("sweep: needs Optuna: pip install 'visionbench[sweep]'") from None
    settings = config.sweep
    assert settings is not None
    done = run.read(Sweep)
    if done is None:
        done = _search(optuna, config, data, run, report)
        run.write(done)
    tuned = tuned_model(config, done.best.params)
    tuned.description = (f"the best of {len(done.trials)} trials of a sweep of "
                         f"{settings.model} on validation {done.metric}")
    updated = config.model_copy(deep=True)
    updated.models[settings.tuned] = tuned
    return updated


@dataclass
class TrialJob:
    """What every trial shares (sent once to an executor's workers): the config, the data
    without its test split, the run folder, the validation curve pruning reads, the
    study's journal file (every trial, here or on a worker, reports to it), and each
    trial's settings and storage id."""

    config: Config
    blind: PreparedData
    run: RunFolder
    curve: str
    storage: str
    values: dict[int, dict[str, Any]]
    trial_ids: dict[int, int]


def run_trial(job: TrialJob, item: str) -> dict[str, Any]:
    """Trial `item` (its number) trained with its settings on the training split, scored
    on validation; its epochs are reported to the study for pruning. Returns its state and
    value; a trial the pruner stops or that fails says so instead of raising."""
    import optuna

    number = int(item)
    config, settings = job.config, job.config.sweep
    assert settings is not None
    study = optuna.load_study(study_name=STUDY, storage=_storage(job.storage))
    trial = optuna.trial.Trial(study, job.trial_ids[number])
    values = job.values[number]
    variant = config.model_copy(deep=True)
    metric = METRICS.get(config.evaluate.primary_metric)
    try:
        variant.models[settings.model] = tuned_model(config, values)
        folder = job.run.sweep_trial(number)
        metrics = train_model(ModelTask(light_config(variant, settings.model), settings.model,
                                        job.blind, folder),
                              report=lambda line: None, callbacks=[Pruning(trial, job.curve)])
        val = folder.read_predictions("val", job.blind.classes, metrics)
    except optuna.TrialPruned as exc:
        return {"state": "pruned", "reason": str(exc)}
    except (UserError, TrainingDivergedError, ValueError) as exc:
        return {"state": "fail", "reason": str(exc).splitlines()[0] if str(exc) else ""}
    value = float(compute([metric.name], val.y_true, val.prob)[metric.name][0])
    return {"state": "complete", "value": value, "epochs": metrics.epochs}


STUDY = "sweep"


def _storage(path: str) -> Any:
    """The study's journal file as Optuna storage."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(path))


def _search(optuna: Any, config: Config, data: PreparedData, run: RunFolder,
            report: Report) -> Sweep:
    settings = config.sweep
    assert settings is not None
    metric = METRICS.get(config.evaluate.primary_metric)
    direction = "maximize" if metric.higher_is_better else "minimize"
    pruners = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
               "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(),
               "none": lambda: optuna.pruners.NopPruner()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The study lives in a journal file in the run folder, where every trial (here or on a
    # Ray worker) reports its epochs and reads the others' for pruning.
    journal = run.sweep_journal
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.unlink(missing_ok=True)
    study = optuna.create_study(study_name=STUDY, direction=direction,
                                storage=_storage(str(journal)),
                                sampler=optuna.samplers.TPESampler(seed=settings.seed),
                                pruner=pruners[settings.pruner]())
    # The trials never get the test split: it is not in the data they are given.
    job = TrialJob(config, data.without_test(), run,
                   # Pruning reads the validation curve that moves the way the metric does.
                   "val_accuracy" if metric.higher_is_better else "val_loss",
                   str(journal), {}, {})
    execute = EXECUTORS.get(config.execution.executor)
    # Trials run `parallel` at a time (one at a time here): the sampler learns from every
    # finished batch before it proposes the next.
    parallel = 1 if config.execution.executor == "local" else settings.parallel
    asked: dict[int, Any] = {}

    def told(item: str, outcome: dict[str, Any]) -> None:
        trial = asked.pop(int(item))
        if outcome["state"] == "complete":
            trial.set_user_attr("epochs", outcome["epochs"])
            study.tell(trial, outcome["value"])
            tried = _settings_text(job.values[trial.number])
            report(f"sweep trial {trial.number + 1}/{settings.trials}: validation "
                   f"{metric.name} {outcome['value']:.4f} ({tried})")
        else:
            state = optuna.trial.TrialState.PRUNED if outcome["state"] == "pruned" else \
                optuna.trial.TrialState.FAIL
            study.tell(trial, state=state)
            report(f"sweep trial {trial.number + 1}/{settings.trials}: {outcome['state']} "
                   f"({outcome.get('reason', '')})")

    while len(study.trials) < settings.trials:
        batch = []
        for _ in range(min(parallel, settings.trials - len(study.trials))):
            trial = study.ask()
            job.values[trial.number] = {path: _suggest(trial, path, dimension)
                                        for path, dimension in settings.space.items()}
            # A worker reattaches to this trial by its storage id (Optuna's Trial takes it;
            # no public accessor gives it).
            job.trial_ids[trial.number] = trial._trial_id
            asked[trial.number] = trial
            batch.append(str(trial.number))
        execute(run_trial, job, batch, config.execution, told)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise UserError(f"sweep: none of the {settings.trials} trials finished (see "
                        f"{run.path / 'sweep'}); widen the space or lower the pruning")
    trials, best_so_far = [], None
    sign = 1 if metric.higher_is_better else -1
    for trial in study.trials:
        if trial.value is not None and (best_so_far is None
                                        or sign * trial.value > sign * best_so_far):
            best_so_far = trial.value
        trials.append(SweepTrial(number=trial.number, state=trial.state.name.lower(),
                                 value=trial.value, params=trial.params,
                                 epochs=trial.user_attrs.get("epochs"),
                                 last_epoch=max(trial.intermediate_values, default=None),
                                 best_so_far=best_so_far))
    best = study.best_trial
    report(f"sweep: best trial {best.number + 1} of {len(trials)}, validation {metric.name} "
           f"{best.value:.4f} ({_settings_text(best.params)}) -> model {settings.tuned}")
    return Sweep(model=settings.model, tuned=settings.tuned, metric=metric.name,
                 direction=direction, pruner=settings.pruner, trials=trials,
                 best=SweepBest(number=best.number, value=best.value, params=best.params),
                 importance=_importance(optuna, study, len(finished)),
                 scales={name: "category" if space.choices is not None else
                         "log" if space.log else "linear"
                         for name, space in settings.space.items()})


def _importance(optuna: Any, study: Any, finished: int) -> dict[str, float]:
    """Each setting's share of the score's variance (fANOVA); empty below three finished
    trials or with one setting, where it says nothing."""
    if finished < 3 or len(study.trials[0].params) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            # Few trials make the evaluator warn that its quantiles coincide: the numbers
            # are still what it measured.
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):
        return {}
    return {name: float(value) for name, value in importances.items() if np.isfinite(value)}


def _settings_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{path} {value:.3g}" if isinstance(value, float) else f"{path} {value}"
                     for path, value in values.items())

