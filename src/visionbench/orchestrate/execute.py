"""Train (or evaluate) each model into its model folder; one model's failure is recorded and
the others go on.

A trained model's folder describes itself (`model.json`: family, config, classes, input
settings), holds its weights, history, metrics, predictions on validation and test, error
pictures, robustness and explanations.
"""

from __future__ import annotations

import pickle
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from visionbench.config import Config
from visionbench.data.dataset import PreparedData
from visionbench.errors import UserError
from visionbench.evaluate.error_examples import error_analysis
from visionbench.evaluate.external import ExternalFamily, ExternalModel
from visionbench.evaluate.model_explanations import explain_test_set
from visionbench.evaluate.robustness import CORRUPTIONS, stratified_sample
from visionbench.evaluate.statistics import binomial_interval
from visionbench.evaluate.tta import averaged, tta_name, view_names
from visionbench.models.build import build_model
from visionbench.models.family import DataFacts, family_of
from visionbench.orchestrate.plan import (
    check_resumable,
    explain_settings,
    extended,
    fingerprint,
    same_training,
)
from visionbench.orchestrate.task import FoldItem, Mode, ModelTask
from visionbench.orchestrate.unfamiliar import fit_model_detector
from visionbench.provenance import code_version, command_line, describe_hardware
from visionbench.rundir.documents import (
    CodeVersion,
    CorruptionLevel,
    EpochRow,
    Explanations,
    FoldScore,
    History,
    InputRecord,
    ModelCard,
    ModelMetrics,
    RepeatScore,
    Robustness,
    SplitScore,
    StageReport,
    Status,
    Timing,
    TrainingEvent,
    TtaSource,
)
from visionbench.rundir.layout import ModelFolder, RunFolder, nested
from visionbench.rundir.predictions import Predictions
from visionbench.runtime.batches import Evaluation, SplitImages
from visionbench.runtime.device import pick_device
from visionbench.runtime.executors import EXECUTORS
from visionbench.runtime.progress import Steps, ignore
from visionbench.runtime.trained import LoadedModel, save_weights
from visionbench.schemas.evaluate import ExplainConfig
from visionbench.train.callbacks import Callback, Checkpoint, Progress
from visionbench.train.distributed import FitSpec, fit_distributed
from visionbench.train.loop import Trainer, TrainingDivergedError, plan_stages

Report = Callable[[str], None]


def data_facts(data: PreparedData) -> DataFacts:
    """What the prepared data tells a model family: image shape and training statistics."""
    normalization = data.normalization()
    height, width = data.images.shape[1:3]
    return DataFacts((height, width, data.channels), normalization.mean, normalization.std,
                     normalization.per_image)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training state saved by `Trainer.save_checkpoint`. Only tensors, numbers, strings
    and containers are accepted (`weights_only`): a checkpoint from someone else cannot run
    code, and one that holds anything else is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a checkpoint visionbench wrote (refused: "
                        f"{first[:160]}); delete it to train that model from scratch") from None


def _splits(data: PreparedData, device: torch.device, budget: int) -> dict[str, SplitImages]:
    return {
        split: SplitImages(data, split, device, budget)
        for split in ("train", "val", "test")
        if len(data.positions(split))
    }


def _continue_hint(mode: Mode) -> str:
    if mode is not Mode.CONTINUE:
        return "start a new run instead"
    return ("an interrupted `continue` with another --epochs is in its checkpoint: run that "
            "`continue` again to finish it (the model is kept as it was until then)")


