"""Before anything trains: which models, into which folder, and whether a saved checkpoint
may be resumed under the current config."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from visionbench.config import Config
from visionbench.errors import UserError
from visionbench.models.family import family_of
from visionbench.rundir.layout import RunFolder
from visionbench.schemas.evaluate import ExplainConfig


def select_models(config: Config, only: list[str] | None) -> list[str]:
    """The models to run: every model of the config, or the named ones (which must exist)."""
    if not config.models:
        raise UserError("the config names no models: add a models: section")
    if not only:
        return list(config.models)
    unknown = [n for n in only if n not in config.models]
    if unknown:
        raise UserError(f"unknown model(s) {unknown}; the config has {list(config.models)}")
    return only


def new_run_folder(config: Config) -> RunFolder:
    """A fresh `<output.dir>/<name>/<timestamp>/`."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = config.output.dir / str(config.output.name) / stamp
    path, count = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return RunFolder(path)
        except FileExistsError:  # another run started in the same second
            count += 1
            path = base.with_name(f"{stamp}-{count}")


def fingerprint(config: Config, name: str, classes: list[str]) -> dict[str, Any]:
    """What a checkpoint of model `name` was trained under; the description and the
    progress display may change between an interruption and its resume."""
    model = config.models[name].model_dump(mode="json")
    model.pop("description", None)
    model["train"].pop("progress", None)
    return {"model": model, "data": config.data.model_dump(mode="json"), "classes": classes}


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    differences = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}")
    return differences


def changed_since(saved: Config, current: Config, names: list[str], run: RunFolder
                  ) -> dict[str, list[str]]:
    """For each of `names` that has a folder in `run`: the config keys that differ between
    the run's saved config and `current` (the data section counts for every model)."""
    data = _differences(saved.data.model_dump(mode="json"), current.data.model_dump(mode="json"),
                        "data.")
    changed = {}
    for name in names:
        if not run.model(name).path.is_dir():
            continue
        if name not in saved.models:
            keys = [f"models.{name}"]
        else:
            old, new = (fingerprint(c, name, [])["model"] for c in (saved, current))
            keys = [*data, *_differences(old, new, f"models.{name}.")]
        if keys:
            changed[name] = keys
    return changed


def same_training(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a checkpoint's fingerprint `saved` is for the training `current` describes
    (same classes, same model settings)."""
    return saved["classes"] == current["classes"] and not _differences(saved, current)


def check_resumable(saved: dict[str, Any], current: dict[str, Any], name: str,
                    hint: str = "start a new run instead") -> None:
    """Refuse to resume model `name` when its config or the class list changed; `hint`
    says what to do instead."""
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
            f"({', '.join(changed[:5])}); {hint}"
        )


def explain_settings(config: Config, name: str) -> ExplainConfig:
    """The explanation settings of model `name`: Grad-CAM reads the layer its family names
    unless `evaluate.explain.layer` says otherwise."""
    settings = config.evaluate.explain
    model = config.models[name]
    layer = settings.layer or family_of(model).gradcam_layer(model)
    return settings.model_copy(update={"layer": layer}) if layer else settings


def extended(config: Config, name: str, epochs: int) -> Config:
    """`config` with model `name` trained `epochs` more (its last stage, or train.epochs)."""
    updated = config.model_copy(deep=True)
    model = updated.models[name]
    if model.stages:
        model.stages[-1].epochs += epochs
    else:
        model.train.epochs += epochs
    return updated
