"""Images that belong together (one patient, one session): named from their ids by a
pattern or read from a manifest column (`split.group_by`), kept in one split and one fold,
and checked against the splits a source gives (a patient in both the given train and test
splits makes test metrics optimistic, and no split made here can undo it)."""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import pairwise

import numpy as np

from visionbench.data.sources import SourceData
from visionbench.errors import UserError
from visionbench.readers.dicom import read_tags
from visionbench.rundir.documents import GroupFindings, Straddling
from visionbench.schemas.data import GroupBy

EXAMPLES = 5


def group_names(group_by: GroupBy, source: SourceData) -> list[str | None]:
    """The group each image of `source` belongs to (None: a group of its own).

    Example:
        >>> source = SourceData(ids=["a/person1_x.jpg", "a/person1_y.jpg", "b/IM-7.jpg"],
        ...                     labels=["a", "a", "b"], splits=[None] * 3)
        >>> group_names(GroupBy(pattern=r"person(\\d+)"), source)
        ['1', '1', None]
    """
    if group_by.column is not None:
        if group_by.column not in source.columns:
            offered = ", ".join(source.columns) or "none (only a csv source has columns)"
            raise UserError(f"split.group_by.column {group_by.column!r} is not a column of "
                            f"{source.description or 'the source'}; its columns: {offered}")
        return [value or None for value in source.columns[group_by.column]]
    if group_by.dicom is not None:
        return _dicom_groups(group_by.dicom, source)
    pattern = re.compile(group_by.pattern or "")
    names: list[str | None] = []
    for image_id in source.ids:
        found = pattern.search(image_id)
        names.append(None if found is None else
                     (found.group(1) if pattern.groups else found.group(0)) or None)
    return names


def _dicom_groups(keyword: str, source: SourceData) -> list[str | None]:
    """The value of attribute `keyword` in each file's DICOM header (None: not a DICOM
    file, or without the attribute)."""
    if source.paths is None:
        raise UserError(f"split.group_by: dicom:{keyword} reads DICOM files, but "
                        f"{source.description or 'the source'} lists no files")
    names: list[str | None] = []
    for path in source.paths:
        try:
            names.append(read_tags(path, [keyword]).get(keyword))
        except UserError:
            names.append(None)
    if all(name is None for name in names):
        raise UserError(f"split.group_by: no file of {source.description or 'the source'} "
                        f"has the DICOM attribute {keyword}: check the keyword, or group "
                        "by a pattern in the file names")
    return names


def group_pairs(names: list[str | None]) -> np.ndarray:
    """(M, 2) positions that share a group, as a chain per group (enough for union-find)."""
    members: dict[str, list[int]] = defaultdict(list)
    for position, name in enumerate(names):
        if name is not None:
            members[name].append(position)
    pairs = [(a, b) for found in members.values() for a, b in pairwise(found)]
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def group_summary(group_by: GroupBy, names: list[str | None], split: np.ndarray
                  ) -> GroupFindings:
    """How many groups were found, how many images none, and which groups have images in
    more than one split (only splits a source gives can do that: splits made here keep
    groups whole)."""
    places: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = defaultdict(int)
    for name, where in zip(names, split.tolist(), strict=True):
        if name is not None:
            places[name].add(where)
            sizes[name] += 1
    straddling = sorted(name for name, where in places.items() if len(where) > 1)
    by_splits: dict[str, int] = defaultdict(int)
    for name in straddling:
        by_splits[" + ".join(sorted(places[name]))] += 1
    return GroupFindings(
        by=group_by.describe(),
        groups=len(sizes),
        images_in_groups=int(sum(sizes.values())),
        groups_of_several=sum(1 for size in sizes.values() if size > 1),
        without_group=sum(1 for name in names if name is None),
        straddling=Straddling(groups=len(straddling), splits=dict(by_splits),
                              examples=straddling[:EXAMPLES]),
    )