def train_model(
    task: ModelTask,
    *,
    report: Report = print,
    callbacks: Sequence[Callback] = (),
    tta: ModelFolder | None = None,
) -> ModelMetrics:
    """Train (or resume, or continue: `task.mode`) one model; write its folder; return its
    metrics. `callbacks` join the trainer's own (a sweep's pruning); with `tta` (and
    `evaluate.tta` set), the model's test-time augmentation row is written there."""
    config, name, data, folder, mode = task.config, task.name, task.data, task.folder, task.mode
    model_cfg = task.model
    train_cfg = model_cfg.train
    device = pick_device(train_cfg.device)
    saved = fingerprint(config, name, data.classes)
    # What the run folder will say once a `continue` is done.
    longer = (extended(config, name, task.extra_epochs) if mode is Mode.CONTINUE
              else config)
    target = saved if longer is config else fingerprint(longer, name, data.classes)
    state, continuing = None, False
    if mode is not Mode.NEW and folder.last_checkpoint.is_file():
        state = read_checkpoint(folder.last_checkpoint)
        # A `continue` killed before it ended left its own checkpoint: the same command
        # again resumes it instead of refusing (the finished model is untouched meanwhile).
        continuing = mode is Mode.CONTINUE and same_training(state["meta"]["fingerprint"],
                                                          target)
        if not continuing:
            check_resumable(state["meta"]["fingerprint"], saved, name,
                            hint=_continue_hint(mode))
    elif mode is Mode.CONTINUE:
        raise UserError(f"model {name} has no checkpoint in {folder.checkpoints} to continue "
                        "from")
    if mode is Mode.CONTINUE:
        # Continuing rewrites the model folder: its final state so far is kept as a record.
        finished = folder.read(ModelMetrics)
        if finished is not None and finished.ok and finished.epochs:
            folder.keep_final_state(finished.epochs)

    torch.manual_seed(train_cfg.seed)
    facts = data_facts(data)
    built = build_model(model_cfg, len(data.classes), facts.image_shape, facts.mean, facts.std,
                        facts.per_image)
    splits = _splits(data, device, train_cfg.memory_budget_mb)
    if "train" not in splits:
        raise UserError("the training split is empty")
    saved = target
    progress = Progress(name, train_cfg.progress)
    trainer = Trainer(
        # A resumed continuation's checkpoint is already within the longer last stage.
        built, train_cfg,
        plan_stages(longer.models[name] if continuing else model_cfg),
        splits["train"], splits.get("val"),
        data.classes, device,
        callbacks=[*([Checkpoint(folder.last_checkpoint, folder.best_weights)]
                     if train_cfg.checkpoint else []), progress, *callbacks],
        meta={"fingerprint": saved},
    )
    if state is not None:
        trainer.load_state_dict(state)
        trainer.meta = {"fingerprint": saved}
        if mode is Mode.CONTINUE and not continuing:
            trainer.extend(task.extra_epochs)
    started = time.perf_counter()
    if train_cfg.distributed is not None:
        if callbacks:
            raise UserError("train.distributed does not combine with a sweep's trials yet: "
                            "sweep without it, then train the tuned model distributed")
        checkpoints = ((folder.last_checkpoint, folder.best_weights) if train_cfg.checkpoint
                       else None)
        state_of_first = fit_distributed(FitSpec(
            built, train_cfg, trainer.stages, splits["train"], splits.get("val"),
            data.classes, device, trainer.meta, state, checkpoints,
            (name, train_cfg.progress), continued=mode is Mode.CONTINUE), train_cfg.distributed)
        trainer.load_state_dict(state_of_first)
        built.notes.append(f"trained by {train_cfg.distributed.processes} processes "
                           "(DistributedDataParallel); their weights differed by at most "
                           f"{state_of_first['meta']['process_spread']:.1e} at the end")
    else:
        trainer.fit()
    wall = time.perf_counter() - started
    if train_cfg.checkpoint:
        trainer.save_checkpoint(folder.last_checkpoint)
    save_weights(trainer.evaluated_model, folder.weights)
    folder.write(ModelCard(model=name, family=model_cfg.family_name, classes=data.classes,
                           input=built.input, output=built.output,
                           config=model_cfg.model_dump(mode="json")))
    # The trainer keeps plain rows (they go into its checkpoint); the document types them.
    stages = [StageReport(**report) for report in trainer.freeze_reports]
    folder.write(History(epochs=[EpochRow(**row) for row in trainer.history],
                         events=[TrainingEvent(**event) for event in trainer.events],
                         stages=stages))
    scores = _record_evaluations(trainer, splits, task, explain_settings(config, name))
    outcome = ModelMetrics(
        model=name, status=Status.OK, description=model_cfg.description,
        parameters=built.parameter_count(), stages=stages,
        epochs=trainer.epoch, device=str(device), hardware=describe_hardware(str(device)),
        command=command_line(), code=CodeVersion(**code_version()),
        input=InputRecord(size=list(built.input.size), channels=built.input.channels,
                          mean=list(built.input.mean), std=list(built.input.std),
                          per_image=built.input.per_image),
        notes=built.notes,
        timing=Timing(train_seconds=round(trainer.train_seconds, 3),
                      wall_seconds_this_call=round(wall, 3),
                      images_per_second=round(trainer.images_seen
                                              / max(trainer.train_seconds, 1e-9), 1)),
        **scores, files=folder.predictions_checksums())
    folder.write(outcome)
    report(_summary_line(outcome))
    if tta is not None and config.evaluate.tta is not None:
        views = view_names(config.evaluate.tta, family_of(model_cfg).tta_crops(model_cfg))
        report(_summary_line(_record_tta(trainer, splits, data.classes, tta, outcome, views,
                                         train_cfg.progress)))
    if train_cfg.repeats > 1 and mode is not Mode.CONTINUE:
        outcome.repeats = _train_repeats(task, report)
        folder.write(outcome)
    return outcome


