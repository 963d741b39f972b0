"""Stratified, seeded, duplicate-aware splits.

Rules: a test split given by the source is never touched and never feeds validation;
validation (and test, when none is given) is carved from the training data per class;
images in the same duplicate group always land in the same split, so a near-copy cannot
leak from training into validation.

Example:
    >>> import numpy as np
    >>> targets = np.array([0] * 10 + [1] * 10)
    >>> split, _ = assign_splits(targets, [None] * 20, np.arange(20), val=0.2, test=0.0, seed=0)
    >>> sorted(((split == "val").nonzero()[0] // 10).tolist())
    [0, 0, 1, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visionbench.errors import UserError


def _group_labels(targets: np.ndarray, groups: np.ndarray) -> dict[int, tuple[int, int]]:
    """group id -> (label of its first member, size)."""
    info: dict[int, tuple[int, int]] = {}
    for target, group in zip(targets.tolist(), groups.tolist(), strict=True):
        label, size = info.get(group, (target, 0))
        info[group] = (label, size + 1)
    return info


def stratified_group_sample(
    targets: np.ndarray,
    groups: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean mask selecting about `fraction` of each class, whole groups at a time."""
    info = _group_labels(targets, groups)
    chosen: set[int] = set()
    for label in np.unique(targets).tolist():
        class_groups = [g for g, (lab, _) in info.items() if lab == label]
        class_groups = [class_groups[i] for i in rng.permutation(len(class_groups))]
        wanted = round(fraction * sum(info[g][1] for g in class_groups))
        taken = 0
        for group in class_groups:
            if taken >= wanted:
                break
            chosen.add(group)
            taken += info[group][1]
    return np.isin(groups, list(chosen))


def stratified_group_folds(
    targets: np.ndarray, groups: np.ndarray, folds: int, rng: np.random.Generator
) -> np.ndarray:
    """Fold index per image: each class spread evenly over `folds`, groups kept whole."""
    info = _group_labels(targets, groups)
    fold_of_group: dict[int, int] = {}
    for label in np.unique(targets).tolist():
        class_groups = [g for g, (lab, _) in info.items() if lab == label]
        class_groups = [class_groups[i] for i in rng.permutation(len(class_groups))]
        # Largest groups first, each to the fold with the fewest images of this class.
        class_groups.sort(key=lambda g: -info[g][1])
        filled = np.zeros(folds, np.int64)
        for group in class_groups:
            fold = int(np.argmin(filled))
            fold_of_group[group] = fold
            filled[fold] += info[group][1]
    return np.asarray([fold_of_group[g] for g in groups.tolist()], np.int64)


def assign_splits(
    targets: np.ndarray,
    given: Sequence[str | None],
    groups: np.ndarray,
    *,
    val: float,
    test: float,
    seed: int,
    folds: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split name (`train`, `val`, `test`) and fold (-1 outside k-fold) per image.

    `given` holds the split each image came with (None when the source has no splits). A
    given `test` is kept as it is; validation is carved from training images only. With
    `folds`, every training image gets a fold and validation is fold 0.
    """
    rng = np.random.default_rng(seed)
    given_array = np.asarray([g or "" for g in given], dtype=object)
    split = np.where(given_array == "", "train", given_array).astype(object)
    if not (given_array == "test").any() and test > 0:
        pool = split == "train"
        carved = stratified_group_sample(targets[pool], groups[pool], test, rng)
        split[np.flatnonzero(pool)[carved]] = "test"
    fold = np.full(len(split), -1, np.int64)
    if folds is not None:
        pool = np.isin(split, ["train", "val"])
        fold[pool] = stratified_group_folds(targets[pool], groups[pool], folds, rng)
        split[pool] = np.where(fold[pool] == 0, "val", "train")
    elif not (given_array == "val").any() and val > 0:
        pool = split == "train"
        carved = stratified_group_sample(targets[pool], groups[pool], val, rng)
        split[np.flatnonzero(pool)[carved]] = "val"
    return split.astype(str), fold


def check_classes(targets: np.ndarray, split: np.ndarray, classes: list[str]) -> None:
    """Every class must be in training; a test class absent from training is an error."""
    train_classes = set(targets[split == "train"].tolist())
    for name, place in (("test", "test"), ("val", "validation")):
        missing = sorted(set(targets[split == name].tolist()) - train_classes)
        if missing:
            names = ", ".join(classes[i] for i in missing)
            raise UserError(
                f"{place} class(es) {names} have no training images; add them to the "
                "training data or leave them out with data.labels.select"
            )
    absent = [classes[i] for i in range(len(classes)) if i not in train_classes]
    if absent:
        raise UserError(f"class(es) {', '.join(absent)} have no training images")
