"""Label mapping: rename, merge, select, and one-vs-rest binary; the positive group.

Example:
    >>> from visionbench.schemas.data import LabelConfig
    >>> mapping = map_labels(["Photo", "Text", "Sketch"], LabelConfig(positive=["Photo"]))
    >>> mapping.classes, mapping.targets.tolist()
    (['not_Photo', 'Photo'], [1, 0, 0])
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

from visionbench.errors import UserError
from visionbench.schemas.data import LabelConfig


@dataclass(frozen=True)
class LabelMapping:
    """Integer targets (-1 for images whose class was not selected) and the class names."""

    classes: list[str]
    targets: np.ndarray
    positive_group: str | None
    positive_classes: list[int]
    notes: list[str]


def _check_known(names: list[str], known: set[str], where: str) -> None:
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(
                f"data.labels.{where}: no class {name!r}; {hint}classes: {', '.join(sorted(known))}"
            )


def map_labels(raw: list[str], config: LabelConfig) -> LabelMapping:
    """Apply `config` to the raw class name of every image."""
    labels = np.asarray(raw, dtype=object)
    notes: list[str] = []
    known = set(raw)
    _check_known(list(config.rename), known, "rename")
    labels = np.asarray([config.rename.get(label, label) for label in labels], dtype=object)
    known = set(labels)
    for new_name, old_names in config.merge.items():
        _check_known(old_names, known, f"merge.{new_name}")
        labels[np.isin(labels, old_names)] = new_name
        notes.append(f"merged {', '.join(old_names)} into {new_name}")
    known = set(labels)
    keep = np.ones(len(labels), bool)
    if config.select is not None:
        _check_known(config.select, known, "select")
        keep = np.isin(labels, config.select)
        dropped = sorted(known - set(config.select))
        if dropped:
            notes.append(f"left out classes {', '.join(dropped)} ({int((~keep).sum())} images)")
        known = set(config.select)
    if config.positive is not None:
        _check_known(config.positive, known, "positive")
        positive_name = config.positive_name or "+".join(config.positive)
        negative_name = config.negative_name or f"not_{positive_name}"
        if positive_name == negative_name:
            raise UserError("data.labels: positive_name and negative_name must differ")
        is_positive = np.isin(labels, config.positive)
        notes.append(
            f"binary: {positive_name} = {', '.join(config.positive)}; rest = {negative_name}"
        )
        labels = np.where(is_positive, positive_name, negative_name).astype(object)
        classes = [negative_name, positive_name]
    else:
        classes = sorted(known)
    present = sorted(set(labels[keep]))
    if len(present) < 2:
        raise UserError(
            f"need at least two classes, found {len(present)} ({', '.join(present) or 'none'}); "
            "check data.path and data.labels"
        )
    index = {name: i for i, name in enumerate(classes)}
    targets = np.asarray(
        [index.get(label, -1) if k else -1 for label, k in zip(labels, keep, strict=True)]
    )
    group, group_classes = None, []
    if config.positive_group is not None:
        _check_known(config.positive_group.classes, set(classes), "positive_group.classes")
        group = config.positive_group.name
        group_classes = sorted(index[name] for name in config.positive_group.classes)
    return LabelMapping(classes, targets.astype(np.int64), group, group_classes, notes)