def _train_repeats(task: ModelTask, report: Report) -> list[RepeatScore]:
    """Train the extra repeats of a model (seeds seed+1...) into `<model>/repeats/<k>/`.

    Repeats keep predictions, history and metrics (no checkpoints, no pictures, no
    robustness): enough for mean and standard deviation across seeds.
    """
    base = task.model.train
    repeats = []
    for repeat in range(1, base.repeats):
        sub = task.folder.repeat(repeat)
        done = sub.read(ModelMetrics)
        if done is not None:
            repeats.append(done)
            continue
        variant = light_config(task.config, task.name)
        variant.models[task.name].train.seed = base.seed + repeat
        metrics = train_model(task.but(config=variant, folder=sub, mode=Mode.NEW,
                                       repeat=repeat), report=report)
        metrics.seed = base.seed + repeat
        sub.write(metrics)
        repeats.append(metrics)
    return [RepeatScore(seed=m.seed, test=m.test) for m in repeats]


def light_config(config: Config, name: str) -> Config:
    """`config` for a supporting training of model `name` (a repeat, a fold): predictions,
    history, weights and metrics only (no checkpoints, error pictures, robustness,
    explanations or test-time augmentation), trained once."""
    variant = config.model_copy(deep=True)
    variant.models[name].train.repeats = 1
    variant.models[name].train.checkpoint = False
    variant.evaluate.robustness = {}
    variant.evaluate.error_examples = 0
    variant.evaluate.explain.images = 0
    variant.evaluate.tta = None
    return variant


def cross_validate(task: ModelTask, *, report: Report = print) -> ModelMetrics:
    """k-fold cross-validation of the task's model: one model per fold, that fold as
    validation, into `<model>/folds/<k>/` (a finished fold is kept on resume), again per
    extra repeat with the folds cut anew (`<model>/repeats/<r>/folds/<k>/`); then the test
    split is predicted by the model refit on every non-test image (into its own folder) or
    by the mean of the fold models (`split.test_with`). Its validation predictions are the
    first repeat's out-of-fold ones: every training image once, predicted by the fold model
    that did not learn it, so the recommendation is made on all of them."""
    name, data, folder = task.name, task.data, task.folder
    folds = data.config.split.folds
    assert folds is not None, "cross_validate needs split.folds"
    # Repeated cross-validation: the recommendation and the test model come from the first
    # repeat, the statistics from all.
    done = _train_folds(_repeat(task, 0), report)
    for repeat in range(1, task.model.train.repeats):
        _train_folds(_repeat(task, repeat), report)
    if data.config.split.test_with == "fold_ensemble":
        outcome, note = _fold_ensemble(task, done), (
            f"cross-validated on {folds} folds; the test split is predicted by the mean of "
            "the fold models' probabilities")
    else:
        refit, note = _refit(task.config, name, done)
        outcome = train_model(task.but(config=refit, data=data.refit_view()), report=report)
    out_of_fold = _out_of_fold(data, [folder.fold(k) for k in range(folds)], done)
    folder.write_predictions("val", out_of_fold, data.classes)
    outcome.val = _score(out_of_fold)
    outcome.notes.append(note)
    outcome.folds = [FoldScore(fold=k, epochs=m.epochs, val=m.val, test=m.test)
                     for k, m in enumerate(done)]
    outcome.files = folder.predictions_checksums()
    folder.write(outcome)
    report(f"{name}: out-of-fold validation accuracy {outcome.val.accuracy:.4f} on "
           f"{outcome.val.images:,} images ({folds} folds)")
    return outcome


