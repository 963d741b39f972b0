import numpy as np
import pytest

from visionbench.data.labels import map_labels
from visionbench.data.splits import assign_splits, check_classes, stratified_group_folds
from visionbench.errors import UserError
from visionbench.schemas.data import LabelConfig

SCANS = ["Photo", "Painting", "Schematics", "Sketch", "Text", "Photo"]


def test_positive_turns_five_classes_into_binary():
    mapping = map_labels(SCANS, LabelConfig(positive=["Photo"]))
    assert mapping.classes == ["not_Photo", "Photo"]
    assert mapping.targets.tolist() == [1, 0, 0, 0, 0, 1]
    named = map_labels(
        SCANS, LabelConfig(positive=["Photo"], positive_name="photo", negative_name="document")
    )
    assert named.classes == ["document", "photo"]


def test_rename_merge_select_in_order():
    config = LabelConfig(
        rename={"Text": "text"},
        merge={"drawing": ["Sketch", "Schematics"]},
        select=["drawing", "text", "Photo"],
    )
    mapping = map_labels(SCANS, config)
    assert mapping.classes == ["Photo", "drawing", "text"]
    assert mapping.targets.tolist() == [0, -1, 1, 1, 2, 0]


def test_unknown_class_names_are_errors_with_suggestions():
    with pytest.raises(UserError, match=r"no class 'Phot'; did you mean 'Photo'"):
        map_labels(SCANS, LabelConfig(positive=["Phot"]))
    with pytest.raises(UserError, match=r"data.labels.select"):
        map_labels(SCANS, LabelConfig(select=["cats", "Photo"]))


def test_single_class_is_an_error():
    with pytest.raises(UserError, match=r"at least two classes"):
        map_labels(["a", "a"], LabelConfig())
    with pytest.raises(UserError, match=r"at least two classes"):
        map_labels(SCANS, LabelConfig(select=["Photo"]))


def test_positive_group_indices():
    raw = ["glioma", "meningioma", "none", "pituitary"]
    mapping = map_labels(
        raw,
        LabelConfig(
            positive_group={"name": "tumour", "classes": ["glioma", "pituitary", "meningioma"]}
        ),
    )
    assert mapping.positive_group == "tumour" and mapping.positive_classes == [0, 1, 3]


def counts(split, targets, name):
    return np.bincount(targets[split == name], minlength=targets.max() + 1)


def test_stratified_split_is_deterministic_and_seed_dependent():
    targets = np.repeat([0, 1, 2], [100, 50, 20])
    groups = np.arange(len(targets))
    first, _ = assign_splits(targets, [None] * 170, groups, val=0.2, test=0.1, seed=1)
    again, _ = assign_splits(targets, [None] * 170, groups, val=0.2, test=0.1, seed=1)
    other, _ = assign_splits(targets, [None] * 170, groups, val=0.2, test=0.1, seed=2)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    assert counts(first, targets, "test").tolist() == [10, 5, 2]
    assert counts(first, targets, "val").tolist() == [18, 9, 4]


def test_given_test_split_is_never_touched_nor_used_for_validation():
    targets = np.repeat([0, 1], 50)
    given = ["train"] * 80 + ["test"] * 20
    targets[80:] = np.repeat([0, 1], 10)
    split, _ = assign_splits(targets, given, np.arange(100), val=0.25, test=0.5, seed=0)
    assert (split[80:] == "test").all()
    assert (split[:80] != "test").all()
    assert (split == "val").sum() == 20


def test_duplicate_groups_stay_in_one_split():
    targets = np.repeat([0, 1], 40)
    groups = np.arange(80) // 4  # groups of four identical images
    for seed in range(5):
        split, _ = assign_splits(targets, [None] * 80, groups, val=0.25, test=0.0, seed=seed)
        for group in np.unique(groups):
            assert len(set(split[groups == group])) == 1


def test_kfold_balances_classes_and_uses_fold_zero_as_validation():
    targets = np.repeat([0, 1], [50, 25])
    split, fold = assign_splits(
        targets, [None] * 75, np.arange(75), val=0.2, test=0.0, seed=0, folds=5
    )
    assert sorted(np.bincount(fold[targets == 0])) == [10] * 5
    assert sorted(np.bincount(fold[targets == 1])) == [5] * 5
    np.testing.assert_array_equal(split == "val", fold == 0)
    assert stratified_group_folds(targets, np.arange(75), 5, np.random.default_rng(0)).max() == 4


def test_test_class_absent_from_training_is_an_error():
    targets = np.array([0, 0, 1, 1, 2])
    split = np.array(["train", "train", "train", "train", "test"])
    with pytest.raises(UserError, match=r"test class\(es\) c have no training images"):
        check_classes(targets, split, ["a", "b", "c"])
