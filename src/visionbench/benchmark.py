"""Run every model of a config and write the run folder (the contract between steps).

    runs/<name>/<timestamp>/
      config.yaml, data.json, run.json, leaderboard.csv/.md/.json, comparison.json
      <model>/model.safetensors, history.json, metrics.json, evaluation.json,
              predictions.csv (test), predictions_val.csv, errors.json,
              robustness.json, misclassified.png, top_losses.png, error_rate.png,
              checkpoints/last.pt (whole training state), checkpoints/best.safetensors

One failing model (bad weights, NaN loss, out of memory, a bug) is recorded in its
`metrics.json` and the run goes on; finished models are never lost. A run can be resumed
(`resume=`) after a crash, and a finished model can continue for more epochs.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch

from visionbench.config import Config, load_config
from visionbench.data.dataset import PreparedData, prepare_data
from visionbench.data.inspect import inspect_data
from visionbench.errors import UserError
from visionbench.evaluate.errors import error_analysis
from visionbench.evaluate.external import ExternalModel
from visionbench.evaluate.leaderboard import evaluate_folder
from visionbench.evaluate.predictions import Predictions, write_predictions
from visionbench.evaluate.robustness import CORRUPTIONS
from visionbench.fileio import atomic_path, write_json, write_text
from visionbench.inference import LoadedModel, explain_test_set
from visionbench.models.build import build_model
from visionbench.provenance import code_version, command_line, describe_hardware, save_config
from visionbench.report.html import write_report
from visionbench.runtime.batches import Evaluation, SplitImages
from visionbench.runtime.device import pick_device
from visionbench.schemas.inputs import InputSpec
from visionbench.schemas.models import ModelConfig
from visionbench.train.callbacks import Checkpoint, Progress
from visionbench.train.loop import Trainer, TrainingDivergedError, plan_stages

Report = Callable[[str], None]

# Keys that do not change what is trained, so they may differ when resuming.
HARMLESS_KEYS = ("description", "progress")


@dataclass
class RunResult:
    """Where the run went and each model's outcome (`metrics.json` content)."""

    folder: Path
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    board: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 if every model trained; 2 if a failure was the user's to fix; 1 otherwise."""
        codes = [m.get("exit_code", 1) for m in self.models.values() if m["status"] != "ok"]
        return max(codes, default=0)


def _fingerprint(config: Config, name: str, classes: list[str]) -> dict[str, Any]:
    model = config.models[name].model_dump(mode="json")
    model.pop("description", None)
    model["train"].pop("progress", None)
    return {"model": model, "data": config.data.model_dump(mode="json"), "classes": classes}


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}")
    return found


def _check_resumable(saved: dict[str, Any], current: dict[str, Any], name: str) -> None:
    if saved["classes"] != current["classes"]:
        raise UserError(
            f"cannot resume model {name}: the class list changed from {saved['classes']} "
            f"to {current['classes']}"
        )
    changed = [
        f"models.{name}.{key.removeprefix('model.')}" if key.startswith("model.") else key
        for key in _differences(saved, current)
    ]
    if changed:
        raise UserError(
            f"cannot resume model {name}: its config changed since the checkpoint "
            f"({', '.join(changed[:5])}); start a new run instead"
        )


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def _splits(data: PreparedData, device: torch.device, budget: int) -> dict[str, SplitImages]:
    return {
        split: SplitImages(data, split, device, budget)
        for split in ("train", "val", "test")
        if len(data.positions(split))
    }