def _repeat(task: ModelTask, repeat: int) -> ModelTask:
    """What repeat `repeat` of a cross-validation trains with: the light config (reseeded
    after the first repeat), the data (its folds cut anew after the first) and the folder
    its folds go into."""
    variant = light_config(task.config, task.name)
    if not repeat:
        return task.but(config=variant)
    variant.models[task.name].train.seed = task.model.train.seed + repeat
    return task.but(config=variant, data=task.data.refold(task.data.config.split.seed + repeat),
                    folder=task.folder.repeat(repeat), repeat=repeat,
                    repeats=task.model.train.repeats)


def _train_folds(task: ModelTask, report: Report) -> list[ModelMetrics]:
    """One model per fold of the task's data, into `<folder>/folds/<k>/`; a finished fold
    is kept."""
    return [_train_fold(task, k, report) for k in range(task.data.config.split.folds or 0)]


def _train_fold(task: ModelTask, k: int, report: Report) -> ModelMetrics:
    sub = task.folder.fold(k)
    finished = sub.read(ModelMetrics)
    if finished is not None and finished.ok:
        return finished
    fold = task.but(data=task.data.fold_view(k), folder=sub, mode=Mode.NEW, fold=k)
    return train_model(fold, report=lambda line: report(fold.label(line)))


def fold_items(config: Config, names: list[str]) -> list[FoldItem]:
    """Every fold of every cross-validated model: the tasks a parallel executor runs before
    each model's own (which then finds its folds done)."""
    folds = config.data.split.folds or 0
    return [FoldItem(name, repeat, k) for name in names
            if family_of(config.models[name]).trainable
            for repeat in range(config.models[name].train.repeats) for k in range(folds)]


def train_fold(job: Job, item: FoldItem) -> ModelMetrics | None:
    """One fold of one repeat of a model, as a task of its own. A failure is left for the
    model's own task, which trains the fold again and records why it failed."""
    task = ModelTask(job.config, item.model, job.data, job.run.model(item.model))
    try:
        return _train_fold(_repeat(task, item.repeat), item.fold, job.report)
    except Exception:  # the model's own task retrains and records the failure
        return None


def _fold_ensemble(task: ModelTask, done: list[ModelMetrics]) -> ModelMetrics:
    """The model as the mean of its fold models: test predictions averaged from theirs (as
    predict averages them), error pictures on test; robustness and explanations are each
    fold model's to make (they run on one network)."""
    config, name, data, folder = task.config, task.name, task.data, task.folder
    folds = [folder.fold(k) for k in range(len(done))]
    per_fold = [f.read_predictions("test", data.classes, m) for f, m in
                zip(folds, done, strict=True)]
    test = Predictions(per_fold[0].ids, per_fold[0].y_true,
                       np.mean([p.prob for p in per_fold], axis=0))
    folder.write_predictions("test", test, data.classes)
    folder.write(error_analysis(data.arrays("test")[0], test, data.classes, folder,
                                config.evaluate.error_examples))
    first = done[0]
    return ModelMetrics(
        model=name, status=Status.OK, description=config.models[name].description,
        parameters=first.parameters, stages=first.stages, epochs=first.epochs,
        device=first.device, hardware=first.hardware, command=command_line(),
        code=CodeVersion(**code_version()), input=first.input, fold_ensemble=True,
        notes=[f"{len(done)} fold models; parameters and epochs are the first fold's"],
        timing=Timing(train_seconds=round(sum(m.timing.train_seconds or 0.0 for m in done),
                                          3)),
        test=_score(test))


