"""The typed, validated config: YAML + `--set key=value` overrides -> `Config`.

Unknown keys are errors that name the closest valid key and the file line (or the
`--set` option) they came from. A model entry may `extends:` another one; the child's
keys are deep-merged over the parent's.

Example:
    >>> cfg = load_config("quickstart", ["train.epochs=2"])
    >>> cfg.data.source, cfg.train.epochs
    ('digits', 2)
"""

from __future__ import annotations

import copy
import difflib
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from visionbench.data import hf_dataset  # noqa: F401 - registers source: hf_dataset
from visionbench.data.sources import SOURCES
from visionbench.errors import UserError
from visionbench.models.presets import PRESETS
from visionbench.rundir.layout import name_problem
from visionbench.schemas.base import STRUCTURE_ONLY, StrictModel
from visionbench.schemas.data import DataCommon
from visionbench.schemas.evaluate import TTA_SUFFIX, EvaluateConfig
from visionbench.schemas.execution import ExecutionConfig
from visionbench.schemas.models import ModelConfig
from visionbench.schemas.sweep import SweepConfig, with_setting
from visionbench.schemas.tracking import TrackingConfig
from visionbench.schemas.train import TrainConfig

RECIPES_DIR = Path(__file__).parent / "recipes"

DataConfig = Annotated[
    Union[tuple(cls for _, cls in SOURCES.items())],  # noqa: UP007 - built from the registry
    Field(discriminator="source"),
]


class OutputConfig(StrictModel):
    """Where run folders go: `<dir>/<name>/<timestamp>/`; `name` defaults to the file stem."""

    dir: Path = Path("runs")
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _one_folder(cls, value: str | None) -> str | None:
        # `../../x` would put the run outside `dir`.
        if value is not None and (not value.strip() or value in (".", "..")
                                  or any(c in value for c in "/\\\0")):
            raise ValueError("output.name is one folder name: no '/', '\\', '.' or '..'")
        return value


class Provenance(StrictModel):
    """Written with every saved config (versions, commit, command); ignored when loading."""

    created_at: str
    command: list[str]
    visionbench: str
    python: str
    platform: str
    packages: dict[str, str]
    git: dict[str, str | bool | None]
    earlier: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Earlier commands that wrote to the same run folder (resume, continue), "
        "oldest first, each with its time and commit.")