def train_model(
    config: Config,
    name: str,
    data: PreparedData,
    folder: Path,
    *,
    mode: str = "new",
    extra_epochs: int = 0,
    report: Report = print,
) -> dict[str, Any]:
    """Train (or resume, or continue) one model; write its folder; return its metrics.

    `mode`: `new` trains from scratch, `resume` continues an interrupted checkpoint,
    `continue` adds `extra_epochs` to a finished model.
    """
    model_cfg: ModelConfig = config.models[name]
    train_cfg = model_cfg.train
    device = pick_device(train_cfg.device)
    checkpoints = folder / "checkpoints"
    fingerprint = _fingerprint(config, name, data.classes)
    state = None
    if mode != "new" and (checkpoints / "last.pt").is_file():
        state = torch.load(checkpoints / "last.pt", map_location="cpu", weights_only=False)
        _check_resumable(state["meta"]["fingerprint"], fingerprint, name)
    elif mode == "continue":
        raise UserError(f"model {name} has no checkpoint in {checkpoints} to continue from")

    torch.manual_seed(train_cfg.seed)
    normalization = data.normalization()
    height, width = data.images.shape[1:3]
    built = build_model(
        model_cfg, len(data.classes), (height, width, data.channels),
        normalization.mean, normalization.std, normalization.per_image,
    )
    splits = _splits(data, device, train_cfg.memory_budget_mb)
    if "train" not in splits:
        raise UserError("the training split is empty")
    if mode == "continue":
        # The extended config is what the run folder will say from now on.
        fingerprint = _fingerprint(_extended(config, name, extra_epochs), name, data.classes)
    trainer = Trainer(
        built, train_cfg, plan_stages(model_cfg), splits["train"], splits.get("val"),
        data.classes, device,
        callbacks=[Checkpoint(checkpoints), Progress(name, train_cfg.progress)]
        if train_cfg.checkpoint else [Progress(name, train_cfg.progress)],
        meta={"fingerprint": fingerprint},
    )
    if state is not None:
        trainer.load_state_dict(state)
        trainer.meta = {"fingerprint": fingerprint}
        if mode == "continue":
            trainer.extend(extra_epochs)
    started = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - started
    if train_cfg.checkpoint:
        trainer.save_checkpoint(checkpoints / "last.pt")
    _save_weights(trainer.model, folder / "model.safetensors")
    write_json(folder / "history.json", {"epochs": trainer.history, "events": trainer.events,
                                         "stages": trainer.freeze_reports})
    metrics: dict[str, Any] = {
        "model": name,
        "status": "ok",
        "description": model_cfg.description,
        "parameters": built.parameter_count(),
        "stages": trainer.freeze_reports,
        "epochs": trainer.epoch,
        "device": str(device),
        "hardware": describe_hardware(str(device)),
        "command": command_line(),
        "code": code_version(),
        "input": {"size": list(built.input.size), "channels": built.input.channels,
                  "mean": list(built.input.mean), "std": list(built.input.std),
                  "per_image": built.input.per_image},
        "notes": built.notes,
        "timing": {
            "train_seconds": round(trainer.train_seconds, 3),
            "wall_seconds_this_call": round(wall, 3),
            "images_per_second": round(trainer.images_seen / max(trainer.train_seconds, 1e-9), 1),
        },
    }
    _record_evaluations(trainer, splits, data, folder, config, train_cfg.seed, metrics)
    write_json(folder / "metrics.json", metrics)
    report(_summary_line(metrics))
    if train_cfg.repeats > 1 and mode != "continue":
        metrics["repeats"] = _train_repeats(config, name, data, folder, report)
        write_json(folder / "metrics.json", metrics)
    return metrics


def _train_repeats(config: Config, name: str, data: PreparedData, folder: Path,
                   report: Report) -> list[dict[str, Any]]:
    """Train the extra repeats of a model (seeds seed+1...) into `<model>/repeats/<k>/`.

    Repeats keep predictions, history and metrics (no checkpoints, no pictures, no
    robustness): enough for mean and standard deviation across seeds.
    """
    base = config.models[name].train
    found = []
    for repeat in range(1, base.repeats):
        sub = folder / "repeats" / str(repeat)
        done = sub / "metrics.json"
        if done.is_file():
            found.append(json.loads(done.read_text()))
            continue
        variant = config.model_copy(deep=True)
        variant.models[name].train.seed = base.seed + repeat
        variant.models[name].train.repeats = 1
        variant.models[name].train.checkpoint = False
        variant.evaluate.robustness = {}
        variant.evaluate.error_examples = 0
        metrics = train_model(variant, name, data, sub, report=report)
        metrics["seed"] = base.seed + repeat
        write_json(done, metrics)
        found.append(metrics)
    return [{"seed": m["seed"], "test": m.get("test")} for m in found]