def _refit(config: Config, name: str, folds: list[ModelMetrics]) -> tuple[Config, str]:
    """The config that refits model `name` on all training images, and a note saying how:
    with no validation split left, early stopping and plateau scaling are off, and a model
    that stopped early trains for its folds' mean number of epochs."""
    refit = config.model_copy(deep=True)
    train = refit.models[name].train
    epochs = train.epochs
    if train.early_stopping is not None and not refit.models[name].stages:
        epochs = max(1, round(float(np.mean([m.epochs or train.epochs for m in folds]))))
        train.epochs = epochs
    train.early_stopping = None
    train.plateau = None
    # Repeats belong to the cross-validation, not to the refit.
    train.repeats = 1
    return refit, (f"cross-validated on {len(folds)} folds; the test split is predicted by "
                   f"the model refit on every training image ({epochs} epochs)")


def _out_of_fold(data: PreparedData, folders: list[ModelFolder], metrics: list[ModelMetrics]
                 ) -> Predictions:
    """Every fold's validation predictions together, in the data's order."""
    per_fold = [f.read_predictions("val", data.classes, m) for f, m in
                zip(folders, metrics, strict=True)]
    by_id = {image_id: (target, prob) for fold in per_fold
             for image_id, target, prob in zip(fold.ids, fold.y_true, fold.prob, strict=True)}
    ids = [data.ids[i] for i in np.flatnonzero(data.fold >= 0).tolist()]
    return Predictions(ids, np.asarray([by_id[i][0] for i in ids]),
                       np.stack([by_id[i][1] for i in ids]))


def _record_tta(evaluator: Evaluator, splits: dict[str, SplitImages], classes: list[str],
                folder: ModelFolder, plain: ModelMetrics, views: list[str],
                progress: str) -> ModelMetrics:
    """The test-time augmentation row of a trained model: its probabilities on val and test
    averaged over `views`, written into `folder` with metrics that name the model and views;
    each pass shown as `progress` says."""
    started = time.perf_counter()
    scores: dict[str, SplitScore] = {}
    wanted = [split for split in ("val", "test") if split in splits]
    with Steps(folder.path.name, len(wanted) * len(views), progress) as steps:
        for split in wanted:
            images = splits[split]
            probabilities = averaged(
                lambda transform, images=images: evaluator.evaluate(images, transform
                                                                    ).probabilities,
                views, lambda view, split=split: steps.step(f"{split}, view {view}"))
            predictions = Predictions(images.ids, images.targets.numpy(),
                                      probabilities.numpy())
            folder.write_predictions(split, predictions, classes)
            scores[split] = _score(predictions)
    outcome = ModelMetrics(
        model=folder.path.name, status=Status.OK, parameters=plain.parameters,
        description=f"{plain.model} with test-time augmentation: its probabilities averaged "
        f"over {len(views)} views ({', '.join(views)}).",
        epochs=plain.epochs, device=plain.device, hardware=plain.hardware, input=plain.input,
        tta=TtaSource(model=plain.model, views=views), val=scores.get("val"),
        test=scores.get("test"),
        timing=Timing(**plain.timing.model_dump(exclude_unset=True),
                      tta_seconds=round(time.perf_counter() - started, 3)),
        files=folder.predictions_checksums())
    folder.write(outcome)
    return outcome


