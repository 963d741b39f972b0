"""From a data config to decoded, labelled, split images and the record of how.

`prepare_data` is the one entry point: source -> labels -> decode (cached) -> duplicates ->
splits -> duplicate policy. Its `record` is what every run stores as `data.json`.

Example:
    >>> import tempfile
    >>> from visionbench.config import load_config
    >>> cache = f"data.cache_dir={tempfile.mkdtemp()}"  # a fresh cache, not the user's
    >>> data = prepare_data(load_config("quickstart", [cache]).data)
    >>> data.classes[:3], sorted(data.record.splits)
    (['0', '1', '2'], ['test', 'train', 'val'])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from visionbench.data.cache import Decoded, decode
from visionbench.data.decode import decode_item, with_channels
from visionbench.data.duplicates import (
    DuplicatePairs,
    connected_groups,
    find_duplicates,
    pixel_similarity,
    summarize,
)
from visionbench.data.groups import group_names, group_pairs, group_summary
from visionbench.data.labels import LabelMapping, map_labels
from visionbench.data.normalize import Normalization, resolve_normalization
from visionbench.data.sources import DataSource, SourceData
from visionbench.data.splits import assign_splits, check_classes, stratified_group_folds
from visionbench.data.streamed import StreamedImages
from visionbench.errors import UserError
from visionbench.readers import refuse_missing
from visionbench.rundir.documents import (
    CacheRecord,
    DataRecord,
    DuplicateFindings,
    GroupFindings,
    IgnoredFiles,
    Notice,
    PositiveGroupRecord,
    SplitPolicy,
)

SPLITS = ("train", "val", "test")
SMALL_TEST_CLASS = 20


@dataclass
class PreparedData:
    """Decoded images with their labels and splits; `images[index[i]]` is image `i`."""

    config: DataSource
    classes: list[str]
    images: np.ndarray | StreamedImages
    index: np.ndarray
    ids: list[str]
    targets: np.ndarray
    split: np.ndarray
    fold: np.ndarray
    labels: LabelMapping
    decoded: Decoded
    # Which images must stay together (duplicates, split.group_by): what folds keep whole.
    groups: np.ndarray | None = None
    # The file of each image (`ids` order), for sources of files; None for arrays.
    paths: list[Path] | None = None
    _record: DataRecord | None = field(default=None, repr=False)
    _normalization: Normalization | None = field(default=None, repr=False)

    @property
    def record(self) -> DataRecord:
        """What the run stores as `data.json`, built once at the end of `prepare_data`."""
        assert self._record is not None, "prepare_data builds the record"
        return self._record

    @property
    def channels(self) -> int:
        """Channels the model sees (grey repeated to 3 for `gray3`)."""
        return self.config.preprocess.channels

    def positions(self, split: str) -> np.ndarray:
        """Positions (into `ids`, `targets`) of the images of `split`."""
        return np.flatnonzero(self.split == split)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (N, H, W, C as the model sees them) and integer targets of `split`."""
        positions = self.positions(split)
        images = np.asarray(self.images[self.index[positions]])
        return with_channels(images, self.channels), self.targets[positions]

    def pictures(self, ids: list[str]) -> np.ndarray:
        """uint8 images (N, H, W, C as the model sees them) of the images named `ids`."""
        where = {image_id: position for position, image_id in enumerate(self.ids)}
        positions = np.asarray([where[image_id] for image_id in ids], dtype=int)
        return with_channels(np.asarray(self.images[self.index[positions]]), self.channels)

    def normalization(self) -> Normalization:
        """The configured normalisation, with statistics from the training split only.

        Computed once: every model of a run asks, and `dataset` statistics read every
        training image.
        """
        if self._normalization is None:
            self._normalization = resolve_normalization(
                self.config.preprocess, self.images, self.index[self.positions("train")]
            )
        return self._normalization


    def fold_view(self, fold: int) -> PreparedData:
        """The same images with fold `fold` as validation and the other folds as training
        (k-fold cross-validation); test untouched."""
        pool = self.fold >= 0
        split = self.split.copy()
        split[pool] = np.where(self.fold[pool] == fold, "val", "train")
        return replace(self, split=split, _normalization=None)

    def pool_view(self) -> PreparedData:
        """The same images with every training and validation image as validation: what a
        model that learnt none of them (an external one) is scored on in a cross-validated
        run, beside the other models' out-of-fold predictions; test untouched."""
        split = self.split.copy()
        split[split == "train"] = "val"
        return replace(self, split=split, _normalization=None)

    def without_test(self) -> PreparedData:
        """The same images with the test split taken away (a sweep's trials never see it)."""
        split = self.split.copy()
        split[split == "test"] = "withheld"
        return replace(self, split=split, _normalization=None)

    def refold(self, seed: int) -> PreparedData:
        """The same images with the non-test ones cut into folds anew by `seed` (repeated
        cross-validation): stratified, groups kept whole; test untouched."""
        folds = self.config.split.folds
        assert folds is not None, "refold needs split.folds"
        pool = self.fold >= 0
        groups = self.groups if self.groups is not None else np.arange(len(self.ids))
        fold = self.fold.copy()
        fold[pool] = stratified_group_folds(self.targets[pool], groups[pool], folds,
                                            np.random.default_rng(seed))
        return replace(self, fold=fold, _normalization=None)

    def refit_view(self) -> PreparedData:
        """The same images with every training and validation image as training (the model
        refit after cross-validation); test untouched."""
        split = self.split.copy()
        split[split == "val"] = "train"
        return replace(self, split=split, _normalization=None)


