"""`source: hf_dataset`: a Hugging Face `datasets` dataset on disk, through the `datasets`
package (the `hf` extra): a folder `save_to_disk` wrote (one dataset, or a dataset dict of
splits) or Parquet files (the Hub's `<split>-00000-of-00001.parquet` layout, or split
folders). The images stay encoded in the dataset's files and are read a batch at a time
by the decode workers; nothing is downloaded (the libraries are told to stay offline).

Parquet files are read through `datasets.Dataset.from_parquet`, which writes an Arrow copy
of them once under the decode cache (`<cache>/hf`, emptied by `visionbench cache clear`),
so rows can be read in any order.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import model_validator

from visionbench.data.cache import default_cache_root
from visionbench.data.sources import (
    SOURCES,
    SPLIT_ALIASES,
    DataSource,
    SourceData,
    canonical_split,
    existing,
)
from visionbench.errors import UserError

# Rows read from a dataset at once by a decode worker.
BATCH = 64
MISSING = ("source: hf_dataset needs the hf extra: pip install 'visionbench[hf]' (the "
           "Hugging Face datasets package)")
# Labels that mean "no label" in Hugging Face datasets (a competition's hidden test split).
UNLABELLED = -1


def _datasets() -> Any:
    """The `datasets` package, told first never to reach the network."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise UserError(MISSING) from None
    datasets.disable_progress_bars()
    return datasets


@dataclass
class _Part:
    """One split of the dataset as stored: where it is read from."""

    name: str  # the split's name in the dataset ("" for a lone dataset)
    folder: str | None = None  # a `save_to_disk` folder of this one dataset
    parquet: list[str] = field(default_factory=list)  # or its Parquet files
    cache: str | None = None  # where `from_parquet` keeps its Arrow copy


def _open_part(part: _Part, column: str | None = None) -> Any:
    datasets = _datasets()
    if part.folder is not None:
        dataset = datasets.load_from_disk(part.folder)
    else:
        dataset = datasets.Dataset.from_parquet(part.parquet, cache_dir=part.cache)
    if column is not None:
        dataset = dataset.select_columns([column]).cast_column(
            column, datasets.Image(decode=False))
    return dataset


@dataclass
class HfImages:
    """The encoded images of a Hugging Face dataset's image column: position `i` is row
    `rows[i]` of part `parts[which[i]]`. Each process opens the dataset itself (memory-mapped
    Arrow: no copy)."""

    parts: list[_Part]
    column: str
    which: np.ndarray
    rows: np.ndarray
    _open: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: list[int]) -> HfImages:
        """The entries at positions `keep`, in that order."""
        chosen = np.asarray(keep, dtype=np.int64)
        return HfImages(self.parts, self.column, self.which[chosen], self.rows[chosen])

    def __getitem__(self, where: int | slice) -> Any:
        if isinstance(where, slice):
            return self.subset(list(range(len(self)))[where])
        return self._fetch([int(where)])[0]

    def __iter__(self) -> Any:
        for start in range(0, len(self), BATCH):
            yield from self._fetch(list(range(start, min(start + BATCH, len(self)))))

    def content_files(self) -> list[Path]:
        """The dataset's Arrow or Parquet files."""
        files = []
        for part in self.parts:
            if part.folder is not None:
                files += sorted(Path(part.folder).glob("*.arrow"))
            else:
                files += [Path(name) for name in part.parquet]
        return files

    def _dataset(self, number: int) -> Any:
        if number not in self._open:
            self._open[number] = _open_part(self.parts[number], self.column)
        return self._open[number]

    def _fetch(self, positions: list[int]) -> list[bytes | Path]:
        """The encoded images at `positions`: their bytes, or their file when the dataset
        stores only a path."""
        found: dict[int, bytes | Path] = {}
        which = self.which[positions]
        for number in np.unique(which).tolist():
            chosen = [p for p, w in zip(positions, which.tolist(), strict=True) if w == number]
            cells = self._dataset(number)[[int(self.rows[p]) for p in chosen]][self.column]
            for position, cell in zip(chosen, cells, strict=True):
                found[position] = _encoded(cell)
        return [found[p] for p in positions]


def _encoded(cell: Any) -> bytes | Path:
    """An Image cell with decoding off: its bytes, else the file it names."""
    if isinstance(cell, dict) and cell.get("bytes"):
        return bytes(cell["bytes"])
    if isinstance(cell, dict) and cell.get("path"):
        return Path(cell["path"])
    raise UserError("an image cell holds neither bytes nor a path")


_PARQUET_SPLIT = re.compile(r"^([A-Za-z]+)")


def _parquet_split(file: Path, root: Path) -> str:
    """The split a Parquet file belongs to by the Hub's layout: its name's first word
    (`train-00000-of-00002.parquet`), else its folder's name (`test/0000.parquet`); "" when
    neither names a split."""
    word = _PARQUET_SPLIT.match(file.name)
    if word and word.group(1).lower() in SPLIT_ALIASES:
        return word.group(1)
    if file.parent != root and file.parent.name.lower() in SPLIT_ALIASES:
        return file.parent.name
    return ""


