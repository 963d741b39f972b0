"""Typed settings shared by every data source: preprocessing, splits, labels, duplicates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from visionbench.schemas.base import StrictModel
from visionbench.schemas.inputs import size_problem


class MeanStd(StrictModel):
    """Explicit per-channel normalisation statistics, in the [0, 1] pixel scale."""

    mean: list[float]
    std: list[float]

    @model_validator(mode="after")
    def _same_length(self) -> MeanStd:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError("mean and std need the same, non-zero number of channels")
        if any(s <= 0 for s in self.std):
            raise ValueError("every std must be positive")
        return self


NormalizeName = Literal["unit", "standardize", "dataset", "imagenet"]


class FixedWindow(StrictModel):
    """A display window in the image's own units (Hounsfield units for CT after the
    DICOM rescale): values from `center - width/2` to `center + width/2` span 0-255."""

    center: float
    width: float = Field(gt=0)


class PercentileWindow(StrictModel):
    """A stretch between two percentiles of each image's own values: robust to a few
    extreme pixels (a marker, a metal implant)."""

    percentiles: tuple[float, float]

    @field_validator("percentiles")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 <= low < high <= 100:
            raise ValueError("percentiles: two numbers with 0 <= low < high <= 100")
        return value


# How grey values wider than 8 bits (16-bit PNG/TIFF, DICOM) become 0-255: `auto` the
# file's own window (DICOM Window Center/Width) when it gives one, else each image's range;
# `file` the file's window, and a file without one is not read; `range` each image's minimum
# to maximum; a fixed window; percentiles of each image.
WindowRule = Literal["auto", "file", "range"] | FixedWindow | PercentileWindow


class PreprocessConfig(StrictModel):
    """How every image is decoded, once, into the uint8 cache (and normalised later).

    `size` is (height, width) or one number for a square; `None` keeps the native size,
    which is allowed only when every image has the same size (array sources do).
    `equalize` spreads each image's histogram over the full range (per channel, after the
    resize): it removes exposure differences between sources, e.g. X-rays from two sites.
    """

    size: tuple[int, int] | None = None
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    color: Literal["grayscale", "rgb", "gray3"] = "rgb"
    exif: bool = True
    crop_margins: bool = False
    margin_threshold: int = Field(10, ge=0, le=254)
    equalize: bool = False
    normalize: NormalizeName | MeanStd = "unit"
    window: WindowRule = Field(
        "auto", description="How grey values wider than 8 bits (16-bit PNG/TIFF, DICOM) "
        "become 0-255: auto (the DICOM file's window, else the image's range), file, range, "
        "{center, width} or {percentiles: [low, high]}.")
    invert_monochrome1: bool = Field(
        True, description="Show DICOM MONOCHROME1 images (stored inverted) as MONOCHROME2.")
    frame: int | None = Field(
        None, ge=0, description="Which frame of a multi-frame DICOM to read (0 the first); "
        "unset, a multi-frame file is not read.")

    @model_validator(mode="after")
    def _dicom_settings_need_pydicom(self) -> PreprocessConfig:
        # These two settings mean something for DICOM files only: asking for them without
        # the reader is refused here, before any data is listed.
        if self.window == "file" or self.frame is not None:
            setting = "window: file" if self.window == "file" else "frame"
            require_dicom_extra(f"data.preprocess.{setting} (DICOM only)")
        return self

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, value: object) -> object:
        if isinstance(value, int):
            return (value, value)
        return value

    @field_validator("size")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        problem = None if value is None else size_problem(value)
        if problem is not None:
            raise ValueError(f"size: {problem}")
        return value

    @property
    def decode_mode(self) -> Literal["L", "RGB"]:
        """The PIL mode stored in the cache; `gray3` stores grey and repeats it later."""
        return "RGB" if self.color == "rgb" else "L"

    @property
    def channels(self) -> int:
        """Channels the model sees."""
        return 1 if self.color == "grayscale" else 3


class GroupBy(StrictModel):
    r"""Images that belong together (one patient, one session), kept in one split and one
    fold: a regular expression searched in each image's id (its path under the data
    folder; the first capture group, or else the whole match, names the group), a column
    of a CSV manifest, or a DICOM attribute of each file (`dicom:PatientID`, any keyword).
    A pattern can be written alone: `group_by: 'person\d+'`. An image the pattern does not
    match, with an empty column or without the attribute, is a group of its own."""

    pattern: str | None = None
    column: str | None = None
    dicom: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str) and value.startswith(DICOM_PREFIX):
            return {"dicom": value.removeprefix(DICOM_PREFIX)}
        return {"pattern": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_way(self) -> GroupBy:
        if sum(way is not None for way in (self.pattern, self.column, self.dicom)) != 1:
            raise ValueError("give one of pattern (a regular expression), column, or "
                             "dicom (an attribute keyword such as PatientID)")
        if self.dicom is not None:
            _check_dicom_keyword(self.dicom)
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression: "
                                 f"{exc}") from None
        return self

    def describe(self) -> str:
        """How the groups are found, in a few words."""
        # Quoted as written: repr() would double every backslash of the pattern.
        if self.pattern is not None:
            return f"pattern '{self.pattern}' in the image ids"
        if self.dicom is not None:
            return f"DICOM attribute {self.dicom}"
        return f"CSV column '{self.column}'"


DICOM_PREFIX = "dicom:"


def require_dicom_extra(purpose: str) -> None:
    """Refuse `purpose` in one line naming the extra when the DICOM reader's packages are
    not installed."""
    # Imported here, only for configs that ask for DICOM: the readers bring NumPy and
    # Pillow, which the fast first validation of a config does without.
    from visionbench.readers import READERS

    reader = READERS.get("dicom")
    if not reader.available():
        raise ValueError(f"{purpose} needs the {reader.extra} extra: pip install "
                         f"'visionbench[{reader.extra}]'")


def _check_dicom_keyword(keyword: str) -> None:
    """Refuse a DICOM keyword that names no attribute, or pydicom missing (the extra)."""
    require_dicom_extra("dicom: grouping by a DICOM attribute")
    from pydicom.datadict import tag_for_keyword

    if tag_for_keyword(keyword) is None:
        raise ValueError(f"dicom: {keyword!r} is not a DICOM attribute keyword (e.g. "
                         "PatientID, StudyInstanceUID, SeriesInstanceUID)")


class SplitConfig(StrictModel):
    """How train/validation(/test) splits are made from the data the source gives.

    A test split the source provides is never touched and never feeds validation. `test`
    (a fraction of all images) is used only when the source has no test split; `val` is a
    fraction of the training images that remain. `given: pool` ignores the source's
    splits and splits everything here (e.g. MNIST's 10k test set used alone).
    """

    val: float = Field(0.2, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 42
    folds: int | None = Field(None, ge=2)
    test_with: Literal["refit", "fold_ensemble"] = Field(
        "refit", description="With folds: what predicts the test split — the model refit "
        "on every non-test image, or the mean of the fold models' probabilities.")
    given: Literal["keep", "pool"] = "keep"
    limit_per_class: int | None = Field(None, ge=1)
    group_by: GroupBy | None = None

    @model_validator(mode="after")
    def _ensemble_of_folds(self) -> SplitConfig:
        if self.test_with == "fold_ensemble" and self.folds is None:
            raise ValueError("test_with: fold_ensemble averages the fold models: set folds "
                             "too (e.g. folds: 5)")
        return self


class PositiveGroup(StrictModel):
    """Classes read together as 'positive' in clinical readings (e.g. any tumour)."""

    name: str
    classes: list[str] = Field(min_length=1)


class LabelConfig(StrictModel):
    """Label mapping, applied in this order: rename, merge, select, positive (binary)."""

    rename: dict[str, str] = Field(default_factory=dict)
    merge: dict[str, list[str]] = Field(default_factory=dict)
    select: list[str] | None = None
    positive: list[str] | None = None
    positive_name: str | None = None
    negative_name: str | None = None
    positive_group: PositiveGroup | None = None


class DuplicateConfig(StrictModel):
    """Exact (decoded-pixel hash) and near (perceptual hash, then pixel correlation)
    duplicate detection.

    `policy`: `warn` records and reports, `drop_from_test` removes test images that
    duplicate a training or validation image, `fail` stops the run on any such leak.
    """

    policy: Literal["warn", "drop_from_test", "fail"] = "warn"
    near: bool = True
    near_threshold: int = Field(4, ge=0, le=32)
    near_similarity: float = Field(
        0.97, ge=-1, le=1, description="A near pair by hash is kept only if the two images' "
        "grey pixels correlate at least this much (a small image's hash cannot tell two "
        "different images of one kind apart).")
    keep_groups_together: bool = True


class CacheConfig(StrictModel):
    """How much disk the decoded images may take. Above `max_gb` (by default half the free
    space where the cache lives) the images are not stored decoded: they stay in their
    files and are decoded a batch at a time, in threads, as they are read (the same pixels,
    slower epochs); `max_gb: 0` always streams."""

    max_gb: float | None = Field(None, ge=0)


class DataCommon(StrictModel):
    """Settings every source shares; each source adds its own fields and a `source` tag."""

    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    duplicates: DuplicateConfig = Field(default_factory=DuplicateConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    cache_dir: Path | None = None
    workers: int | None = Field(None, ge=1)