class Evaluator(Protocol):
    """What can be evaluated on a split: a `Trainer` or an `ExternalModel`."""

    device: torch.device

    def evaluate(self, split: SplitImages,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> Evaluation:
        """Loss, accuracy and probabilities on `split`."""
        ...


def _record_evaluations(
    evaluator: Evaluator, splits: dict[str, SplitImages], data: PreparedData, folder: Path,
    config: Config, seed: int, metrics: dict[str, Any],
) -> None:
    """Predictions of val and test, then error pictures and robustness on test."""
    for split, filename in (("val", "predictions_val.csv"), ("test", "predictions.csv")):
        if split not in splits:
            continue
        result = evaluator.evaluate(splits[split])
        metrics[split] = {"loss": result.loss, "accuracy": result.accuracy,
                          "images": len(splits[split])}
        predictions = Predictions(splits[split].ids, splits[split].targets.numpy(),
                                  result.probabilities.numpy())
        write_predictions(folder / filename, predictions, data.classes)
        if split == "test":
            settings = config.evaluate
            # Read once: the error pictures and the explanations both need the test images.
            test_images = data.arrays("test")[0]
            found = error_analysis(test_images, predictions, data.classes, folder,
                                   settings.error_examples)
            write_json(folder / "errors.json", found)
            write_json(folder / "robustness.json", robustness(
                evaluator, splits["test"], settings.robustness, result.accuracy, seed))
            if isinstance(evaluator, Trainer) and settings.explain.images:
                loaded = LoadedModel(evaluator.model, evaluator.pipeline, evaluator.device)
                try:
                    found = explain_test_set(loaded, data, predictions, settings.explain, folder,
                                             test_images)
                except UserError as exc:
                    # The model itself is fine: keep it, say why it has no maps.
                    found = {"error": str(exc)}
                write_json(folder / "explanations.json", found)


def evaluate_external(config: Config, name: str, data: PreparedData, folder: Path,
                      report: Report = print) -> dict[str, Any]:
    """Evaluate a model trained elsewhere (ONNX/TorchScript) into its model folder."""
    model_cfg = config.models[name]
    wanted = model_cfg.input
    normalization = data.normalization()
    height, width = data.images.shape[1:3]
    explicit = wanted.mean is not None and wanted.std is not None
    spec = InputSpec(
        size=(wanted.size, wanted.size) if wanted.size else (height, width),
        channels=wanted.channels or data.channels,
        mean=tuple(wanted.mean) if explicit else normalization.mean,
        std=tuple(wanted.std) if explicit else normalization.std,
        per_image=False if explicit else normalization.per_image,
        resize=wanted.resize,
    )
    model = ExternalModel(model_cfg, spec, len(data.classes))
    splits = _splits(data, model.device, model_cfg.train.memory_budget_mb)
    metrics: dict[str, Any] = {
        "model": name, "status": "ok", "description": model_cfg.description,
        "external": str(model_cfg.external), "parameters": None, "epochs": 0,
        "input": {"size": list(spec.size), "channels": spec.channels, "mean": list(spec.mean),
                  "std": list(spec.std), "layout": wanted.layout, "scale": wanted.scale},
        "timing": {},
    }
    _record_evaluations(model, splits, data, folder, config, model_cfg.train.seed, metrics)
    write_json(folder / "metrics.json", metrics)
    report(f"{name} (external): test accuracy {metrics.get('test', {}).get('accuracy', 0):.4f}")
    return metrics


def robustness(evaluator: Evaluator, test: SplitImages, severities: dict[str, list[float]],
               clean: float, seed: int) -> dict[str, Any]:
    """Test accuracy under each corruption and severity, with the clean accuracy."""
    found: dict[str, Any] = {"clean_accuracy": clean, "corruptions": {}}
    for name, levels in severities.items():
        corrupt = CORRUPTIONS.get(name)
        rows = []
        for severity in levels:
            gen = torch.Generator(device=evaluator.device).manual_seed(seed)
            accuracy = evaluator.evaluate(test, partial(corrupt, severity=severity, gen=gen)
                                          ).accuracy
            rows.append({"severity": severity, "accuracy": accuracy,
                         "drop": clean - accuracy})
        found["corruptions"][name] = rows
    return found


def _summary_line(metrics: dict[str, Any]) -> str:
    parts = [f"{metrics['model']}: {metrics['epochs']} epochs"]
    for split in ("val", "test"):
        if split in metrics:
            parts.append(f"{split} accuracy {metrics[split]['accuracy']:.4f}")
    parts.append(f"{metrics['timing']['train_seconds']:.1f}s")
    return ", ".join(parts)


def _failure(name: str, exc: BaseException, config: Config) -> tuple[str, int]:
    """A one-line reason for a failed model and its exit code."""
    if isinstance(exc, UserError):
        return str(exc), exc.exit_code
    if isinstance(exc, TrainingDivergedError):
        return (f"{exc}; training stopped, the last good epoch's checkpoint is kept "
                "(lower the learning rate or add grad_clip)"), 1
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        batch = config.models[name].train.batch_size
        return (f"out of GPU memory at batch size {batch}: try "
                f"--set models.{name}.train.batch_size={max(batch // 2, 1)}"), 2
    return f"{type(exc).__name__}: {exc}", 1


def _extended(config: Config, name: str, epochs: int) -> Config:
    """`config` with model `name` trained `epochs` more (its last stage, or train.epochs)."""
    updated = config.model_copy(deep=True)
    model = updated.models[name]
    if model.stages:
        model.stages[-1].epochs += epochs
    else:
        model.train.epochs += epochs
    return updated


def _run_models(
    config: Config, data: PreparedData, folder: Path, names: list[str], mode: str,
    extra_epochs: int, report: Report, outcomes: dict[str, dict[str, Any]],
) -> None:
    """Train `names` one after the other, filling `outcomes` as each finishes or fails."""
    for name in names:
        model_folder = folder / name
        done = model_folder / "metrics.json"
        if mode == "resume" and done.is_file():
            previous = json.loads(done.read_text())
            if previous.get("status") == "ok":
                report(f"{name}: already trained, kept")
                outcomes[name] = previous
                continue
        try:
            if config.models[name].external is not None:
                outcomes[name] = evaluate_external(config, name, data, model_folder, report)
                continue
            outcomes[name] = train_model(config, name, data, model_folder, mode=mode,
                                         extra_epochs=extra_epochs, report=report)
        except Exception as exc:  # one model's failure must not end the run
            reason, code = _failure(name, exc, config)
            if not isinstance(exc, UserError | TrainingDivergedError):
                write_text(model_folder / "error.txt", traceback.format_exc())
            outcomes[name] = {"model": name, "status": "failed", "error": reason,
                              "exit_code": code}
            write_json(done, outcomes[name])
            report(f"{name}: FAILED: {reason}")


def run_benchmark(
    config: Config,
    *,
    resume: Path | None = None,
    only: list[str] | None = None,
    report: Report = print,
) -> RunResult:
    """Train every model (or `only` those) of `config`; resume into `resume` if given."""
    names = _select(config, only)
    data = prepare_data(config.data)
    if resume is not None:
        folder = Path(resume)
        if not (folder / "config.yaml").is_file():
            raise UserError(f"{folder} is not a run folder (no config.yaml)")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = config.output.dir / str(config.output.name) / stamp
        folder.mkdir(parents=True, exist_ok=False)
    save_config(config, folder)
    write_json(folder / "data.json", data.record)
    if not (folder / "data" / "inspect.json").is_file():
        write_json(folder / "data" / "inspect.json", inspect_data(data, folder / "data"))
    report(f"run folder: {folder}")
    # A resumed run may add models to a folder: those trained before stay on its leaderboard.
    result = RunResult(folder, _read_outcomes(folder, config) if resume is not None else {})
    try:
        _run_models(config, data, folder, names, "resume" if resume else "new", 0, report,
                    result.models)
    finally:
        # Also on Ctrl-C: the leaderboard lists whatever finished.
        finish_run(result, config)
    return result


def continue_run(folder: Path, epochs: int, only: list[str] | None = None,
                 report: Report = print) -> RunResult:
    """Train finished models of a run folder `epochs` more epochs, in place."""
    folder = Path(folder)
    if not (folder / "config.yaml").is_file():
        raise UserError(f"{folder} is not a run folder (no config.yaml)")
    config = load_config(folder / "config.yaml")
    names = _select(config, only)
    data = prepare_data(config.data)
    result = RunResult(folder, _read_outcomes(folder, config))
    outcomes: dict[str, dict[str, Any]] = {}
    try:
        _run_models(config, data, folder, names, "continue", epochs, report, outcomes)
    finally:
        for name, outcome in outcomes.items():
            result.models[name] = outcome
            if outcome["status"] == "ok":
                config = _extended(config, name, epochs)
        save_config(config, folder)
        finish_run(result, config)
    return result


def _read_outcomes(folder: Path, config: Config) -> dict[str, dict[str, Any]]:
    found = {}
    for name in config.models:
        path = folder / name / "metrics.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def _select(config: Config, only: list[str] | None) -> list[str]:
    if not config.models:
        raise UserError("the config names no models: add a models: section")
    if not only:
        return list(config.models)
    unknown = [n for n in only if n not in config.models]
    if unknown:
        raise UserError(f"unknown model(s) {unknown}; the config has {list(config.models)}")
    return only


def finish_run(result: RunResult, config: Config) -> None:
    """Evaluate the run's models from their predictions; write the leaderboard and run.json."""
    write_json(result.folder / "run.json", {
        "name": config.output.name, "folder": str(result.folder),
        "models": {n: {"status": m["status"], **({"error": m["error"]} if "error" in m else {})}
                   for n, m in result.models.items()},
    })
    result.board = evaluate_folder(result.folder, config.evaluate, list(result.models))
    write_report(result.folder)