@SOURCES.register("hf_dataset")
class HfDatasetSource(DataSource):
    """A Hugging Face dataset on disk: `path` is a folder `save_to_disk` wrote, a Parquet
    file, or a folder of Parquet files. `image_column` holds the images (an `Image`
    feature: bytes or file paths), `label_column` the labels (class names from its
    `ClassLabel` feature when it has one). The dataset's splits are kept (train, validation
    and test by their usual names; `splits` maps others: `{train: train, test: valid}`);
    a lone dataset is split here like a class folder."""

    source: Literal["hf_dataset"]
    path: Path
    image_column: str = "image"
    label_column: str = "label"
    splits: dict[Literal["train", "val", "test"], str] | None = None

    @model_validator(mode="after")
    def _installed(self) -> HfDatasetSource:
        if importlib.util.find_spec("datasets") is None:
            raise ValueError(MISSING)
        return self

    def load(self) -> SourceData:
        """List every labelled row of every split kept, its label and its split."""
        root = existing(self.path, "Hugging Face dataset")
        parts = self._parts(root)
        chosen, ignored = self._chosen_splits(parts)
        ids: list[str] = []
        labels: list[str] = []
        splits: list[str | None] = []
        which: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        for number, part in enumerate(parts):
            if part.name not in chosen:
                continue
            dataset = _open_part(part)
            names, values = self._labels(dataset, part.name or str(root))
            keep = np.flatnonzero([value is not None for value in values])
            if len(keep) < len(values):
                ignored.append(f"{len(values) - len(keep)} row(s) of "
                               f"{part.name or 'the dataset'} without a label")
            prefix = f"{part.name}/" if part.name else ""
            ids += [f"{prefix}{row}" for row in keep.tolist()]
            labels += [names[values[row]] if names else str(values[row])
                       for row in keep.tolist()]
            splits += [chosen[part.name]] * len(keep)
            which.append(np.full(len(keep), number, np.int64))
            rows.append(keep.astype(np.int64))
        images = HfImages(parts, self.image_column, np.concatenate(which),
                          np.concatenate(rows))
        return SourceData(
            ids=ids, labels=labels, splits=splits, encoded=images, ignored=ignored,
            description=f"Hugging Face dataset {root.name}",
            ids_note="<split>/<n> is row n (from 0) of that split of the dataset (<n> alone "
                     "when it has no splits)")

    def _parts(self, root: Path) -> list[_Part]:
        """The dataset's splits as stored."""
        if root.is_dir() and (root / "dataset_dict.json").is_file():
            return [_Part(name=child.name, folder=str(child)) for child in sorted(root.iterdir())
                    if (child / "state.json").is_file()]
        if root.is_dir() and (root / "state.json").is_file():
            return [_Part(name="", folder=str(root))]
        files = ([root] if root.is_file() else sorted(root.rglob("*.parquet")))
        if not files or any(file.suffix != ".parquet" for file in files):
            raise UserError(f"{root} is neither a folder datasets.save_to_disk wrote (with "
                            "dataset_dict.json or state.json) nor Parquet files")
        cache = str(Path(self.cache_dir or default_cache_root()) / "hf")
        by_split: dict[str, list[str]] = {}
        for file in files:
            by_split.setdefault(_parquet_split(file, root), []).append(str(file))
        if "" in by_split and len(by_split) > 1:
            raise UserError(f"{root}: some Parquet files name a split and some do not "
                            f"({by_split[''][0]}): name each <split>-....parquet")
        return [_Part(name=name, parquet=found, cache=cache)
                for name, found in sorted(by_split.items())]

    def _chosen_splits(self, parts: list[_Part]) -> tuple[dict[str, str | None], list[str]]:
        """Which stored splits are read, as which of ours; the others named as ignored."""
        names = [part.name for part in parts]
        if names == [""]:
            return {"": None}, []
        if self.splits is not None:
            unknown = [name for name in self.splits.values() if name not in names]
            if unknown:
                raise UserError(f"data.splits names {', '.join(unknown)}, not splits of the "
                                f"dataset (it has {', '.join(names)})")
            chosen: dict[str, str | None] = {name: ours for ours, name in self.splits.items()}
        else:
            chosen = {name: canonical_split(name, "hf_dataset") for name in names
                      if name.lower() in SPLIT_ALIASES}
        ignored = [f"split {name!r}: not read (map it with data.splits)" for name in names
                   if name not in chosen]
        if "train" not in chosen.values():
            raise UserError(f"no training split among the dataset's {', '.join(names)}: "
                            "set data.splits: {train: NAME}")
        return chosen, ignored

    def _labels(self, dataset: Any, where: str) -> tuple[list[str] | None, list[Any]]:
        """(class names from a ClassLabel feature or None, each row's label or None)."""
        columns = list(dataset.column_names)
        for column in (self.image_column, self.label_column):
            if column not in columns:
                raise UserError(f"{where}: no column {column!r} (columns: "
                                f"{', '.join(columns)}): set data.image_column and "
                                "data.label_column")
        image_feature = type(dataset.features[self.image_column]).__name__
        if image_feature != "Image":
            raise UserError(f"{where}: column {self.image_column!r} is a {image_feature}, "
                            "not an Image feature (encoded images or their paths)")
        feature = dataset.features[self.label_column]
        names = list(feature.names) if type(feature).__name__ == "ClassLabel" else None
        values = dataset.select_columns([self.label_column])[self.label_column]
        return names, [None if value is None or value == UNLABELLED or value == ""
                       else value for value in values]