class Config(StrictModel):
    """A whole visionbench config."""

    data: DataConfig
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    sweep: SweepConfig | None = None
    provenance: Provenance | None = None


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a built-in recipe (`quickstart`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    recipe = RECIPES_DIR / f"{Path(name_or_path).stem}.yaml"
    if path.suffix in ("", ".yaml", ".yml") and path.parent == Path(".") and recipe.is_file():
        return recipe
    if path.exists():
        raise UserError(f"config {path} is not a file")
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise UserError(f"config file not found: {path} (built-in recipes: {known})")


def load_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read, override, resolve `extends:` and validate a config; errors are `UserError`s."""
    path = resolve_config_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=_ConfigLoader)
        _check_size(node, path)
        raw = yaml.load(text, Loader=_ConfigLoader)
        lines = _line_numbers(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deep to be a config") from None
    except ValueError as exc:  # a number of thousands of digits, say
        raise UserError(f"{path}: invalid value: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a config is a mapping with data, models, train, ... sections")
    return config_from_dict(raw, overrides, source=str(path), lines=lines, stem=path.stem)


# Aliases can make a few lines stand for billions of values; no config comes near this.
MAX_YAML_VALUES = 100_000


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` merges a mapping; its keys may be overridden
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (lines {seen[key]} and {line})",
                    key_node.start_mark)
            seen[key] = line
        self.flatten_mapping(node)
        return super().construct_mapping(node, deep=deep)


def _check_size(node: yaml.Node | None, path: Path) -> None:
    """Refuse a document whose aliases expand to more than MAX_YAML_VALUES values (counted
    once per node, so the count itself stays cheap)."""
    sizes: dict[int, int] = {}

    def size(item: yaml.Node) -> int:
        if id(item) not in sizes:
            sizes[id(item)] = 1  # a cycle counts once
            children: list[yaml.Node] = []
            if isinstance(item, yaml.MappingNode):
                children = [n for pair in item.value for n in pair]
            elif isinstance(item, yaml.SequenceNode):
                children = list(item.value)
            sizes[id(item)] = 1 + sum(size(child) for child in children)
            if sizes[id(item)] > MAX_YAML_VALUES:
                raise UserError(f"{path}: its aliases expand to more than "
                                f"{MAX_YAML_VALUES:,} values; this is not a config")
        return sizes[id(item)]

    if node is not None:
        size(node)


def config_from_dict(
    raw: dict[str, Any],
    overrides: Sequence[str] = (),
    *,
    source: str = "config",
    lines: dict[tuple[Any, ...], int] | None = None,
    stem: str = "run",
) -> Config:
    """Validate a config held in a dict (the YAML's content), after `--set` overrides."""
    raw = copy.deepcopy(raw)
    overridden: set[tuple[str, ...]] = set()
    for override in overrides:
        overridden.add(_apply_override(raw, override))
    if isinstance(raw.get("models"), dict):
        raw["models"] = _resolve_extends(raw["models"])
        raw["models"] = {
            name: _complete_model(name, entry, raw.get("train"), lines, source)
            for name, entry in raw["models"].items()
        }
    try:
        # The structure first: a misspelt key or a wrong value is refused in a fraction of a
        # second, before the modules that fill the registries (torch, Captum, timm) load.
        Config.model_validate(raw, context={STRUCTURE_ONLY: True})
        # They fill the registries the names are checked against (metrics, corruptions,
        # explanation methods, optimizers, schedules, balancing, outputs, activations,
        # layer types, model families, trackers, executors).
        from visionbench import registries  # noqa: F401
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(_error_line(exc, raw, source, lines or {}, overridden)) from None
    _check_names(config)
    _check_ensembles(config)
    _check_tta(config)
    _check_sweep(config)
    if config.output.name is None:
        config.output.name = stem
    return config


def _check_names(config: Config) -> None:
    """Model and ensemble names become folder names: they cannot leave the run folder, nor
    take the name of a test-time augmentation row."""
    for section, names in (("models", config.models), ("evaluate.ensembles",
                                                       config.evaluate.ensembles)):
        for name in names:
            problem = name_problem(name)
            if problem is None and name.endswith(TTA_SUFFIX):
                problem = (f"names ending in {TTA_SUFFIX} are kept for test-time "
                           "augmentation rows")
            if problem is not None:
                raise UserError(f"{section}.{name}: {problem}")


def _check_tta(config: Config) -> None:
    """Test-time augmentation names models of the config."""
    tta = config.evaluate.tta
    unknown = [m for m in (tta.models or []) if m not in config.models] if tta else []
    if unknown:
        raise UserError(f"evaluate.tta.models: {', '.join(unknown)} is not a model of this "
                        f"config (models: {', '.join(config.models)})")


def _check_ensembles(config: Config) -> None:
    """Ensembles name two or more models of the config and no model's name."""
    for name, members in config.evaluate.ensembles.items():
        where = f"evaluate.ensembles.{name}"
        if name in config.models:
            raise UserError(f"{where}: a model is already called {name}; rename the ensemble")
        unknown = [m for m in members if m not in config.models]
        if unknown:
            raise UserError(f"{where}: {', '.join(unknown)} is not a model of this config "
                            f"(models: {', '.join(config.models)})")
        if len(set(members)) < 2:
            raise UserError(f"{where}: an ensemble needs two or more different models")


def _check_sweep(config: Config) -> None:
    """A sweep searches a model of the config, under a new name, over settings that exist
    and accept every end of their range (checked now, before any image is decoded)."""
    sweep = config.sweep
    if sweep is None:
        return
    if sweep.model not in config.models:
        raise UserError(f"sweep.model: {sweep.model} is not a model of this config (models: "
                        f"{', '.join(config.models)})")
    problem = name_problem(sweep.tuned)
    # A run folder's saved config (it has provenance) holds the tuned model already.
    taken = sweep.tuned in config.models and config.provenance is None
    if problem is not None or taken:
        raise UserError(f"sweep.name: {sweep.tuned} " + (problem or "is already a model of "
                                                         "this config; name the tuned one"))
    base = config.models[sweep.model].model_dump(mode="json")
    for path, dimension in sweep.space.items():
        ends = dimension.choices or [dimension.low, dimension.high]
        for value in ends:
            value = int(value) if dimension.choices is None and dimension.whole else value
            try:
                ModelConfig.model_validate(with_setting(base, path, value))
            except ValueError as exc:
                reason = str(exc).splitlines()[-1] if "validation error" in str(exc) else exc
                raise UserError(f"sweep.space.{path}: {value!r} does not fit model "
                                f"{sweep.model}: {reason}") from None


def dump_config(config: Config) -> str:
    """The config as YAML, every default filled in; loading it back gives an equal config."""
    data = config.model_dump(mode="json", exclude_none=False)
    # The source tag and the source's own keys read best first.
    common = set(DataCommon.model_fields)
    source_data = data["data"]
    data["data"] = {
        **{k: v for k, v in source_data.items() if k not in common},
        **{k: v for k, v in source_data.items() if k in common},
    }
    data["data"] = {"source": source_data["source"], **data["data"]}
    if data.get("provenance") is None:
        data.pop("provenance", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _line_numbers(node: yaml.Node | None, prefix: tuple[Any, ...] = ()) -> dict[tuple, int]:
    """Map each key path of a composed YAML document to its 1-based line."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, key_node.value)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_line_numbers(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*prefix, index)] = item.start_mark.line + 1
            lines.update(_line_numbers(item, (*prefix, index)))
    return lines


def _apply_override(raw: dict[str, Any], override: str) -> tuple[str, ...]:
    """Set `a.b.c=value` in `raw` (value parsed as YAML); returns the key path."""
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {override!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
    parts = tuple(key.strip().split("."))
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError):
        parsed = value
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            where = ".".join(parts[:depth]) or "the config"
            raise UserError(f"--set {key}: {where} is not a mapping")
        if not isinstance(node.get(part), dict | list):
            node[part] = {}
        node = node[part]
    if isinstance(node, list) and parts[-1].isdigit() and int(parts[-1]) < len(node):
        node[int(parts[-1])] = parsed
    elif isinstance(node, dict):
        node[parts[-1]] = parsed
    else:
        raise UserError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")
    return parts


def _deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve_extends(models: dict[str, Any]) -> dict[str, Any]:
    """Replace each `extends: parent` by the parent's (resolved) keys under the child's."""
    resolved: dict[str, Any] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        entry = models[name]
        if not isinstance(entry, dict):
            raise UserError(f"models.{name}: a model entry is a mapping, got {entry!r}")
        parent = entry.get("extends")
        if parent is None:
            resolved[name] = entry
            return entry
        if parent not in models:
            close = difflib.get_close_matches(str(parent), list(models), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"models.{name}.extends: no model named {parent!r}{hint}")
        if parent in chain:
            raise UserError(f"models.{name}.extends: cycle {' -> '.join((*chain, parent))}")
        own = {k: v for k, v in entry.items() if k != "extends"}
        resolved[name] = _deep_merge(resolve(parent, (*chain, parent)), own)
        return resolved[name]

    return {name: resolve(name, (name,)) for name in models}


def _complete_model(
    name: str,
    entry: Any,
    train: Any,
    lines: dict[tuple[Any, ...], int] | None,
    source: str,
) -> Any:
    """Lay the entry over its preset and its `train:` over the top-level `train:`.

    Each stage's partial `optimizer:` is laid over the model's optimizer, so
    `stages: [{optimizer: {lr: 1e-4}}]` keeps the model's optimizer name and settings.
    """
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    preset = entry.get("preset")
    if preset is not None:
        try:
            entry = _deep_merge(PRESETS.get(str(preset)), entry)
        except UserError as exc:
            where = _where(("models", name, "preset"), source, lines or {}, set())
            raise UserError(f"{where}: models.{name}.preset: {exc}") from None
    own_train = entry.get("train")
    if isinstance(train, dict) and (own_train is None or isinstance(own_train, dict)):
        entry["train"] = _deep_merge(train, own_train or {})
    optimizer = entry.get("train", {}).get("optimizer", {}) if isinstance(
        entry.get("train"), dict) else {}
    stages = entry.get("stages")
    if isinstance(stages, list) and isinstance(optimizer, dict):
        entry["stages"] = [
            {**stage, "optimizer": _deep_merge(optimizer, stage["optimizer"])}
            if isinstance(stage, dict) and isinstance(stage.get("optimizer"), dict)
            else stage
            for stage in stages
        ]
    return entry


def _clean_location(raw: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the union tags pydantic inserts into error locations (`data.folder.path`)."""
    clean: list[Any] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("source") == part:
            continue
        if part == "[key]":  # pydantic's marker for an invalid dict key (the key precedes it)
            continue
        clean.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(clean)


def _unwrap(annotation: Any, raw_node: Any) -> Any:
    """The model class an annotation stands for at a raw node (Optional, unions, tags)."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0], raw_node)
    if get_origin(annotation) in (Union, types.UnionType):
        models = [
            a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        tag = raw_node.get("source") if isinstance(raw_node, dict) else None
        for model in models:
            field = model.model_fields.get("source")
            if field is not None and get_args(field.annotation) == (tag,):
                return model
        return models[0] if len(models) == 1 else None
    return annotation


def _valid_keys(raw: Any, path: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at `path`, found by walking the Config types."""
    annotation: Any = Config
    node = raw
    for part in path:
        annotation = _unwrap(annotation, node)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return []
            annotation = field.annotation
        elif get_origin(annotation) in (dict, list, tuple):
            annotation = get_args(annotation)[-1] if get_args(annotation) else Any
        else:
            return []
        node = node.get(part) if isinstance(node, dict) else None
    annotation = _unwrap(annotation, node)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _where(
    path: tuple[Any, ...],
    source: str,
    lines: dict[tuple, int],
    overridden: set[tuple[str, ...]],
) -> str:
    as_strings = tuple(str(p) for p in path)
    for cut in range(len(path), 0, -1):
        if as_strings[:cut] in overridden:
            return "--set " + ".".join(as_strings[:cut])
        if path[:cut] in lines:
            return f"{source} line {lines[path[:cut]]}"
    return source


def _error_line(
    error: ValidationError,
    raw: dict[str, Any],
    source: str,
    lines: dict[tuple, int],
    overridden: set[tuple[str, ...]],
) -> str:
    """One line per the first problem (with a count of the others)."""
    messages = []
    # A misspelt key also makes the real key 'missing': report the misspelling first.
    ordered = sorted(error.errors(), key=lambda item: item["type"] != "extra_forbidden")
    located = [(item, _clean_location(raw, tuple(item["loc"]))) for item in ordered]
    # Each model carries a copy of the top-level train: section; a mistake made there is
    # reported once, where it was written.
    top = {(path, item["type"]) for item, path in located if path[:1] == ("train",)}
    located = [(item, path) for item, path in located
               if not (path[:1] == ("models",) and path[2:3] == ("train",)
                       and ((*path[2:],), item["type"]) in top)]
    for item, path in located:
        dotted = ".".join(str(p) for p in path)
        kind = item["type"]
        if kind == "extra_forbidden":
            parent, key = path[:-1], str(path[-1])
            close = difflib.get_close_matches(key, _valid_keys(raw, parent), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(_valid_keys(raw, parent))
            text = f"unknown key {dotted!r}{hint} (valid here: {valid})"
        elif kind == "missing":
            text = f"{dotted}: required key is missing"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            context = item.get("ctx", {})
            tag, field = context.get("tag"), str(context.get("discriminator", "")).strip("'")
            path = (*path, field)
            known = (SOURCES.names() if field == "source" else
                     [t.strip(" '") for t in str(context.get("expected_tags", "")).split(",")])
            what = {"source": "data source", "type": "layer type"}.get(field, field)
            close = difflib.get_close_matches(str(tag), known, n=1) if tag else []
            hint = f"did you mean {close[0]!r}? " if close else ""
            text = (
                f"{'.'.join(map(str, path))}: {'missing' if tag is None else repr(tag)} is not a "
                f"{what}; {hint}known: {', '.join(known)}"
            )
        elif kind == "registry_name":
            text = f"{dotted}: {item['msg']}"
        else:
            text = f"{dotted}: {item['msg']} (got {item.get('input')!r})"
        messages.append(f"{_where(path, source, lines, overridden)}: {text}")
    more = f" (and {len(messages) - 1} more problem(s))" if len(messages) > 1 else ""
    return messages[0] + more
