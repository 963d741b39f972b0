"""Data sources: each is a config class registered under its `source` tag, with a `load()`.

A source only lists what exists (ids, raw class names, the split the data came with, and
either file paths or a uint8 array); decoding, label mapping and splitting happen later,
the same way for every source. Adding a source is one decorated class.

Example:
    >>> from visionbench.data.sources import SOURCES
    >>> data = SOURCES.get("digits")(source="digits").load()
    >>> data.arrays.shape, sorted(set(data.labels))[:3]
    ((1797, 8, 8), ['0', '1', '2'])
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from visionbench.errors import UserError
from visionbench.readers import EXTENSIONS, is_image
from visionbench.registry import Registry
from visionbench.schemas.data import DataCommon

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}

class DataSource(DataCommon):
    """A data source's config: the settings every source shares, its own fields, and
    `load`, which lists what the source holds. Every registered source is one."""

    def load(self) -> SourceData:
        """What the source holds, before decoding (paths or arrays, labels, given splits)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to load")


SOURCES: Registry[type[DataSource]] = Registry("data source")


class EncodedImages(Protocol):
    """Images kept encoded inside a dataset's own files (a Hugging Face dataset's image
    column), one per entry, read a batch at a time: each item is the image's bytes, or the
    path of its file when the dataset only names it. Picklable: decode workers open the
    dataset themselves."""

    def __len__(self) -> int: ...

    def __getitem__(self, where: int | slice) -> Any: ...

    def __iter__(self) -> Iterator[bytes | Path]: ...

    def subset(self, keep: list[int]) -> EncodedImages:
        """The entries at positions `keep`, in that order."""
        ...

    def content_files(self) -> list[Path]:
        """The files holding the images, whose content keys the decode cache."""
        ...