def _score(predictions: Predictions) -> SplitScore:
    """Cross-entropy and accuracy of saved predictions (how training scores a split)."""
    chosen = predictions.prob[np.arange(len(predictions.y_true)), predictions.y_true]
    return SplitScore(loss=float(-np.log(np.clip(chosen, 1e-12, 1)).mean()),
                      accuracy=float((predictions.y_pred == predictions.y_true).mean()),
                      images=len(predictions.y_true))


class Evaluator(Protocol):
    """What can be evaluated on a split: a `Trainer` or an `ExternalModel`."""

    device: torch.device

    def evaluate(self, split: SplitImages,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> Evaluation:
        """Loss, accuracy and probabilities on `split`."""
        ...


def _record_evaluations(evaluator: Evaluator, splits: dict[str, SplitImages], task: ModelTask,
                        explain: ExplainConfig | None = None) -> dict[str, SplitScore]:
    """Predictions of val and test, then error pictures, robustness and (with `explain`)
    explanation maps on test, each long step shown as the model's `train.progress` says;
    returns the score of each split predicted."""
    config, data, folder = task.config, task.data, task.folder
    seed, progress = task.model.train.seed, task.model.train.progress
    name = folder.path.name
    predicted: dict[str, tuple[Evaluation, Predictions]] = {}
    scores: dict[str, SplitScore] = {}
    wanted = [split for split in ("val", "test") if split in splits]
    # The detector needs training features and a validation split to set its threshold;
    # a model trained elsewhere gives no features.
    unfamiliar = (config.evaluate.unfamiliar if isinstance(evaluator, Trainer)
                  and {"train", "val"} <= set(splits) and not nested(folder) else None)
    with Steps(f"{name} predictions", len(wanted), progress) as steps:
        for split in wanted:
            steps.step(f"{split} ({len(splits[split]):,} images)")
            result = (evaluator.evaluate(splits[split], features=True)
                      if isinstance(evaluator, Trainer) and unfamiliar is not None
                      else evaluator.evaluate(splits[split]))
            scores[split] = SplitScore(loss=result.loss, accuracy=result.accuracy,
                                       images=len(splits[split]))
            predictions = Predictions(splits[split].ids, splits[split].targets.numpy(),
                                      result.probabilities.numpy())
            folder.write_predictions(split, predictions, data.classes)
            predicted[split] = result, predictions
    if unfamiliar is not None and isinstance(evaluator, Trainer):
        folder.write(fit_model_detector(
            evaluator, splits, {split: scored for split, (scored, _) in predicted.items()},
            data, unfamiliar, folder, seed, progress))
    if "test" not in predicted:
        return scores
    result, predictions = predicted["test"]
    settings = config.evaluate
    # Read once: the error pictures and the explanations both need the test images.
    test_images = data.arrays("test")[0]
    folder.write(error_analysis(test_images, predictions, data.classes, folder,
                                settings.error_examples))
    levels = sum(len(severities) for severities in settings.robustness.values())
    with Steps(f"{name} robustness", levels, progress) as steps:
        folder.write(robustness(evaluator, splits["test"], settings.robustness,
                                result.probabilities, seed, steps.step,
                                settings.robustness_images))
    if isinstance(evaluator, Trainer) and explain is not None and explain.images:
        loaded = LoadedModel(evaluator.evaluated_model, evaluator.pipeline, evaluator.device)
        try:
            with Steps(f"{name} explanations", len(explain.methods) + 1, progress) as steps:
                explanations = explain_test_set(loaded, data.classes, predictions, explain,
                                                folder, test_images, steps.step)
        except UserError as exc:
            # The model itself is fine: keep it, say why it has no maps.
            explanations = Explanations(error=str(exc))
        folder.write(explanations)
    return scores


def evaluate_external(task: ModelTask, report: Report = print) -> ModelMetrics:
    """Evaluate a model trained elsewhere (ONNX/TorchScript) into its model folder."""
    model_cfg, data, name = task.model, task.data, task.name
    family = family_of(model_cfg)
    assert isinstance(family, ExternalFamily)
    spec = family.input_spec(model_cfg, data_facts(data))
    model = ExternalModel(model_cfg, spec, len(data.classes))
    splits = _splits(data, model.device, model_cfg.train.memory_budget_mb)
    wanted = model_cfg.input
    scores = _record_evaluations(model, splits, task)
    outcome = ModelMetrics(
        model=name, status=Status.OK, description=model_cfg.description,
        external=str(model_cfg.external), parameters=None, epochs=0,
        input=InputRecord(size=list(spec.size), channels=spec.channels, mean=list(spec.mean),
                          std=list(spec.std), layout=wanted.layout, scale=wanted.scale),
        timing=Timing(), **scores, files=task.folder.predictions_checksums())
    task.folder.write(outcome)
    accuracy = outcome.test.accuracy if outcome.test else 0.0
    report(f"{name} (external): test accuracy {accuracy:.4f}")
    return outcome


def robustness(evaluator: Evaluator, test: SplitImages, severities: dict[str, list[float]],
               clean: torch.Tensor, seed: int, step: Callable[[str], None] = ignore,
               images: int | None = None) -> Robustness:
    """Test accuracy under each corruption and severity, with the clean accuracy, on a
    stratified sample of `images` test images (all when None or more) and the exact
    binomial interval that sample gives; `clean` are the model's probabilities on every
    test image (the clean accuracy of the sample is read from them, not predicted again);
    `step` hears of each setting as it starts."""
    keep = stratified_sample(test.targets.numpy(), images, seed)
    sample = test if len(keep) == len(test) else test.subset(keep)
    # The drop is measured against the same images.
    chosen = torch.from_numpy(keep)
    clean_accuracy = float((clean[chosen].argmax(1) == test.targets[chosen]).double().mean())
    by_corruption: dict[str, list[CorruptionLevel]] = {}
    for name, levels in severities.items():
        corrupt = CORRUPTIONS.get(name)
        rows = []
        for severity in levels:
            step(f"{name} {severity:g}")
            gen = torch.Generator(device=evaluator.device).manual_seed(seed)
            accuracy = evaluator.evaluate(sample, partial(corrupt, severity=severity, gen=gen)
                                          ).accuracy
            low, high = binomial_interval(round(accuracy * len(sample)), len(sample))
            rows.append(CorruptionLevel(severity=severity, accuracy=accuracy,
                                        drop=clean_accuracy - accuracy, low=low, high=high))
        by_corruption[name] = rows
    return Robustness(clean_accuracy=clean_accuracy, corruptions=by_corruption, images=len(sample),
                      test_images=len(test))


def _summary_line(metrics: ModelMetrics) -> str:
    parts = [f"{metrics.model}: {metrics.epochs} epochs"]
    for split in (metrics.val, metrics.test):
        if split is not None:
            parts.append(f"{'val' if split is metrics.val else 'test'} accuracy "
                         f"{split.accuracy:.4f}")
    parts.append(f"{metrics.timing.train_seconds or 0.0:.1f}s")
    return ", ".join(parts)


def _failure(name: str, exc: BaseException, config: Config) -> tuple[str, int]:
    """A one-line reason for a failed model and its exit code."""
    if isinstance(exc, UserError):
        return str(exc), exc.exit_code
    train = config.models[name].train
    if isinstance(exc, TrainingDivergedError):
        lr = train.optimizer.lr
        return (f"{exc}; training stopped, the last good epoch's checkpoint is kept: lower "
                f"the learning rate (--set models.{name}.train.optimizer.lr={lr / 10:g}) or "
                f"clip gradients (--set models.{name}.train.grad_clip=1.0)"
                + ("" if train.precision == "fp32" else
                   f", or train in full precision (--set models.{name}.train.precision=fp32)")
                ), 1
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        batch = train.batch_size
        return (f"out of GPU memory at batch size {batch}: halve it (--set "
                f"models.{name}.train.batch_size={max(batch // 2, 1)}), or feed smaller "
                f"images (--set models.{name}.input.size=...), or use bf16 (--set "
                f"models.{name}.train.precision=bf16)"), 2
    return f"{type(exc).__name__}: {exc}", 1


@dataclass
class Job:
    """What every model of a run shares: sent once to an executor's workers."""

    config: Config
    data: PreparedData
    run: RunFolder
    mode: Mode
    extra_epochs: int
    report: Report

    def task(self, name: str) -> ModelTask:
        """Model `name`'s work in this job."""
        return ModelTask(self.config, name, self.data, self.run.model(name), self.mode,
                         self.extra_epochs)


def train_one(job: Job, name: str) -> ModelMetrics:
    """Model `name` of the job's run, trained (cross-validated, or evaluated when external)
    into its folder. A failure is recorded in the folder and returned, not raised, so the
    other models go on; Ctrl-C is recorded and raised."""
    task = job.task(name)
    config, data, report, folder = job.config, job.data, job.report, task.folder
    if job.mode is Mode.RESUME:
        previous = folder.read(ModelMetrics)
        if previous is not None and previous.ok:
            report(f"{name}: already trained, kept")
            return previous
    try:
        if not family_of(config.models[name]).trainable:
            # In a cross-validated run every model is scored on all training images.
            scored = data.pool_view() if config.data.split.folds is not None else data
            return evaluate_external(task.but(data=scored), report)
        if config.data.split.folds is not None and job.mode is not Mode.CONTINUE:
            return cross_validate(task, report=report)
        tta = config.evaluate.tta
        wanted = tta is not None and (tta.models is None or name in tta.models)
        return train_model(task, report=report,
                           tta=job.run.model(tta_name(name)) if wanted else None)
    except KeyboardInterrupt:
        # The model stays in the run's records as interrupted; the run stops here. A
        # `continue` leaves the finished model as it was (its checkpoint resumes later).
        if job.mode is not Mode.CONTINUE:
            folder.write(_interrupted(name))
        raise
    except Exception as exc:  # one model's failure must not end the run
        reason, code = _failure(name, exc, config)
        if not isinstance(exc, UserError | TrainingDivergedError):
            folder.write_error_log(traceback.format_exc())
        outcome = ModelMetrics(model=name, status=Status.FAILED, error=reason, exit_code=code)
        if job.mode is Mode.CONTINUE:
            report(f"{name}: continue FAILED: {reason}; the model is kept as it was")
            return outcome
        folder.write(outcome)
        report(f"{name}: FAILED: {reason}")
        return outcome


def _interrupted(name: str) -> ModelMetrics:
    return ModelMetrics(model=name, status=Status.INTERRUPTED, error="interrupted (Ctrl-C); "
                        "resume continues it from its last finished epoch", exit_code=130)


def run_models(
    config: Config, data: PreparedData, run: RunFolder, names: list[str], mode: Mode,
    extra_epochs: int, report: Report, outcomes: dict[str, ModelMetrics],
) -> None:
    """Train `names` with the config's executor (one after the other, or as parallel Ray
    tasks), filling `outcomes` as each finishes or fails. On Ctrl-C the models that had
    started and not finished are recorded as interrupted."""
    settings = config.execution
    local = settings.executor == "local"
    # Workers print for themselves (Ray forwards their lines): a terminal callback stays here.
    job = Job(config, data, run, mode, extra_epochs, report if local else print)
    execute = EXECUTORS.get(settings.executor)
    try:
        if config.data.split.folds is not None and mode is not Mode.CONTINUE and not local:
            # In parallel, every fold is a task of its own first; each model's task then
            # refits (or averages) from its finished folds.
            execute(train_fold, job, fold_items(config, names), settings,
                    lambda item, outcome: None)
        execute(train_one, job, names, settings, outcomes.__setitem__)
    except KeyboardInterrupt:
        # (A `continue` leaves the finished models as they were.)
        for name in names if mode is not Mode.CONTINUE else []:
            if name not in outcomes and run.model(name).path.is_dir():
                outcomes[name] = _interrupted(name)
                run.model(name).write(outcomes[name])
        raise
