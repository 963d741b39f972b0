"""Shift: whether two sets of images (training and test, or training and a new batch) come
from the same distribution, and which simple image properties moved.

The test is a kernel two-sample test (maximum mean discrepancy, Gretton et al. 2012) on
image embeddings, with a permutation p-value: exact under the null whatever the embedding,
and cheap, since every permutation reuses one kernel matrix. Beside it, as its readable
effect size, the cross-validated AUC of a classifier telling the two sets apart (0.5: it
cannot). alibi-detect has both, but pins an older NumPy and Pillow and brings
transformers, OpenCV and numba: these few dozen lines on NumPy and scikit-learn suffice.

Properties (brightness, contrast, sharpness, colourfulness of the decoded pixels; size and
aspect ratio of the source files) are compared one by one with the two-sample
Kolmogorov-Smirnov test, as Deepchecks' property-drift check does; the largest differences
come first.

Example:
    >>> rng = np.random.default_rng(0)
    >>> same = mmd_test(rng.normal(size=(150, 4)), rng.normal(size=(150, 4)), 200)
    >>> moved = mmd_test(rng.normal(size=(150, 4)), rng.normal(size=(150, 4)) + 0.5, 200)
    >>> bool(same.p_value > 0.05), bool(moved.p_value < 0.01)
    (True, True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from visionbench.registry import Registry
from visionbench.rundir.documents import PropertyShiftRow, SplitShift
from visionbench.schemas.evaluate import ShiftConfig


@dataclass(frozen=True)
class TwoSampleTest:
    """The kernel two-sample test of one pair of sets: the biased MMD² estimate and its
    permutation p-value."""

    mmd2: float
    p_value: float
    permutations: int


def _squared_distances(points: np.ndarray) -> np.ndarray:
    norms = np.einsum("ij,ij->i", points, points)
    return np.maximum(norms[:, None] + norms[None, :] - 2 * points @ points.T, 0)


def mmd_test(reference: np.ndarray, other: np.ndarray, permutations: int = 1000,
             seed: int = 0) -> TwoSampleTest:
    """Kernel two-sample test of (N, D) `reference` against (M, D) `other` features: a
    Gaussian kernel whose width is the median distance between the pooled points, the
    MMD² of the two sets, and the share of `permutations` random relabellings of the
    pooled points whose MMD² reaches it (the observed one counted, so p > 0)."""
    # float32: twice the speed of the matrix products, and every labelling's statistic
    # is rounded alike, so the permutation p-value is unaffected.
    pooled = np.vstack([reference, other]).astype(np.float32)
    pooled = (pooled - pooled.mean(axis=0)) / (pooled.std(axis=0) + 1e-6)
    distances = _squared_distances(pooled)
    off_diagonal = distances[~np.eye(len(pooled), dtype=bool)]
    width = float(np.median(off_diagonal)) if off_diagonal.size else 1.0
    kernel = np.exp(-distances / max(width, 1e-12)).astype(np.float32)
    rng = np.random.default_rng(seed)
    n, total = len(reference), len(pooled)
    # Column j weighs the points of one labelling: +1/n for "reference", -1/m for "other";
    # MMD² of that labelling is w' K w. Column 0 is the observed labelling.
    labels = np.zeros((total, permutations + 1), bool)
    labels[:n, 0] = True
    for column in range(1, permutations + 1):
        labels[rng.permutation(total)[:n], column] = True
    weights = np.where(labels, 1 / max(n, 1), -1 / max(total - n, 1)).astype(np.float32)
    statistics = np.einsum("ij,ij->j", weights, kernel @ weights)
    observed = statistics[0]
    p_value = (1 + int((statistics[1:] >= observed).sum())) / (permutations + 1)
    return TwoSampleTest(mmd2=float(observed), p_value=float(p_value),
                         permutations=permutations)


def distinguishability(reference: np.ndarray, other: np.ndarray, seed: int = 0) -> float:
    """The cross-validated (5-fold) ROC AUC of a logistic regression telling `other` from
    `reference` on their first principal components: 0.5 when it cannot, 1 when every
    image gives its set away. The components are fitted once on the pooled points, which
    reads no label, so no fold learns from its held-out images."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    points = np.vstack([reference, other]).astype(np.float32)
    labels = np.r_[np.zeros(len(reference)), np.ones(len(other))]
    folds = min(5, len(reference), len(other))
    if folds < 2:
        return float("nan")
    points = (points - points.mean(axis=0)) / (points.std(axis=0) + 1e-6)
    components = max(1, min(32, points.shape[1], len(points) // 4))
    # Two power iterations find the leading components of an embedding closely enough,
    # ten times faster than the default; any label-free projection keeps the test valid.
    projected = PCA(components, svd_solver="randomized", iterated_power=2,
                    random_state=seed).fit_transform(points)
    scores = cross_val_predict(LogisticRegression(max_iter=1000), projected, labels,
                               method="predict_proba",
                               cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(roc_auc_score(labels, scores[:, 1]))


class Pixels:
    """A batch of uint8 (N, H, W, C) images and the views the properties share, each
    computed once per batch (the grey levels serve three properties)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    @functools.cached_property
    def planes(self) -> np.ndarray:
        """(C, N, H, W) uint8: each channel contiguous (reading a channel out of
        interleaved pixels costs ten times more than this one copy)."""
        return np.ascontiguousarray(np.moveaxis(self.images, -1, 0))

    @functools.cached_property
    def grey(self) -> np.ndarray:
        """(N, H, W) float32 grey levels 0-1 (ITU-R BT.601 luma, as PIL's "L")."""
        if len(self.planes) < 3:
            return self.planes[0].astype(np.float32) / 255
        red, green, blue = (np.float32(weight / 255) for weight in (0.299, 0.587, 0.114))
        return self.planes[0] * red + self.planes[1] * green + self.planes[2] * blue

    def channels(self) -> tuple[np.ndarray, ...]:
        """The red, green and blue levels as int16 (0-255; differences stay exact)."""
        return tuple(plane.astype(np.int16) for plane in self.planes[:3])


def _mean_and_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image mean and standard deviation of (N, H, W) integer `values`, from exact
    integer sums (numpy's own std would first copy them as float64)."""
    flat = values.reshape(len(values), -1)
    count = max(flat.shape[1], 1)
    wide = flat.astype(np.int32)
    mean = flat.sum(axis=1, dtype=np.int64) / count
    squares = np.einsum("ij,ij->i", wide, wide, dtype=np.int64) / count
    return mean, np.sqrt(np.maximum(squares - mean * mean, 0))


Property = Callable[[Pixels], np.ndarray]
PROPERTIES: Registry[Property] = Registry("image property")


@PROPERTIES.register("brightness")
def brightness(pixels: Pixels) -> np.ndarray:
    """Mean grey level, 0 (black) to 1 (white)."""
    return pixels.grey.mean(axis=(1, 2))


@PROPERTIES.register("contrast")
def contrast(pixels: Pixels) -> np.ndarray:
    """RMS contrast: the standard deviation of the grey levels (0-1)."""
    return pixels.grey.std(axis=(1, 2))


@PROPERTIES.register("sharpness")
def sharpness(pixels: Pixels) -> np.ndarray:
    """Variance of the Laplacian of the grey levels: low for blurry images."""
    grey = pixels.grey
    laplacian = (grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] + grey[:, :-2, 1:-1]
                 + grey[:, 2:, 1:-1] - 4 * grey[:, 1:-1, 1:-1])
    return laplacian.var(axis=(1, 2)) if laplacian.size else np.zeros(len(grey))


@PROPERTIES.register("colourfulness")
def colourfulness(pixels: Pixels) -> np.ndarray:
    """Hasler and Süsstrunk's colourfulness (0 for grey images), on 0-1 levels."""
    if pixels.images.shape[-1] < 3:
        return np.zeros(len(pixels.images), np.float32)
    red, green, blue = pixels.channels()
    # Opponent channels in integers: red - green, and twice yellow - blue.
    red_green, red_green_spread = _mean_and_std(red - green)
    yellow_blue, yellow_blue_spread = _mean_and_std(red + green - 2 * blue)
    spread = np.hypot(red_green_spread, yellow_blue_spread / 2)
    centre = np.hypot(red_green, yellow_blue / 2)
    return (spread + 0.3 * centre) / 255


def pixel_properties(images: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """Every registered property of uint8 (N, H, W, C) decoded images, in batches (the
    float copies of a whole split would not fit)."""
    values: dict[str, list[np.ndarray]] = {name: [] for name in PROPERTIES.names()}
    for first in range(0, len(images), batch):
        chunk = Pixels(np.asarray(images[first:first + batch]))
        for name in values:
            values[name].append(np.asarray(PROPERTIES.get(name)(chunk), np.float64))
    return {name: np.concatenate(parts) if parts else np.zeros(0)
            for name, parts in values.items()}


def source_properties(width: np.ndarray, height: np.ndarray) -> dict[str, np.ndarray]:
    """Size (the side of a square of as many pixels) and aspect ratio (width over height)
    of the source files, before decoding resized them."""
    width, height = np.asarray(width, np.float64), np.asarray(height, np.float64)
    return {"source size": np.sqrt(width * height),
            "aspect ratio": width / np.maximum(height, 1)}


@dataclass(frozen=True)
class PropertyShift:
    """One property compared between two sets: the Kolmogorov-Smirnov distance (the
    largest gap between their cumulative distributions, 0 to 1), its p-value, and each
    set's median and quartiles."""

    name: str
    distance: float
    p_value: float
    reference: tuple[float, float, float]
    other: tuple[float, float, float]


def property_shifts(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]
                    ) -> list[PropertyShift]:
    """Each property both sets have, compared, the largest distance first."""
    from scipy.stats import ks_2samp

    shifts = []
    for name in reference:
        a, b = reference[name], other.get(name)
        if b is None or not len(a) or not len(b):
            continue
        if np.ptp(np.r_[a, b]) == 0:  # one value everywhere (grey images' colourfulness)
            distance, p_value = 0.0, 1.0
        else:
            tested = ks_2samp(a, b)
            distance, p_value = float(tested.statistic), float(tested.pvalue)
        shifts.append(PropertyShift(name, distance, p_value, _quartiles(a), _quartiles(b)))
    return sorted(shifts, key=lambda shift: -shift.distance)


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    low, middle, high = np.quantile(values, [0.25, 0.5, 0.75])
    return float(low), float(middle), float(high)


def moved(shifts: list[PropertyShift], alpha: float, smallest: float) -> list[PropertyShift]:
    """The properties that moved: significant after Bonferroni's correction for the number
    compared, and by at least `smallest` in Kolmogorov-Smirnov distance (with thousands of
    images a difference nobody would notice is significant too)."""
    return [shift for shift in shifts
            if shift.p_value < alpha / max(len(shifts), 1) and shift.distance >= smallest]


def compare(reference: tuple[np.ndarray, dict[str, np.ndarray]],
            other: tuple[np.ndarray, dict[str, np.ndarray]], settings: ShiftConfig,
            seed: int = 0) -> SplitShift:
    """A set of images against the training sample: each given as (embeddings,
    properties), tested as `settings` say; the run's test of a split and `predict
    --check-shift`'s test of a batch both come from here."""
    tested = mmd_test(reference[0], other[0], settings.permutations, seed)
    shifts = property_shifts(reference[1], other[1])
    significant = {shift.name for shift in moved(shifts, settings.alpha,
                                                 settings.smallest_distance)}
    return SplitShift(
        reference_images=len(reference[0]), images=len(other[0]), mmd2=tested.mmd2,
        p_value=tested.p_value, permutations=tested.permutations,
        auc=distinguishability(reference[0], other[0], seed),
        shifted=tested.p_value < settings.alpha,
        properties=[PropertyShiftRow(name=shift.name, distance=shift.distance,
                                     p_value=shift.p_value, reference=list(shift.reference),
                                     other=list(shift.other),
                                     moved=shift.name in significant) for shift in shifts])


def verdict(test: SplitShift, what: str, properties: bool = True) -> str:
    """One sentence on `found`: whether `what` ("the test images", "these images") look
    like the training images, and (with `properties`) the properties that moved most.

    Example:
        >>> row = PropertyShiftRow(name="brightness", distance=0.4, p_value=1e-9,
        ...                        reference=[0.2, 0.3, 0.4], other=[0.4, 0.5, 0.6], moved=True)
        >>> test = SplitShift(reference_images=500, images=300, mmd2=0.2, p_value=0.001,
        ...                    permutations=999, auc=0.83, shifted=True, properties=[row])
        >>> for part in verdict(test, "the test images").split("; "):
        ...     print(part)
        the test images differ from the training images (two-sample test p = 0.001
        a classifier tells them apart with AUC 0.83)
        moved most: brightness (median 0.3 → 0.5)
    """
    # Cross-validated, a classifier that learns nothing scores around 0.5, often below.
    told = (f"a classifier tells them apart with AUC {test.auc:.2f}" if test.auc > 0.5 else
            f"a classifier cannot tell them apart (AUC {test.auc:.2f})")
    tested = f"two-sample test p = {test.p_value:.2g}; {told}"
    if not test.shifted:
        return f"{what} look like the training images ({tested})"
    shown = [row for row in test.properties if row.moved][:3] if properties else []
    text = f"{what} differ from the training images ({tested})"
    if shown:
        text += "; moved most: " + ", ".join(
            f"{row.name} (median {row.reference[1]:.3g} → {row.other[1]:.3g})"
            for row in shown)
    return text


# Names in a saved sample: its embeddings, then one array per property.
EMBEDDING = "embedding"
PROPERTY = "property:"


def as_arrays(embeddings: np.ndarray, properties: dict[str, np.ndarray]
              ) -> dict[str, np.ndarray]:
    """A sample (embeddings and properties) as named arrays, to save without pickle."""
    return {EMBEDDING: np.asarray(embeddings, np.float32),
            **{PROPERTY + name: np.asarray(values, np.float64)
               for name, values in properties.items()}}


def from_arrays(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The sample `as_arrays` saved."""
    return arrays[EMBEDDING], {name.removeprefix(PROPERTY): values
                               for name, values in arrays.items() if name.startswith(PROPERTY)}
