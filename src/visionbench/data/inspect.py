"""Dataset inspection: counts, image statistics, duplicates, class variance, charts.

The variance analysis follows the MRI study's section 4.4 (images flattened to vectors):
intra-class variance of class k is (1/n_k) sum ||x_i - mu_k||^2, the study's inter-class
variance is sum_k n_k ||mu_k - mu||^2 and its ratio divides that by the *sum* of the
intra-class variances. That ratio mixes a sum over images with a mean per class, so it
grows with the dataset size; we report it for comparison and, beside it, the
scale-free Fisher ratio trace(S_B) / trace(S_W) = sum_k n_k ||mu_k - mu||^2 /
sum_k n_k var_k. Everything is accumulated in chunks: no N x D matrix is ever built.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from visionbench.data.dataset import SPLITS, PreparedData
from visionbench.data.duplicates import place_label
from visionbench.data.quality import image_quality
from visionbench.errors import UserError
from visionbench.fileio import write_json
from visionbench.pictures import PNG_OPTIONS, contact_sheet, save_png, tile
from visionbench.readers.dicom import read_tags
from visionbench.rundir.documents import (
    ClassSpread,
    ClassVariance,
    ImageStats,
    Inspection,
    SizeRange,
)
from visionbench.rundir.layout import class_chart, duplicate_pairs_chart, sample_chart

CHUNK = 256
# The DICOM attributes `inspect` compares between splits, and how many values it lists.
DESCRIBED = ("Modality", "Manufacturer", "ManufacturerModelName", "PixelSpacing",
             "WindowCenter", "WindowWidth", "PhotometricInterpretation", "BitsStored",
             "InstitutionName")
ABSENT = "absent"
VALUES_SHOWN = 6
SAMPLES_PER_CLASS = 8
THUMBNAIL = 128


def image_statistics(data: PreparedData) -> dict[str, ImageStats]:
    """Source image sizes, modes and formats per split (before preprocessing)."""
    stats: dict[str, ImageStats] = {}
    source_positions = data.index
    for split in SPLITS:
        positions = source_positions[data.split == split]
        if len(positions) == 0:
            continue
        width, height = data.decoded.width[positions], data.decoded.height[positions]
        sizes = Counter(zip(width.tolist(), height.tolist(), strict=True))
        stats[split] = ImageStats(
            width=_size_range(width),
            height=_size_range(height),
            distinct_sizes=len(sizes),
            most_common_sizes=[f"{w}x{h}: {n}" for (w, h), n in sizes.most_common(3)],
            modes=dict(Counter(data.decoded.modes[p] for p in positions.tolist())),
            formats=dict(Counter(data.decoded.formats[p] or "array" for p in positions.tolist())),
        )
    return stats


def dicom_attributes(data: PreparedData) -> dict[str, dict[str, dict[str, int]]]:
    """Per split, the counts of each value of the DICOM attributes in `DESCRIBED` that vary
    across the data's DICOM files (a classic source of shift between hospitals: another
    manufacturer, pixel spacing or window); empty when the data holds no DICOM file."""
    positions = [p for p, where in enumerate(data.index.tolist())
                 if data.decoded.formats[where] == "DICOM"]
    if data.paths is None or not positions:
        return {}
    values: dict[str, list[str]] = {keyword: [] for keyword in DESCRIBED}
    for position in positions:
        try:
            found = read_tags(data.paths[position], list(DESCRIBED))
        except UserError:
            found = {}
        for keyword in DESCRIBED:
            values[keyword].append(found.get(keyword, ABSENT))
    varying = [keyword for keyword in DESCRIBED if len(set(values[keyword])) > 1]
    splits = data.split[positions]
    by_split: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        members = np.flatnonzero(splits == split)
        if len(members) == 0:
            continue
        by_split[split] = {keyword: dict(Counter(values[keyword][m] for m in members.tolist()
                                                 ).most_common(VALUES_SHOWN))
                           for keyword in varying}
    return by_split


def _size_range(sides: np.ndarray) -> SizeRange:
    return SizeRange(min=int(sides.min()), median=float(np.median(sides)), max=int(sides.max()))


def class_variance(
    data: PreparedData, splits: tuple[str, ...] = ("train", "val")
) -> ClassVariance:
    """Intra/inter-class variance of the flattened uint8 images of `splits` (see module doc)."""
    positions = np.flatnonzero(np.isin(data.split, splits))
    dims = int(np.prod(data.images.shape[1:]))
    per_class: dict[str, ClassSpread] = {}
    sums, counts, intra = [], [], []
    for label, name in enumerate(data.classes):
        members = np.sort(data.index[positions[data.targets[positions] == label]])
        if len(members) == 0:
            continue
        total = np.zeros(dims)
        squared = 0.0
        for start in range(0, len(members), CHUNK):
            chunk = np.asarray(data.images[members[start : start + CHUNK]]).reshape(-1, dims)
            total += chunk.sum(axis=0, dtype=np.float64)
            as_float = chunk.astype(np.float32)
            squared += float(np.einsum("ij,ij->", as_float, as_float, dtype=np.float64))
        mean = total / len(members)
        variance = squared / len(members) - float(mean @ mean)
        per_class[name] = ClassSpread(count=len(members), intra_variance=variance)
        sums.append(total)
        counts.append(len(members))
        intra.append(variance)
    n = np.asarray(counts, np.float64)
    means = np.stack(sums) / n[:, None]
    grand = np.sum(sums, axis=0) / n.sum()
    inter = float(np.sum(n * np.sum((means - grand) ** 2, axis=1)))
    within = float(np.sum(n * np.asarray(intra)))
    return ClassVariance(
        computed_on=list(splits),
        pixel_scale="uint8 0-255, flattened preprocessed images",
        per_class=per_class,
        inter_variance_study=inter,
        ratio_study=inter / float(np.sum(intra)) if np.sum(intra) > 0 else None,
        fisher_ratio=inter / within if within > 0 else None,
    )


def _cached_variance(data: PreparedData) -> ClassVariance:
    """`class_variance`, remembered in the cache entry for this exact labelling and split."""
    digest = hashlib.blake2b(digest_size=12)
    for array in (data.index, data.targets, data.split.astype("U5")):
        digest.update(np.ascontiguousarray(array).data)
    path = data.decoded.path / f"variance-{digest.hexdigest()}.json"
    try:
        return ClassVariance.model_validate_json(path.read_text())
    except (OSError, ValueError):
        variance = class_variance(data)
    # A read-only cache still gives the answer, just not faster next time.
    with contextlib.suppress(OSError):
        write_json(path, variance.model_dump())
    return variance


def plot_class_distribution(data: PreparedData, path: Path) -> Path:
    """Grouped bar chart of images per class and split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in SPLITS if s in data.record.splits]
    x = np.arange(len(data.classes))
    width = 0.8 / max(len(splits), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(data.classes) + 3), 4))
    for i, split in enumerate(splits):
        counts = [data.record.splits[split][name] for name in data.classes]
        bars = ax.bar(x + (i - (len(splits) - 1) / 2) * width, counts, width, label=split)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(
        x, data.classes, rotation=30 if sum(map(len, data.classes)) > 40 else 0, ha="right"
    )
    ax.set_ylabel("images")
    ax.set_title("Images per class and split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, pil_kwargs=PNG_OPTIONS)
    plt.close(fig)
    return path


PAIRS_SHOWN = 8
# Pixels on the longer side of each image of a duplicate pair.
PAIR_TILE = 120


def duplicate_pairs(data: PreparedData, path: Path) -> Path | None:
    """Up to PAIRS_SHOWN example duplicate pairs side by side, as the models see them, so a
    reader can judge them: pairs across splits first (near, then exact), then within one;
    None when there is no pair."""
    found, folds = data.record.duplicates, data.record.folds is not None
    if found is None:
        return None
    examples = [(kind, place_label(where, folds), pair)
                for place in ("across", "within") for kind in ("near", "exact")
                for where, finding in found.at(kind, place).items()
                for pair in finding.examples]
    examples = examples[:PAIRS_SHOWN]
    if not examples:
        return None
    position = {image_id: i for i, image_id in enumerate(data.ids)}
    # Four pairs to a row: each pair is two small images side by side, its kind and place
    # read across the pair's two captions ("exact, across" | "train~test"), each image's
    # id under that.
    pictures, captions = [], []
    for kind, where, pair in examples:
        relation, sides = where.split(" ", 1)
        for side, image_id in enumerate(pair):
            pictures.append(tile(np.asarray(data.images[data.index[position[image_id]]]),
                                 PAIR_TILE))
            # The end of a long path names the file; the full ids are in data.json.
            shown = image_id if len(image_id) <= 22 else "…" + image_id[-21:]
            captions.append(f"{kind}, {relation}\n{shown}" if side == 0 else
                            f"{sides}\n{shown}")
    return save_png(contact_sheet(pictures, captions, columns=8, caption_size=9), path)


def sample_grid(data: PreparedData, label: int, path: Path, seed: int = 0) -> Path:
    """A row of up to 8 training images of class `label`, as the model sees them (uint8)."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero((data.targets == label) & (data.split == "train"))
    chosen = np.sort(data.index[rng.permutation(pool)[:SAMPLES_PER_CLASS]])
    pictures = [tile(np.asarray(data.images[position]), THUMBNAIL)
                for position in chosen.tolist()]
    return save_png(contact_sheet(pictures, [""] * len(pictures), columns=len(pictures)),
                    path)


def inspect_data(data: PreparedData, out_dir: Path) -> Inspection:
    """Everything `visionbench inspect` reports: the data record with image statistics,
    class variance and image-quality issues; charts are written into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = [str(plot_class_distribution(data, class_chart(out_dir)))]
    pairs = duplicate_pairs(data, duplicate_pairs_chart(out_dir))
    if pairs is not None:
        artifacts.append(str(pairs))
    for label, name in enumerate(data.classes):
        artifacts.append(str(sample_grid(data, label, sample_chart(out_dir, name))))
    record = data.record.model_dump(exclude_unset=True,
                                    exclude={"schema_version", "checksum", "ids_note"})
    stats = image_statistics(data)
    for split, attributes in dicom_attributes(data).items():
        stats[split].dicom = attributes
    return Inspection(**record, image_stats=stats,
                      variance=_cached_variance(data), quality=image_quality(data, out_dir),
                      artifacts=artifacts)