@dataclass
class SourceData:
    """What a source found, before decoding: one entry per image.

    `paths` is set for file sources, `arrays` (N, H, W[, C], uint8) for array sources,
    `encoded` for images kept encoded in a dataset's files.
    `splits` holds the split each image came with (`train`, `val`, `test`) or None;
    `columns` any other column a manifest gives per image (by column name); `ids_note` what
    an id names, when neither a file path nor an array row does.
    """

    ids: list[str]
    labels: list[str]
    splits: list[str | None]
    paths: list[Path] | None = None
    arrays: np.ndarray | None = None
    encoded: EncodedImages | None = None
    ignored: list[str] = field(default_factory=list)
    description: str = ""
    columns: dict[str, list[str]] = field(default_factory=dict)
    ids_note: str | None = None

    @property
    def items(self) -> list[Path] | np.ndarray | EncodedImages:
        """What each entry is read from: its path, its array row or its encoded image."""
        for kind in (self.paths, self.arrays, self.encoded):
            if kind is not None:
                return kind
        raise ValueError("a source lists paths, arrays or encoded images")

    def __post_init__(self) -> None:
        if not self.ids:
            raise UserError(f"{self.description or 'the data source'} holds no images")

    def subset(self, keep: np.ndarray) -> SourceData:
        """The entries at integer positions `keep`, in that order."""
        idx = [int(i) for i in keep]
        return SourceData(
            ids=[self.ids[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            splits=[self.splits[i] for i in idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            arrays=None if self.arrays is None else self.arrays[np.asarray(idx, dtype=np.int64)],
            encoded=None if self.encoded is None else self.encoded.subset(idx),
            ignored=self.ignored,
            description=self.description,
            columns={name: [values[i] for i in idx] for name, values in self.columns.items()},
            ids_note=self.ids_note,
        )


def canonical_split(name: str, where: str) -> str:
    """Map a split name such as `Training` or `valid` to `train`/`val`/`test`."""
    try:
        return SPLIT_ALIASES[name.strip().lower()]
    except KeyError:
        raise UserError(
            f"{where}: unknown split name {name!r}; use one of train, val, test "
            "(or Training/Testing, valid/validation)"
        ) from None


def existing(path: Path, what: str, kind: str | None = None) -> Path:
    """`path` if it exists and is of `kind` ("folder" or "file", or either when None);
    else a one-line error that says what data.path should name."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{what} not found: {path} (set data.path to where the data is)")
    if kind == "folder" and not path.is_dir():
        raise UserError(f"data.path {path} is a file, but this source reads a {what}: name "
                        "the folder instead")
    if kind == "file" and not path.is_file():
        raise UserError(f"data.path {path} is a folder, but this source reads a {what}: name "
                        "the file itself")
    return path


def _walk(folder: Path, data: _Listing) -> list[Path]:
    """The files under `folder`, sorted. Linked folders are not followed (a link can loop),
    and a linked file is used only when it stays inside the data root; the others are
    listed among the ignored files with the reason."""
    inside = data.root.resolve()
    paths = []
    for where, folders, files in os.walk(folder, followlinks=False):
        base = Path(where)
        for name in sorted(folders):
            if (base / name).is_symlink():
                data.skipped.append((base / name, "a linked folder, not followed"))
        for name in sorted(files):
            path = base / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_file():
                    data.skipped.append((path, "a broken or looping link"))
                    continue
                if not target.is_relative_to(inside):
                    data.skipped.append((path, "a link out of the data root"))
                    continue
            paths.append(path)
    return sorted(paths)


def _utf8(name: str) -> bool:
    """Whether a file name (as Python decodes it from the file system) is valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_hidden(path: Path | str) -> bool:
    return Path(path).name.startswith(".")


def _scan_class_folders(root: Path, split: str | None, data: _Listing) -> None:
    """Add every image under `root/<class>/...` to `data`; other files are counted as ignored."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p))
    data.ignored += [str(p) for p in sorted(root.iterdir()) if p.is_file()]
    if not class_dirs:
        raise UserError(f"{root} has no class sub-folders (expected {root}/<class>/<image>)")
    for class_dir in class_dirs:
        images = 0
        for file in _walk(class_dir, data):
            if any(_is_hidden(p) for p in file.relative_to(root).parts):
                continue
            relative = file.relative_to(data.root).as_posix()
            if not _utf8(relative):
                # Such a name cannot be written to a report or a JSON document: say so.
                data.odd_names.append(relative.encode("utf-8", "surrogateescape").decode(
                    "utf-8", "backslashreplace"))
                continue
            if is_image(file):
                data.add(file, class_dir.name, split)
                images += 1
            else:
                data.ignored.append(str(file))
        if images == 0:
            raise UserError(
                f"class folder {class_dir} has no images; remove it or add images "
                f"(extensions: {', '.join(sorted(EXTENSIONS))})"
            )


@dataclass
class _Listing:
    """Accumulates file entries with ids relative to the data root."""

    root: Path
    ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    odd_names: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, path: Path, label: str, split: str | None) -> None:
        self.ids.append(path.relative_to(self.root).as_posix())
        self.labels.append(label)
        self.splits.append(split)
        self.paths.append(path)

    def to_source(self, description: str) -> SourceData:
        ignored = [Path(p).relative_to(self.root).as_posix() for p in self.ignored
                   if _utf8(p)] + [f"{name} (file name is not valid UTF-8: rename it)"
                                   for name in self.odd_names]
        ignored += [f"{path.relative_to(self.root).as_posix()} ({why})"
                    for path, why in self.skipped if _utf8(str(path))]
        return SourceData(
            ids=self.ids,
            labels=self.labels,
            splits=self.splits,
            paths=self.paths,
            ignored=ignored,
            description=description,
        )


@SOURCES.register("folder")
class FolderSource(DataSource):
    """A folder with one sub-folder per class; the tool makes every split."""

    source: Literal["folder"]
    path: Path

    def load(self) -> SourceData:
        """List the images under `path/<class>/`."""
        root = existing(self.path, "data folder", "folder")
        listing = _Listing(root)
        _scan_class_folders(root, None, listing)
        return listing.to_source(f"class folders in {root}")


@SOURCES.register("presplit")
class PresplitSource(DataSource):
    """Pre-split folders: `path/<split>/<class>/...`, e.g. `Training/` and `Testing/`.

    `splits` maps `train`/`val`/`test` to folder names; by default the folder names are
    recognised (train/training, val/valid/validation, test/testing, any case).
    """

    source: Literal["presplit"]
    path: Path
    splits: dict[Literal["train", "val", "test"], str] | None = None

    def load(self) -> SourceData:
        """List the images of each split folder."""
        root = existing(self.path, "data folder", "folder")
        folders = self._split_folders(root)
        listing = _Listing(root)
        for split, folder in folders.items():
            _scan_class_folders(root / folder, split, listing)
        listing.ignored += [str(p) for p in sorted(root.iterdir()) if p.is_file()]
        return listing.to_source(f"split folders {', '.join(folders.values())} in {root}")

    def _split_folders(self, root: Path) -> dict[str, str]:
        if self.splits is not None:
            for folder in self.splits.values():
                if not (root / folder).is_dir():
                    raise UserError(f"split folder {root / folder} does not exist")
            folders = dict(self.splits)
        else:
            folders = {}
            for child in sorted(root.iterdir()):
                split = SPLIT_ALIASES.get(child.name.lower())
                if child.is_dir() and split is not None and split not in folders:
                    folders[split] = child.name
        if "train" not in folders:
            names = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "none"
            raise UserError(
                f"no training folder in {root} (sub-folders: {names}); "
                "name it train/Training or set data.splits: {train: NAME, test: NAME}"
            )
        return folders


def _as_uint8_images(images: np.ndarray, where: str) -> np.ndarray:
    """Validate an image array (N, H, W[, C]) and bring it to uint8 in [0, 255]."""
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (3, 4)):
        raise UserError(
            f"{where}: images must have shape (N, H, W) or (N, H, W, 3), got {images.shape}"
        )
    if images.ndim == 4 and images.shape[-1] == 4:
        images = images[..., :3]
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    values = images.astype(np.float64)
    top = 1.0 if np.nanmax(values) <= 1.0 else 255.0
    return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)


def _class_names(labels: np.ndarray, names: list[str] | None, where: str) -> list[str]:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise UserError(f"{where}: labels must be one integer per image, got {labels.shape}")
    if names is None:
        return [str(int(v)) for v in labels]
    if labels.min() < 0 or labels.max() >= len(names):
        raise UserError(
            f"{where}: label values {labels.min()}..{labels.max()} do not fit "
            f"the {len(names)} class_names given"
        )
    return [names[int(v)] for v in labels]


def _array_source(
    parts: list[tuple[str | None, np.ndarray, np.ndarray]],
    class_names: list[str] | None,
    description: str,
) -> SourceData:
    """Build a SourceData from (split or None, images, labels) parts."""
    ids: list[str] = []
    labels: list[str] = []
    splits: list[str | None] = []
    arrays = []
    for split, images, raw_labels in parts:
        where = f"{description} [{split}]" if split else description
        images = _as_uint8_images(np.asarray(images), where)
        names = _class_names(raw_labels, class_names, where)
        if len(names) != len(images):
            raise UserError(f"{where}: {len(images)} images but {len(names)} labels")
        ids += [f"{split}/{i}" if split else str(i) for i in range(len(images))]
        labels += names
        splits += [split] * len(images)
        arrays.append(images)
    used = set(labels)
    unused = [name for name in class_names or [] if name not in used]
    if unused:
        raise UserError(f"{description}: data.class_names has names no label uses: "
                        f"{', '.join(unused)} (the labels use {len(used)} of the "
                        f"{len(class_names or [])} names): remove them, or check the list")
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise UserError(f"{description}: splits have different image shapes {sorted(shapes)}")
    return SourceData(
        ids=ids,
        labels=labels,
        splits=splits,
        arrays=np.concatenate(arrays),
        description=description,
    )


@SOURCES.register("npz")
class NpzSource(DataSource):
    """Arrays in a `.npz`: MedMNIST keys (`train_images`, `train_labels`, `val_...`,
    `test_...`) or Keras-style keys (`x_train`, `y_train`, `x_test`, `y_test`)."""

    source: Literal["npz"]
    path: Path
    class_names: list[str] | None = None

    def load(self) -> SourceData:
        """Read the arrays of every split found in the file."""
        path = existing(self.path, ".npz file", "file")
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path} is not an .npz archive (a zip of .npy arrays, as "
                            "numpy.savez writes)")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise UserError(f"cannot read {path} as .npz: {str(exc).splitlines()[0]} (arrays "
                            "of objects are refused: they would be unpickled)") from None
        parts = []
        for split in ("train", "val", "test"):
            for image_key, label_key in (
                (f"{split}_images", f"{split}_labels"),
                (f"x_{split}", f"y_{split}"),
            ):
                if image_key in arrays:
                    if label_key not in arrays:
                        raise UserError(f"{path}: has {image_key} but no {label_key}")
                    parts.append((split, arrays[image_key], arrays[label_key]))
        if not parts:
            raise UserError(
                f"{path}: no known keys (found {', '.join(sorted(arrays)) or 'none'}); expected "
                "train_images/train_labels/... (MedMNIST) or x_train/y_train/... (Keras)"
            )
        return _array_source(parts, self.class_names, f"arrays in {path.name}")


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (MNIST's format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise UserError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise UserError(f"{path} is truncated or corrupt: {len(raw) - offset} of {expected} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims)


_IDX_IMAGES = re.compile(r"^(?P<prefix>.+?)[-.]images?[-.]idx3[-.]ubyte(\.gz)?$")


@SOURCES.register("idx")
class IdxSource(DataSource):
    """MNIST IDX files in a folder: `<prefix>-images-idx3-ubyte[.gz]` with the matching
    `<prefix>-labels-idx1-ubyte[.gz]`; prefix `train` gives the training split, `t10k` or
    `test` the test split."""

    source: Literal["idx"]
    path: Path
    class_names: list[str] | None = None

    def load(self) -> SourceData:
        """Read every image/label file pair in the folder."""
        root = existing(self.path, "IDX folder")
        files = [root] if root.is_file() else sorted(root.iterdir())
        parts = []
        for image_file in files:
            match = _IDX_IMAGES.match(image_file.name)
            if not match:
                continue
            prefix = match["prefix"]
            split = "test" if prefix in ("t10k", "test") else canonical_split(prefix, str(root))
            label_file = self._labels_for(image_file, prefix)
            parts.append((split, read_idx(image_file), read_idx(label_file)))
        if not parts:
            raise UserError(f"no *-images-idx3-ubyte[.gz] file in {root}")
        return _array_source(parts, self.class_names, f"IDX files in {root.name}")

    @staticmethod
    def _labels_for(image_file: Path, prefix: str) -> Path:
        for name in image_file.parent.iterdir():
            if re.match(rf"^{re.escape(prefix)}[-.]labels?[-.]idx1[-.]ubyte(\.gz)?$", name.name):
                return name
        raise UserError(f"no {prefix}-labels-idx1-ubyte[.gz] beside {image_file}")


@SOURCES.register("csv")
class CsvSource(DataSource):
    """A CSV manifest with a header `path,label[,split]`; relative paths are taken from
    `root` (default: the CSV's folder) and must stay inside it unless `allow_outside_root`."""

    source: Literal["csv"]
    path: Path
    root: Path | None = None
    allow_outside_root: bool = False

    def load(self) -> SourceData:
        """Read the manifest; every listed file must exist (inside the root)."""
        manifest = existing(self.path, "CSV manifest", "file")
        root = (self.root or manifest.parent).expanduser()
        try:
            with manifest.open(newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.DictReader(handle))
        except UnicodeDecodeError as exc:
            raise UserError(f"{manifest} is not UTF-8 text (byte {exc.start}): save it as "
                            "UTF-8") from None
        if not rows:
            raise UserError(f"{manifest} has no rows")
        columns = set(rows[0])
        if not {"path", "label"} <= columns:
            raise UserError(
                f"{manifest}: header must have path,label[,split]; found {','.join(rows[0])}"
            )
        listing = _Listing(root)
        extra = [name for name in rows[0] if name not in (None, "path", "label", "split")]
        columns: dict[str, list[str]] = {name: [] for name in extra}
        missing = []
        inside = root.resolve()
        for line, row in enumerate(rows, start=2):
            if row.get("path") is None or row.get("label") is None:
                raise UserError(f"{manifest} line {line}: a row needs path,label[,split]")
            file = root / row["path"]
            if not self.allow_outside_root and not file.resolve().is_relative_to(inside):
                raise UserError(f"{manifest} line {line}: {row['path']} is outside {root} "
                                "(set data.allow_outside_root: true if that is meant)")
            if not file.is_file():
                missing.append(f"line {line}: {row['path']}")
                continue
            raw_split = (row.get("split") or "").strip()
            split = canonical_split(raw_split, f"{manifest} line {line}") if raw_split else None
            listing.ids.append(row["path"])
            listing.labels.append(row["label"].strip())
            listing.splits.append(split)
            listing.paths.append(file)
            for name in extra:
                columns[name].append((row.get(name) or "").strip())
        if missing:
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            raise UserError(f"{manifest}: files not found: {'; '.join(missing[:3])}{more}")
        return SourceData(
            ids=listing.ids,
            labels=listing.labels,
            splits=listing.splits,
            paths=listing.paths,
            description=f"manifest {manifest.name}",
            columns=columns,
        )


@SOURCES.register("digits")
class DigitsSource(DataSource):
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes); works offline."""

    source: Literal["digits"]

    def load(self) -> SourceData:
        """Load the digits and scale their 0..16 values to 0..255."""
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
        return _array_source([(None, images, digits.target)], None, "scikit-learn digits")


_TORCHVISION_SETS = {
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
    "cifar10": "CIFAR10",
}


@SOURCES.register("torchvision")
class TorchvisionSource(DataSource):
    """torchvision's MNIST, Fashion-MNIST or CIFAR-10 under `root`; downloaded only when
    `download: true`."""

    source: Literal["torchvision"]
    name: Literal["mnist", "fashion_mnist", "cifar10"]
    root: Path = Path("datasets")
    download: bool = False

    def load(self) -> SourceData:
        """Read both official splits, downloading first only if asked to."""
        import torchvision.datasets

        dataset_class = getattr(torchvision.datasets, _TORCHVISION_SETS[self.name])
        parts = []
        for split, train in (("train", True), ("test", False)):
            try:
                dataset = dataset_class(str(self.root), train=train, download=self.download)
            except RuntimeError as exc:
                if self.download:
                    raise UserError(f"could not download {self.name}: {exc}") from None
                raise UserError(
                    f"{self.name} not found under {self.root}; set data.download: true "
                    "(needs internet) or data.root to where it is"
                ) from None
            images = np.asarray(dataset.data)
            parts.append((split, images, np.asarray(dataset.targets)))
        classes = [str(c) for c in dataset.classes]
        return _array_source(parts, classes, f"torchvision {self.name}")
