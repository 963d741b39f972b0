"""Exact and near-duplicate images, within and across splits.

Exact duplicates share the hash of their decoded pixels; near duplicates have perceptual
hashes (64-bit pHash) at most `threshold` bits apart, and then their pixels must agree: a
64-bit hash of a small image (28 px X-rays) cannot tell two different images of one kind
apart, so each candidate pair is kept only if the two decoded images correlate (Pearson, on
grey pixels, so a brightness or contrast change does not matter) at least `similarity`.
The Hamming search is indexed (`data.hamming.hamming_pairs`: multi-index hashing, a
million hashes in under a minute), and falls back to comparing every pair in bounded row
blocks only where that is cheaper (a few thousand images, or a threshold so wide that no
index helps); both give the same pairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from visionbench.data.hamming import hamming_pairs
from visionbench.rundir.documents import DuplicateCount, DuplicatePlaces


@dataclass(frozen=True)
class DuplicatePairs:
    """Pairs (i < j) of positions among the images searched, exact and near."""

    exact: np.ndarray
    near: np.ndarray

    def all_pairs(self) -> np.ndarray:
        """Exact and near pairs together, shape (P, 2)."""
        return np.concatenate([self.exact, self.near]).reshape(-1, 2)


def exact_pairs(hashes: list[str]) -> np.ndarray:
    """All pairs of positions whose exact hashes are equal, shape (P, 2)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for position, value in enumerate(hashes):
        groups[value].append(position)
    pairs = [pair for members in groups.values() for pair in combinations(members, 2)]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def near_pairs(phash: np.ndarray, threshold: int) -> np.ndarray:
    """All pairs (i < j) whose pHashes differ in at most `threshold` bits, shape (P, 2)."""
    return hamming_pairs(phash, threshold)


def find_duplicates(hashes: list[str], phash: np.ndarray, threshold: int | None) -> DuplicatePairs:
    """Exact pairs, and near pairs that are not exact (`threshold=None` skips near search)."""
    exact = exact_pairs(hashes)
    if threshold is None:
        return DuplicatePairs(exact, np.zeros((0, 2), np.int64))
    near = near_pairs(phash, threshold)
    if len(exact) and len(near):
        exact_set = {tuple(p) for p in exact.tolist()}
        near = np.asarray([p for p in near.tolist() if tuple(p) not in exact_set], np.int64)
    return DuplicatePairs(exact, near.reshape(-1, 2))


def pixel_similarity(pairs: np.ndarray, load: Callable[[np.ndarray], np.ndarray],
                     block: int = 512) -> np.ndarray:
    """Pearson correlation of the grey pixels of each pair's two images.

    `load(positions)` gives uint8 (n, H, W, C) images. Two flat images correlate 1 when they
    are equal and 0 otherwise.

    Example (a ramp, the same ramp brighter, the ramp turned a quarter):
        >>> ramp = np.arange(16).reshape(4, 4, 1)
        >>> pictures = np.stack([ramp, ramp * 2 + 10, ramp.transpose(1, 0, 2)])
        >>> pixel_similarity(np.array([[0, 1], [0, 2]]), lambda p: pictures[p]).round(3)
        array([1.   , 0.471])
    """
    found = np.empty(len(pairs), np.float64)
    for start in range(0, len(pairs), block):
        part = pairs[start : start + block]
        sides = []
        for column in (0, 1):
            grey = load(part[:, column]).astype(np.float32).mean(axis=-1).reshape(len(part), -1)
            centred = grey - grey.mean(axis=1, keepdims=True)
            sides.append((centred, np.linalg.norm(centred, axis=1), grey.mean(axis=1)))
        (a, norm_a, mean_a), (b, norm_b, mean_b) = sides
        flat = (norm_a == 0) | (norm_b == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.einsum("ij,ij->i", a, b) / (norm_a * norm_b)
        value[flat] = ((norm_a == norm_b) & (mean_a == mean_b))[flat]
        found[start : start + len(part)] = value
    return found


def connected_groups(count: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find group id per position: duplicates (transitively) share a group."""
    parent = np.arange(count)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.asarray([root(i) for i in range(count)])


def summarize(
    pairs: np.ndarray,
    splits: np.ndarray,
    targets: np.ndarray,
    ids: list[str],
    examples: int = 5,
) -> DuplicatePlaces:
    """Counts per split (`within`) and split pair (`across`), with example id pairs.

    For each place: `pairs` (duplicate pairs), `images` (images with a duplicate there; for
    `a~b` the images of `b` that also appear in `a`), `label_conflicts` (pairs whose labels
    differ) and up to `examples` example pairs.
    """
    within: dict[str, _Tally] = {}
    across: dict[str, _Tally] = {}
    order = {"train": 0, "val": 1, "test": 2}
    for a, b in pairs.tolist():
        first, second = sorted((a, b), key=lambda p: order.get(str(splits[p]), 3))
        split_a, split_b = str(splits[first]), str(splits[second])
        if split_a == split_b:
            place = within.setdefault(split_a, _Tally())
            place.images.update((first, second))
        else:
            place = across.setdefault(f"{split_a}~{split_b}", _Tally())
            place.images.add(second)
        place.pairs += 1
        place.label_conflicts += int(targets[first] != targets[second])
        if len(place.examples) < examples:
            place.examples.append([ids[first], ids[second]])
    return DuplicatePlaces(within={where: tally.count() for where, tally in within.items()},
                           across={where: tally.count() for where, tally in across.items()})


CROSS_VALIDATED = "cross-validated"


def place_label(where: str, folds: bool) -> str:
    """How a place of `summarize` reads ("within train", "across train~test"). With folds,
    train and val are one fold's cut, so both are named as the cross-validated images
    ("within cross-validated", "across cross-validated~test"), as the split table shows them.
    """
    sides = [CROSS_VALIDATED if folds and side in ("train", "val") else side
             for side in where.split("~")]
    return f"within {sides[0]}" if len(set(sides)) == 1 else f"across {'~'.join(sides)}"


@dataclass
class _Tally:
    """A place's duplicates as they are counted: its images as a set of positions."""

    pairs: int = 0
    label_conflicts: int = 0
    images: set[int] = field(default_factory=set)
    examples: list[list[str]] = field(default_factory=list)

    def count(self) -> DuplicateCount:
        return DuplicateCount(pairs=self.pairs, images=len(self.images),
                              label_conflicts=self.label_conflicts, examples=self.examples)