def load_images(config: DataSource, ids: list[str], size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W, C as a model sees them) images of the source's entries `ids`, decoded
    at `size` exactly as the run's cache held them, without preparing the rest of the data."""
    source = config.load()
    where = {image_id: i for i, image_id in enumerate(source.ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise UserError(f"{missing[0]} is no longer in {source.description or 'the data'}")
    settings = config.preprocess.model_copy(update={"size": tuple(size)})
    items = source.items
    pictures = np.stack([decode_item(items[where[i]], settings) for i in ids])
    return with_channels(pictures, config.preprocess.channels)


def _limit_per_class(source: SourceData, targets: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Positions keeping at most `limit` images per (given split, class), chosen by seed."""
    rng = np.random.default_rng(seed)
    keep = []
    places = np.asarray([f"{s}|{t}" for s, t in zip(source.splits, targets.tolist(), strict=True)])
    for place in np.unique(places):
        members = np.flatnonzero(places == place)
        keep.append(np.sort(rng.permutation(members)[:limit]))
    return np.sort(np.concatenate(keep))


def _counts(targets: np.ndarray, mask: np.ndarray, classes: list[str]) -> dict[str, int]:
    counted = Counter(targets[mask].tolist())
    return {name: int(counted.get(i, 0)) for i, name in enumerate(classes)}


def prepare_data(config: DataSource) -> PreparedData:
    """Load, label, decode (cached), deduplicate-check and split the data `config` names."""
    source = config.load()
    if source.paths is not None:
        refuse_missing(source.paths, source.description or "the data")
    labels = map_labels(source.labels, config.labels)
    keep = np.flatnonzero(labels.targets >= 0)
    labelled = _counts(labels.targets[keep], np.ones(len(keep), bool), labels.classes)
    if config.split.limit_per_class is not None:
        kept = source.subset(keep)
        keep = keep[
            _limit_per_class(
                kept, labels.targets[keep], config.split.limit_per_class, config.split.seed
            )
        ]
    source = source.subset(keep)
    targets_all = labels.targets[keep]

    decoded = decode(source, config.preprocess, config.cache_dir, config.workers,
                     config.cache.max_gb)
    index = np.flatnonzero(decoded.ok)
    if len(index) == 0:
        raise UserError(f"none of the {len(source.ids)} images could be decoded; check data.path")
    ids = [source.ids[i] for i in index]
    targets = targets_all[index]
    given = (
        [source.splits[i] for i in index] if config.split.given == "keep" else [None] * len(index)
    )

    dup = config.duplicates
    pairs = find_duplicates(
        [decoded.exact[i] for i in index],
        decoded.phash[index],
        dup.near_threshold if dup.near else None,
    )
    candidates = len(pairs.near)
    if candidates:
        similarity = pixel_similarity(pairs.near, lambda found: decoded.images[index[found]])
        pairs = DuplicatePairs(pairs.exact, pairs.near[similarity >= dup.near_similarity])
    # Images stay together when they duplicate each other (unless told otherwise) and when
    # they share a group (split.group_by: one patient, one session).
    names = None
    if config.split.group_by is not None:
        every_name = group_names(config.split.group_by, source)
        names = [every_name[i] for i in index.tolist()]
    linked = [pairs.all_pairs()] if dup.keep_groups_together else []
    if names is not None:
        linked.append(group_pairs(names))
    groups = (connected_groups(len(index), np.concatenate(linked)) if linked
              else np.arange(len(index)))
    split, fold = assign_splits(
        targets,
        given,
        groups,
        val=config.split.val,
        test=config.split.test,
        seed=config.split.seed,
        folds=config.split.folds,
    )
    check_classes(targets, split, labels.classes)

    # Counted before drop_from_test takes test images away: the pairs name positions now.
    exact, near = (summarize(found, split, targets, ids) for found in (pairs.exact, pairs.near))
    leaked = _test_leaks(pairs.all_pairs(), split)
    warnings: list[Notice] = []
    dropped: list[str] = []
    leaked_ids = [ids[i] for i in leaked.tolist()]
    if len(leaked):
        message = (
            f"{len(leaked)} test image(s) duplicate training/validation images "
            f"(e.g. {ids[int(leaked[0])]})"
        )
        facts = {"images": len(leaked), "example": ids[int(leaked[0])], "policy": dup.policy}
        if dup.policy == "fail":
            raise UserError(f"{message}; duplicates.policy is 'fail' (use warn or drop_from_test)")
        if dup.policy == "drop_from_test":
            dropped = [ids[i] for i in leaked.tolist()]
            keep_mask = np.ones(len(index), bool)
            keep_mask[leaked] = False
            index, targets, split, fold, groups = (
                index[keep_mask],
                targets[keep_mask],
                split[keep_mask],
                fold[keep_mask],
                groups[keep_mask],
            )
            ids = [i for i, k in zip(ids, keep_mask, strict=True) if k]
            if names is not None:
                names = [n for n, k in zip(names, keep_mask, strict=True) if k]
            warnings.append(Notice(code="test_duplicates", data=facts,
                                   message=f"{message}: dropped from the test split"))
        else:
            warnings.append(Notice(
                code="test_duplicates", data=facts,
                message=f"{message}: test metrics may be optimistic "
                "(duplicates.policy: drop_from_test removes them)"))

    data = PreparedData(
        config, labels.classes, decoded.images, index, ids, targets, split, fold, labels, decoded,
        groups, None if source.paths is None else [source.paths[i] for i in index.tolist()],
    )
    grouped = (group_summary(config.split.group_by, names, split)
               if names is not None and config.split.group_by is not None else None)
    if grouped is not None:
        warnings += _group_warnings(grouped)
    warnings += _split_named_classes(labels.classes)
    if isinstance(decoded.images, StreamedImages):
        size = decoded.images.nbytes
        warnings.append(Notice(
            code="streamed_images", data={"bytes": size},
            message=f"the decoded images ({size / 1e9:.1f} GB) are over the decode cache's "
                    "disk budget: they are decoded from their files each time they are read "
                    "(the same pixels, slower epochs; data.cache.max_gb sets the budget)"))
    findings = DuplicateFindings(
        policy=dup.policy,
        near_threshold=dup.near_threshold if dup.near else None,
        near_similarity=dup.near_similarity if dup.near else None,
        exact=exact,
        near=near,
        dropped_from_test=dropped,
        near_candidates_rejected=candidates - len(pairs.near),
        # Kept so evaluation can also score the test split without them (policy warn).
        test_duplicates_of_training=[] if dropped else leaked_ids,
    )
    return replace(data, _record=_record(
        data, source, findings, warnings, grouped,
        labelled if config.split.limit_per_class is not None else None))


# Folder names that name a split, not a class: `train/` and `test/` given to
# `source: folder` become two classes.
SPLIT_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation",
                         "eval", "dev"})


def _split_named_classes(classes: list[str]) -> list[Notice]:
    """A warning when the classes are named like splits (a train/test tree read as
    classes)."""
    named = [name for name in classes if name.lower() in SPLIT_NAMES]
    if len(named) < 2:
        return []
    return [Notice(code="classes_named_like_splits", data={"classes": named},
                   message=f"the classes {', '.join(named)} are named like splits: if these "
                   "folders hold the splits and class folders inside them, use "
                   "data.source: presplit")]


def _group_warnings(summary: GroupFindings) -> list[Notice]:
    """A warning when groups have images in more than one split (a source's given split)."""
    straddling = summary.straddling
    if not straddling.groups:
        return []
    where = "; ".join(f"{count} in {splits}" for splits, count in straddling.splits.items())
    return [Notice(
        code="groups_straddle_splits", data=straddling.model_dump(),
        message=f"{straddling.groups} group(s) by {summary.by} have images in more than "
        f"one split ({where}; e.g. {', '.join(straddling.examples[:3])}): the source's "
        "given split mixes them, so metrics on the later split may be optimistic "
        "(split.given: pool re-splits everything with groups kept whole)")]


def _test_leaks(pairs: np.ndarray, split: np.ndarray) -> np.ndarray:
    """Positions of test images paired with a training or validation image."""
    leaks = set()
    for a, b in pairs.tolist():
        if (split[a] == "test") != (split[b] == "test"):
            leaks.add(a if split[a] == "test" else b)
    return np.asarray(sorted(leaks), np.int64)


def _record(
    data: PreparedData,
    source: SourceData,
    findings: DuplicateFindings,
    warnings: list[Notice],
    groups: GroupFindings | None,
    before_limit: dict[str, int] | None,
) -> DataRecord:
    """What `data.json` says: classes, counts per split, how the splits were made, what was
    found and skipped, and the warnings (small test classes, undecodable images added
    here)."""
    classes = data.classes
    splits = {
        name: _counts(data.targets, data.split == name, classes)
        for name in SPLITS
        if (data.split == name).any()
    }
    for name, counts in splits.get("test", {}).items():
        if 0 < counts < SMALL_TEST_CLASS:
            warnings.append(Notice(
                code="small_test_class", data={"class": name, "images": counts},
                message=f"test class {name} has only {counts} images: its metrics are very "
                "uncertain"))
    if data.decoded.failures:
        count = len(data.decoded.failures)
        warnings.append(Notice(code="undecodable_images", data={"images": count},
                               message=f"{count} image(s) could not be decoded and were "
                               "skipped"))
    config = data.config
    given_splits = {s for s in source.splits if s} if config.split.given == "keep" else set()
    # What was done, not what was configured: a split the source gives is kept (a pooled
    # source is split here, test included).
    with_folds = {"test_with": config.split.test_with} if config.split.folds else {}
    with_limit = ({"limit_per_class": config.split.limit_per_class,
                   "before_limit": before_limit} if before_limit is not None else {})
    policy = SplitPolicy(
        given=config.split.given,
        val="given" if "val" in given_splits and config.split.folds is None
        else config.split.val,
        test="given" if "test" in given_splits else config.split.test,
        seed=config.split.seed,
        folds=config.split.folds,
        **with_folds,
        **with_limit,
    )
    given_names = np.asarray([g or "unsplit" for g in (source.splits[i] for i in data.index)])
    # Only the keys that apply are set: the document is written with the keys set.
    optional: dict[str, Any] = {}
    if groups is not None:
        optional["groups"] = groups
    if config.split.folds is not None:
        optional["folds"] = {
            str(k): _counts(data.targets, data.fold == k, classes)
            for k in range(config.split.folds)
        }
    return DataRecord(
        source=source.description,
        ids_note=source.ids_note or (
            "<split>/<n> is row n (from 0) of that split's image array (<n> alone when the "
            "source has no splits)" if source.arrays is not None else
            "file paths relative to the data folder (or as the manifest lists them)"),
        classes=classes,
        channels=data.channels,
        image_shape=list(data.images.shape[1:3]),
        label_notes=data.labels.notes,
        positive_group=None if data.labels.positive_group is None else PositiveGroupRecord(
            name=data.labels.positive_group,
            classes=[classes[i] for i in data.labels.positive_classes]),
        splits=splits,
        totals={name: sum(counts.values()) for name, counts in splits.items()},
        split_policy=policy,
        failures=data.decoded.failures,
        ignored_files=IgnoredFiles(count=len(source.ignored), examples=source.ignored[:10],
                                   files=source.ignored),
        duplicates=findings,
        cache=CacheRecord(key=data.decoded.key, path=str(data.decoded.path),
                          from_cache=data.decoded.from_cache,
                          seconds=round(data.decoded.seconds, 3),
                          **({"streamed": True} if isinstance(data.images, StreamedImages)
                             else {})),
        warnings=warnings,
        source_splits={
            name: _counts(data.targets, given_names == name, classes)
            for name in dict.fromkeys(given_names.tolist())
        },
        **optional,
    )


def training_hashes(data: PreparedData) -> dict[str, Any]:
    """The exact and perceptual hashes of the training and validation images, by id: what
    `visionbench predict` compares a new image with (the `TrainingHashes` document)."""
    learned = np.flatnonzero(np.isin(data.split, ["train", "val"]))
    positions = data.index[learned]
    dup = data.config.duplicates
    return {
        "ids": [data.ids[i] for i in learned.tolist()],
        "exact": [data.decoded.exact[i] for i in positions.tolist()],
        "phash": [f"{int(v):016x}" for v in data.decoded.phash[positions]],
        "near_threshold": dup.near_threshold if dup.near else None,
        "near_similarity": dup.near_similarity if dup.near else None,
    }
