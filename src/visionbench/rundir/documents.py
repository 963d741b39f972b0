"""Every JSON document of a run folder as a typed model with a schema version.

A document declares its file name (`FILE`) and whether it lives in the run folder or in a
model folder (`LEVEL`); `visionbench.rundir.layout` reads and writes them, and nothing else
names those files. Documents are written with the keys that were set (no invented
defaults), and validated when read: a damaged or foreign file is a one-line error, and a
folder written by an older visionbench (no `schema_version`) reads as version 1.

Nested parts are typed too (`Part`: unknown keys refused), built as such by their producers
and read as attributes; mappings remain where the keys are data (class, model, split,
metric names) and where the content is free-form, each said where it is declared. Parts
added after a folder format shipped have defaults, so older folders still read.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from visionbench.schemas.data import PreprocessConfig
from visionbench.schemas.evaluate import HEADLINE
from visionbench.schemas.inputs import InputSpec, size_problem

# 2: the comparison and the leaderboard name the model recommended on validation
# (`recommended`) and the test-best (`test_best`) instead of one test-chosen `best`.
SCHEMA_VERSION = 2


class Status(str, Enum):
    """What became of a model in a run."""

    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    NOT_RUN = "not run"


class Part(BaseModel):
    """Base of a document's nested parts: unknown keys are refused, as in documents."""

    model_config = ConfigDict(extra="forbid")


class Notice(Part):
    """A warning or note as a record: a stable `code` the report renders by, the sentence a
    reader sees, and the numbers behind it."""

    code: str
    message: str
    # Free-form: the numbers behind the sentence, different for every code.
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_sentence(cls, value: Any) -> Any:
        # Run folders written before notices were records hold plain sentences.
        return {"code": "note", "message": value} if isinstance(value, str) else value


def notices_with(notices: list[Notice], code: str) -> list[Notice]:
    """The notices of one kind."""
    return [n for n in notices if n.code == code]


class Document(BaseModel):
    """Base of every run-folder document."""

    model_config = ConfigDict(extra="forbid")
    FILE: ClassVar[str]
    LEVEL: ClassVar[Literal["run", "model", "export"]]

    schema_version: int = SCHEMA_VERSION
    checksum: str | None = Field(None, description="SHA-256 of the rest of the document, "
                                 "written with it and checked when it is read.")


class Interval(Part):
    """A value with its bootstrap interval when one was computed."""

    value: float | None
    low: float | None = None
    high: float | None = None


class SplitScore(Part):
    """Loss and accuracy of a model on one split, as training measured them."""

    loss: float
    accuracy: float
    images: int


class StageReport(Part):
    """A training stage's trainable set: how many parameters train, how many are frozen,
    and the rule that chose them."""

    stage: str
    trainable: int
    frozen: int
    rule: str


class CodeVersion(Part):
    """visionbench's version and the git commit of its source (when it has one)."""

    visionbench: str
    commit: str | None = None
    dirty: bool | None = None


class InputRecord(Part):
    """What the model was fed: size, channels, normalisation (a model trained elsewhere:
    its layout and scale)."""

    size: list[int]
    channels: int
    mean: list[float]
    std: list[float]
    per_image: bool | None = None
    layout: str | None = None
    scale: float | None = None


class Timing(Part):
    """Seconds spent (training, this call's wall clock, test-time augmentation) and the
    training throughput."""

    train_seconds: float | None = None
    wall_seconds_this_call: float | None = None
    images_per_second: float | None = None
    tta_seconds: float | None = None


class RepeatScore(Part):
    """A training repeat's seed and its test score."""

    seed: int | None
    test: SplitScore | None = None


class FoldScore(Part):
    """A fold model's epochs and its validation (the fold) and test scores."""

    fold: int
    epochs: int | None
    val: SplitScore | None = None
    test: SplitScore | None = None


class TtaSource(Part):
    """A test-time augmentation row: the model whose weights predict, and its views."""

    model: str
    views: list[str]


class ModelMetrics(Document):
    """`<model>/metrics.json`: how a model was made and what became of it."""

    FILE: ClassVar[str] = "metrics.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "model"

    model: str
    status: Status
    description: str | None = None
    parameters: int | None = None
    stages: list[StageReport] = Field(default_factory=list)
    epochs: int | None = None
    device: str | None = None
    hardware: str | None = None
    command: list[str] = Field(default_factory=list)
    code: CodeVersion | None = None
    input: InputRecord | None = None
    notes: list[str] = Field(default_factory=list)
    timing: Timing = Field(default_factory=Timing)
    val: SplitScore | None = None
    test: SplitScore | None = None
    repeats: list[RepeatScore] | None = None
    folds: list[FoldScore] | None = Field(None, description="k-fold: each fold model's "
                                          "epochs and validation and test scores.")
    fold_ensemble: bool = Field(False, description="k-fold: the test split is predicted by "
                                "the mean of the fold models (in folds/<k>/), not a refit.")
    seed: int | None = None
    external: str | None = None
    ensemble: list[str] | None = None
    tta: TtaSource | None = Field(None, description="Test-time augmentation: `model` "
                                  "(whose weights predict) and its `views`.")
    error: str | None = None
    exit_code: int | None = None
    files: dict[str, str] = Field(default_factory=dict, description="SHA-256 of the "
                                  "model's predictions files, checked when they are read.")

    @property
    def ok(self) -> bool:
        """Whether the model finished."""
        return self.status is Status.OK

    @property
    def networks(self) -> list[str]:
        """The run's models whose weights give this row's answers: an ensemble's members,
        the model of a test-time augmentation row, else this model itself (a fold
        ensemble's are its fold models, in the model's own folder)."""
        return self.ensemble or ([self.tta.model] if self.tta else [self.model])


class ModelCard(Document):
    """`<model>/model.json`: what a trained model is, so it can be rebuilt and fed from its
    folder alone (never from the current config or the training data)."""

    FILE: ClassVar[str] = "model.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "model"

    model: str
    family: str
    classes: list[str]
    input: InputSpec
    output: str
    # Free-form: the model's resolved config section, as `ModelConfig` dumps it (validated
    # again as one when the model is rebuilt).
    config: dict[str, Any]


class EpochRow(Part):
    """One epoch of training: its stage, training and validation loss and accuracy,
    learning rate, seconds and images."""

    epoch: int
    stage: str | None = None
    train_loss: float
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    lr: float | None = None
    seconds: float | None = None
    images: int | None = None


class TrainingEvent(Part):
    """Something a callback did: early stopping (its best and stopping epochs, whether the
    best weights were restored) or a learning-rate reduction."""

    event: str
    stage: str | None = None
    epoch: int | None = None
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    restored: bool | None = None
    lr: float | None = None


class History(Document):
    """`<model>/history.json`: one row per epoch, events, and each stage's trainable set."""

    FILE: ClassVar[str] = "history.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "model"

    epochs: list[EpochRow]
    events: list[TrainingEvent] = Field(default_factory=list)
    stages: list[StageReport] = Field(default_factory=list)


class RunEntry(Part):
    """A model's line in `run.json`."""

    status: Status
    error: str | None = None


class RunDocument(Document):
    """`run.json`: the run's name, folder and each model's status."""

    FILE: ClassVar[str] = "run.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "run"

    name: str | None
    folder: str
    models: dict[str, RunEntry]


class PositiveGroupRecord(Part):
    """The classes a binary view of the task calls positive, and its name."""

    name: str
    classes: list[str]


class SplitPolicy(Part):
    """How the splits were made, as done (a split the source gave is "given", never a
    share)."""

    given: str = Field(description="keep or pool: what was done with the source's splits.")
    val: float | Literal["given"]
    test: float | Literal["given"]
    seed: int
    folds: int | None = None
    test_with: str | None = Field(None, description="With folds: what scores the test split.")
    limit_per_class: int | None = None
    before_limit: dict[str, int] | None = Field(None, description="Images per class before "
                                                "split.limit_per_class.")


class IgnoredFiles(Part):
    """Files of the data folder that are not images, skipped."""

    count: int
    examples: list[str]
    # Folders written before every file was listed hold the first ten only.
    files: list[str] | None = None

    @property
    def listed(self) -> list[str]:
        """Every skipped file, or the first ten in folders written before all were
        listed."""
        return self.examples if self.files is None else self.files


class DuplicateCount(Part):
    """Duplicates in one place (a split, or a pair of splits `a~b`): pairs, images with a
    duplicate there (for `a~b` the images of `b` also in `a`), pairs whose labels differ,
    and example id pairs."""

    pairs: int
    images: int
    label_conflicts: int
    examples: list[list[str]]

    def __add__(self, other: DuplicateCount) -> DuplicateCount:
        """Both places' duplicates counted together (with folds, the cross-validated
        images' places are one)."""
        return DuplicateCount(pairs=self.pairs + other.pairs, images=self.images + other.images,
                              label_conflicts=self.label_conflicts + other.label_conflicts,
                              examples=self.examples + other.examples)


class DuplicatePlaces(Part):
    """Duplicates of one kind, by split (`within`) and by pair of splits (`across`)."""

    within: dict[str, DuplicateCount] = Field(default_factory=dict)
    across: dict[str, DuplicateCount] = Field(default_factory=dict)


class DuplicateFindings(Part):
    """The exact and near duplicates found, the policy applied and what it did."""

    policy: str
    near_threshold: int | None
    near_similarity: float | None = None
    exact: DuplicatePlaces
    near: DuplicatePlaces
    dropped_from_test: list[str] = Field(default_factory=list)
    near_candidates_rejected: int | None = Field(None, description="Near pairs by hash that "
                                                 "the pixel comparison rejected.")
    test_duplicates_of_training: list[str] = Field(default_factory=list)

    def at(self, kind: Literal["exact", "near"], place: Literal["within", "across"]
           ) -> dict[str, DuplicateCount]:
        """The counts of one kind of duplicate in one kind of place, by split or split
        pair."""
        places = self.exact if kind == "exact" else self.near
        return places.within if place == "within" else places.across


class CacheRecord(Part):
    """The decode cache entry the images came from and how long reading them took."""

    key: str
    path: str
    from_cache: bool
    seconds: float
    # The images were over the cache's disk budget: decoded from their files as read.
    streamed: bool = False


class Straddling(Part):
    """Groups with images in more than one split, counted by the splits they touch."""

    groups: int
    splits: dict[str, int]
    examples: list[str]


class GroupFindings(Part):
    """`split.group_by`: how many groups were found and which straddle the splits."""

    by: str
    groups: int
    images_in_groups: int
    groups_of_several: int
    without_group: int
    straddling: Straddling


class DataRecord(Document):
    """`data.json`: classes, splits, counts, duplicate findings and how the splits were made."""

    FILE: ClassVar[str] = "data.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "run"

    source: str
    ids_note: str | None = Field(None, description="How image ids name images.")
    classes: list[str]
    channels: int
    image_shape: list[int]
    label_notes: list[str] = Field(default_factory=list)
    positive_group: PositiveGroupRecord | None = None
    splits: dict[str, dict[str, int]]
    totals: dict[str, int]
    split_policy: SplitPolicy | None = None
    failures: dict[str, str] = Field(default_factory=dict)
    ignored_files: IgnoredFiles | None = None
    duplicates: DuplicateFindings | None = None
    cache: CacheRecord | None = None
    warnings: list[Notice] = Field(default_factory=list)
    source_splits: dict[str, dict[str, int]] = Field(default_factory=dict)
    folds: dict[str, dict[str, int]] | None = None
    groups: GroupFindings | None = None

    @model_validator(mode="after")
    def _usable_shape(self) -> DataRecord:
        # Predict decodes every image to this shape: an edited one could exhaust memory.
        problem = size_problem(self.image_shape[:2]) if len(self.image_shape) >= 2 else (
            "needs height and width")
        if problem is not None:
            raise ValueError(f"image_shape: {problem}")
        return self

    @property
    def test_duplicates_of_training(self) -> set[str]:
        """Ids of test images that duplicate a training or validation image."""
        return set(self.duplicates.test_duplicates_of_training if self.duplicates else [])


class ClassIssues(Part):
    """A given class: its images scored and the issues found among them."""

    images: int
    issues: int


class LabelPair(Part):
    """How many images given one class the model says are another."""

    given: str
    suggested: str
    count: int


class LabelIssue(Part):
    """An image whose given label the model disputes, with both probabilities."""

    id: str
    given: str
    suggested: str
    given_probability: float
    suggested_probability: float


class LabelIssues(Document):
    """`data/label_issues.json`: images whose given label a model disputes (confident
    learning on out-of-sample probabilities), most severe first."""

    FILE: ClassVar[str] = "data/label_issues.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "run"

    model: str
    source: Literal["validation", "out-of-fold", "test"]
    method: str
    images_scored: int
    found: int
    shown: int = Field(24, description="How many of the worst the report lists and draws.")
    by_class: dict[str, ClassIssues] = Field(description="Given class -> images scored "
                                             "and issues found.")
    pairs: list[LabelPair] = Field(default_factory=list, description="(given, suggested) -> "
                                   "count, most frequent first.")
    issues: list[LabelIssue] = Field(default_factory=list, description="Every issue, most "
                                     "severe first.")


class LabelIssuesOfTest(LabelIssues):
    """`data/label_issues_test.json`: the same for the test split's labels (a diagnosis
    asked for with `visionbench inspect RUN_DIR --split test`; nothing is chosen on it)."""

    FILE: ClassVar[str] = "data/label_issues_test.json"


class QualityIssue(Part):
    """One image-quality issue: how many images have it, per split and class, which test
    images (for each model's accuracy on them), and a few examples."""

    meaning: str
    images: int
    counts: dict[str, dict[str, int]] = Field(description="Split -> class -> images.")
    test_ids: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)
    picture: str | None = Field(None, description="Thumbnails of the examples, in data/.")


class ImageQuality(Part):
    """Image-quality issues of the dataset (cleanvision's checks and grey stored as
    colour); an image may have several."""

    images: int
    issues: dict[str, QualityIssue] = Field(default_factory=dict)


class SizeRange(Part):
    """Smallest, median and largest of a source image side, in pixels."""

    min: int
    median: float
    max: int


class ImageStats(Part):
    """A split's source images before preprocessing: sizes, modes and formats."""

    width: SizeRange
    height: SizeRange
    distinct_sizes: int
    most_common_sizes: list[str] = Field(description="'WxH: count', the three most common.")
    modes: dict[str, int]
    formats: dict[str, int]
    dicom: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="DICOM attributes whose value varies across the "
        "data (modality, manufacturer, pixel spacing, window, ...): each value's count in "
        "this split, the commonest first; 'absent' counts files without it.")


class ClassSpread(Part):
    """A class's images and their within-class variance (summed over pixels)."""

    count: int
    intra_variance: float


class ClassVariance(Part):
    """Between- and within-class variance of the flattened images: how far apart the classes
    are in raw pixels."""

    computed_on: list[str]
    pixel_scale: str
    per_class: dict[str, ClassSpread]
    inter_variance_study: float
    ratio_study: float | None
    fisher_ratio: float | None


class Inspection(DataRecord):
    """`data/inspect.json`: the data record with image statistics, class variance and
    image-quality issues."""

    FILE: ClassVar[str] = "data/inspect.json"

    image_stats: dict[str, ImageStats] = Field(default_factory=dict)
    variance: ClassVariance | None = None
    quality: ImageQuality | None = None
    artifacts: list[str] = Field(default_factory=list)


class TrainingHashes(Document):
    """`data/training_hashes.json`: the exact and perceptual hashes of every training and
    validation image, so a new image can be recognised as one the models learned from
    (`visionbench predict`) without the training data."""

    FILE: ClassVar[str] = "data/training_hashes.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "run"

    ids: list[str]
    exact: list[str]
    phash: list[str] = Field(description="64-bit pHashes as 16 hex digits.")
    near_threshold: int | None
    near_similarity: float | None


class ExportTrainingHashes(TrainingHashes):
    """`training_hashes.json` of an export folder: the run's training hashes, so predict on
    the export can flag copies of training images too."""

    FILE: ClassVar[str] = "training_hashes.json"
    LEVEL: ClassVar[Literal["run", "model", "export"]] = "export"


class Tracking(Document):
    """`tracking.json`: where the run was logged besides its folder, by tracker (MLflow's
    URI, experiment and run ids; TensorBoard's folders), or why a tracker failed."""

    FILE: ClassVar[str] = "tracking.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "run"

    # Tracker -> its facts: each registered tracker decides what it reports (MLflow's
    # URI, experiment and run ids; TensorBoard's folders; or why it failed).
    trackers: dict[str, dict[str, Any]]


class SweepTrial(Part):
    """One trial of a sweep: its state, validation score, settings, epochs, and the best
    score so far."""

    number: int
    state: str
    value: float | None = None
    # Setting path -> value: the searched space decides the keys and their types.
    params: dict[str, Any] = Field(default_factory=dict)
    epochs: int | None = None
    last_epoch: int | None = None
    best_so_far: float | None = None


class SweepBest(Part):
    """The best trial: its number, validation score and settings."""

    number: int
    value: float
    # Setting path -> value, as in `SweepTrial.params`.
    params: dict[str, Any]


class Sweep(Document):
    """`sweep.json`: a search over one model's settings on validation: every trial (its
    settings, state, validation score, the best score so far), the best one, which became
    model `tuned`, each setting's importance and the scale it was searched on."""

    FILE: ClassVar[str] = "sweep.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "run"

    model: str
    tuned: str
    metric: str
    direction: Literal["maximize", "minimize"]
    pruner: str
    trials: list[SweepTrial]
    best: SweepBest
    importance: dict[str, float] = Field(default_factory=dict)
    # How each searched setting is drawn against the score: "log", "linear" or "category".
    scales: dict[str, Literal["log", "linear", "category"]] = Field(default_factory=dict)


class ClassRow(Part):
    """One class on the test split: one-vs-rest counts and rates (AUC and average precision
    only when the class and the rest both have test images)."""

    precision: float
    recall: float
    specificity: float
    f1: float
    support: float
    tp: float
    fp: float
    fn: float
    tn: float
    auc: float | None = None
    average_precision: float | None = None


class Confusion(Part):
    """The confusion matrix (rows: true class, columns: predicted), as counts and as
    shares of each true class."""

    counts: list[list[int]]
    normalized: list[list[float]]


class RocCurve(Part):
    """A class's ROC curve against the rest, at most `CURVE_POINTS` points."""

    fpr: list[float]
    tpr: list[float]


class PrCurve(Part):
    """A class's precision-recall curve against the rest."""

    recall: list[float]
    precision: list[float]


class ReliabilityBin(Part):
    """Test images whose top probability lies in [low, high): their mean confidence and
    accuracy."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


class Reliability(Part):
    """Reliability-diagram data: the non-empty confidence bins."""

    bins: list[ReliabilityBin] = Field(default_factory=list)


class ConfusedPair(Part):
    """An off-diagonal cell of the confusion matrix."""

    true: str
    predicted: str
    count: int


class BootstrapSettings(Part):
    """How the intervals were made."""

    resamples: int
    confidence: float
    stratified: bool


class ChosenThreshold(Part):
    """The threshold on the positive score chosen on validation (or why 0.5 was used)."""

    threshold: float
    method: str | None = None
    val_sensitivity: float | None = None
    val_specificity: float | None = None
    note: str | None = None


class BinaryReading(Part):
    """A positive/negative decision on test: rates and counts, each with its interval."""

    sensitivity: Interval
    specificity: Interval
    ppv: Interval
    npv: Interval
    missed_positives: Interval
    false_alarms: Interval
    tp: Interval
    tn: Interval


class ClinicalReading(Part):
    """The positive group read as one: at argmax, and at the threshold chosen on
    validation."""

    positive_classes: list[str]
    chosen_threshold: ChosenThreshold | None = None
    argmax: BinaryReading
    threshold: BinaryReading | None = None
    auc: float
    group: str | None = Field(None, description="The positive group's name, when named.")


class BeforeAfter(Part):
    """A value before and after temperature scaling."""

    before: float
    after: float


class TemperatureScaling(Part):
    """The temperature fitted on validation, and calibration before and after."""

    # Predict divides logits by it: an edited document with 0 or NaN is refused at read.
    value: float = Field(gt=0, allow_inf_nan=False)
    fitted_on: str
    validation_images: int
    validation_nll: BeforeAfter
    test: dict[str, BeforeAfter] = Field(description="Calibration metric -> on test.")
    reliability: Reliability


class ConformalClass(Part):
    """One class's coverage by the conformal sets on test."""

    coverage: float | None
    low: float
    high: float
    images: int
    # Older folders did not test each class against the target.
    p_below: float | None = None
    below_target: bool = False


class ConformalSummary(Part):
    """Conformal sets: the threshold calibrated on validation; coverage and sizes on test."""

    score: str
    coverage_target: float
    threshold: float
    calibration_images: int
    coverage: float | None
    low: float
    high: float
    mean_set_size: float | None
    set_sizes: dict[str, int] = Field(description="Set size -> test images.")
    per_class: dict[str, ConformalClass]
    flagged: list[str] = Field(default_factory=list)


class CleanTest(Part):
    """Headline metrics on the test images that do not duplicate a training image."""

    images: int
    removed: int
    metrics: dict[str, Interval]
    support: dict[str, int]
    recall: dict[str, float | None] = Field(description="None: the class kept no image.")


class Spread(Part):
    """One metric across training repeats: mean, sample standard deviation, each value."""

    mean: float
    std: float
    values: list[float]


class RepeatStatistics(Part):
    """Every headline metric across a model's training repeats (seeds)."""

    count: int
    metrics: dict[str, Spread]


class FoldMetric(Part):
    """One metric on each fold's validation images, its mean and corrected interval."""

    mean: float
    low: float
    high: float
    values: list[float]


class FoldStatistics(Part):
    """Every metric fold by fold (all repeats' folds), with corrected intervals."""

    count: int
    repeats: int = 1
    train_size: float
    test_size: float
    metrics: dict[str, FoldMetric]


class EvaluationDocument(Document):
    """`<model>/evaluation.json`: every number of one model on the test split."""

    FILE: ClassVar[str] = "evaluation.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "model"

    images: int
    metrics: dict[str, Interval]
    per_class: dict[str, ClassRow]
    confusion: Confusion
    roc: dict[str, RocCurve] = Field(default_factory=dict)
    pr: dict[str, PrCurve] = Field(default_factory=dict)
    calibration: Reliability = Field(default_factory=Reliability)
    confusions: list[ConfusedPair] = Field(default_factory=list)
    notes: list[Notice] = Field(default_factory=list)
    bootstrap: BootstrapSettings | None = None
    clinical: ClinicalReading | None = None
    clean_test: CleanTest | None = None
    repeats: RepeatStatistics | None = None
    folds: FoldStatistics | None = Field(None, description="k-fold: every metric on each "
                                         "fold's validation images, mean and corrected "
                                         "interval.")
    temperature: TemperatureScaling | None = Field(None, description="Temperature scaling: "
                                                   "the temperature fitted on validation, "
                                                   "calibration before and after.")
    conformal: ConformalSummary | None = Field(None, description="Conformal sets: the "
                                               "threshold from validation; coverage and "
                                               "sizes on test.")


class Selection(Part):
    """How the recommended model was chosen on validation: each model's value there, the
    models not told apart from the best (paired bootstrap p-values against it), the choice
    and the reason in words (empty in folders written before the choice moved to
    validation)."""

    split: str = "validation"
    metric: str | None = None
    alpha: float | None = None
    values: dict[str, float] = Field(default_factory=dict)
    p_values: dict[str, float] = Field(default_factory=dict)
    tied: list[str] = Field(default_factory=list)
    best_on_validation: str | None = None
    recommended: str | None = None
    reason: str | None = None


class McNemar(Part):
    """McNemar's test on two models' paired correctness."""

    only_a: int
    only_b: int
    statistic: float
    p_value: float
    method: str


class PairedDifference(Part):
    """A - B on one metric over shared bootstrap resamples: estimate, interval, p-value."""

    difference: float
    low: float
    high: float
    p_value: float
    resamples: int | None = Field(None, description="Older folders did not record it.")


class AucDifference(Part):
    """Two correlated ROC AUCs compared (DeLong, or a permutation test with few images of
    a class)."""

    auc_a: float
    auc_b: float
    z: float
    p_value: float
    method: str | None = None
    positives: int | None = None
    negatives: int | None = None


class PairTest(Part):
    """Two models on the same test images: McNemar, the paired bootstrap of each metric,
    the AUC tests per class."""

    a: str
    b: str
    mcnemar: McNemar
    bootstrap: dict[str, PairedDifference] = Field(default_factory=dict)
    delong: dict[str, AucDifference] = Field(default_factory=dict)


class PairedGain(Part):
    """`model` minus `against` on `metric` from their paired tests on test."""

    model: str
    against: str
    metric: str
    mcnemar_p: float
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None


class TtaGain(PairedGain):
    """A test-time augmentation row against its plain model, with the views it averages."""

    views: list[str]


class FoldComparison(Part):
    """A cross-validated model against the recommended one, fold by fold (corrected
    resampled t-test)."""

    model: str
    against: str
    metric: str
    difference: float
    t: float
    p_value: float
    folds: int


class ReferenceTest(Part):
    """A model against a reference value on one metric."""

    test: str
    p_greater: float | None = None
    p_less: float | None = None
    verdict: str


class ReferenceComparison(Part):
    """A reference's numbers and source, and every model tested against it."""

    source: str
    metrics: dict[str, float]
    models: dict[str, dict[str, ReferenceTest]] = Field(
        default_factory=dict, description="Model -> metric -> its test.")


def _test_chosen_best(value: Any) -> Any:
    """Version 1 documents named one `best`, chosen on the test split: it reads as the
    test-best, and nothing is recommended until `visionbench evaluate` chooses on
    validation."""
    if isinstance(value, dict) and "best" in value and "test_best" not in value:
        value = {k: v for k, v in value.items() if k != "best"} | {
            "test_best": value["best"], "recommended": None}
    return value


class Comparison(Document):
    """`comparison.json`: how the recommended model was chosen on validation, paired tests
    between every two models on test, and each model's mark against the recommended one."""

    FILE: ClassVar[str] = "comparison.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "run"

    primary_metric: str
    recommended: str | None
    test_best: str | None = None
    selection: Selection = Field(default_factory=Selection)
    alpha: float
    marks: dict[str, str]
    pairs: list[PairTest]
    folds: list[FoldComparison] = Field(default_factory=list, description="k-fold: each "
                                        "model against the recommended one, fold by fold "
                                        "(corrected resampled t-test).")
    references: dict[str, ReferenceComparison] = Field(
        default_factory=dict, description="Each reference's numbers and source, and every "
        "model tested against it.")
    tta: list[TtaGain] = Field(default_factory=list, description="Each test-time "
                               "augmentation row against its plain model on test: paired "
                               "difference, interval, p-values.")

    @model_validator(mode="before")
    @classmethod
    def _version_1(cls, value: Any) -> Any:
        return _test_chosen_best(value)


class HeadlineOnCleanTest(Interval):
    """The primary metric on the test images that do not duplicate a training image."""

    images: int


class HeadlineOverSeeds(Part):
    """The primary metric across training repeats (seeds)."""

    count: int
    mean: float
    std: float
    values: list[float]


class HeadlineOverFolds(Part):
    """The primary metric on each fold's validation images, its mean and corrected
    interval, and the corrected resampled t-test against the recommended model."""

    count: int
    repeats: int = 1
    mean: float
    low: float
    high: float
    values: list[float]
    p_value: float | None = None

    @property
    def interval(self) -> Interval:
        """The mean over folds with its corrected interval."""
        return Interval(value=self.mean, low=self.low, high=self.high)


class ReferenceRow(Part):
    """A reference shown on the leaderboard: its source and values."""

    source: str
    metrics: dict[str, float]


class LeaderboardRow(Part):
    """One model on the leaderboard."""

    model: str
    status: Status
    metrics: dict[str, Interval] = Field(default_factory=dict)
    missed_positives: float | None = None
    notes: list[Notice] = Field(default_factory=list)
    clean_test: HeadlineOnCleanTest | None = None
    repeats: HeadlineOverSeeds | None = None
    folds: HeadlineOverFolds | None = Field(None, description="k-fold: the primary metric "
                                            "on each fold's validation images, its mean "
                                            "and corrected interval, and the corrected "
                                            "resampled t-test against the recommended "
                                            "model.")
    validation: float | None = Field(None, description="The primary metric on the "
                                     "validation split, on which the recommendation is made.")
    parameters: int | None = None
    epochs: int | None = None
    train_seconds: float | None = None
    mark: str = ""
    error: str = ""


class Leaderboard(Document):
    """`leaderboard.json`: every model ranked by the primary metric (the .csv and .md are
    renderings of it)."""

    FILE: ClassVar[str] = "leaderboard.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "run"

    primary_metric: str
    confidence: float
    alpha: float
    metrics: list[str]
    headline: list[str] = Field(default_factory=list, description="The metrics shown in "
                                "tables and charts, primary first (all are in `metrics`).")
    recommended: str | None
    test_best: str | None = None
    rows: list[LeaderboardRow]
    references: dict[str, ReferenceRow] = Field(
        default_factory=dict, description="Reference rows: name -> source and metric values.")

    @model_validator(mode="before")
    @classmethod
    def _version_1(cls, value: Any) -> Any:
        return _test_chosen_best(value)

    @property
    def shown(self) -> list[str]:
        """The metrics tables and charts show, primary first (version 1 documents did not
        record them: the default headline then)."""
        if self.headline:
            return self.headline
        return [self.primary_metric, *(m for m in HEADLINE
                                       if m in self.metrics and m != self.primary_metric)]


class TopLoss(Part):
    """A test image the model got most wrong: its id, classes, confidence and loss."""

    id: str
    true: str
    predicted: str
    confidence: float
    loss: float


class ErrorAnalysis(Document):
    """`<model>/errors.json`: error rate per class, the highest-loss images, the pictures."""

    FILE: ClassVar[str] = "errors.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "model"

    error_rate: dict[str, float] = Field(description="Class -> share of its test images "
                                         "misclassified.")
    top_losses: list[TopLoss]
    files: list[str]


class CorruptionLevel(Part):
    """Test accuracy at one severity of a corruption, its drop from clean, and its exact
    interval (older folders: none)."""

    severity: float
    accuracy: float
    drop: float
    low: float | None = None
    high: float | None = None


class Robustness(Document):
    """`<model>/robustness.json`: test accuracy per corruption and severity."""

    FILE: ClassVar[str] = "robustness.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "model"

    clean_accuracy: float
    corruptions: dict[str, list[CorruptionLevel]]
    images: int | None = Field(None, description="The test images it ran on: a stratified "
                               "sample when fewer than the split's (older folders: all).")
    test_images: int | None = None


class FlaggedShare(Part):
    """How many images of a set a detector flags at its threshold."""

    images: int
    flagged: int
    share: float


class ForeignSeparation(Part):
    """How well a detector's scores tell a foreign set from the familiar split: AUROC
    (foreign positive) with its bootstrap interval, the false-positive rate at 95 % true
    positives, and the share of the foreign set flagged."""

    images: int
    auroc: float
    auroc_low: float
    auroc_high: float
    fpr_at_95: float
    flagged: float


class Unfamiliar(Document):
    """`<model>/unfamiliar.json`: the unfamiliar-image detector of one model: its method,
    the threshold chosen on validation, how many training images it was fitted on, the
    share of validation and test images it flags, and the checksum of its arrays
    (`unfamiliar.safetensors`)."""

    FILE: ClassVar[str] = "unfamiliar.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "model"

    method: str
    keep: float
    threshold: float
    train_images: int
    flagged: dict[str, FlaggedShare] = Field(
        description="Split -> images, flagged (count) and share.")
    arrays_checksum: str
    generic: bool = Field(False, description="Combined with the run's generic-embedding "
                          "detector (`unfamiliar_generic.json`): the threshold is then on "
                          "the higher of the two ranks among validation scores.")
    foreign: dict[str, ForeignSeparation] = Field(
        default_factory=dict, description="Foreign set -> images, AUROC against the "
        "familiar split with its bootstrap interval, FPR at 95 % TPR, share flagged. "
        "Sets named 'generated: ...' were made by visionbench (no set was named).")
    foreign_against: str = Field("test", description="The familiar split the foreign "
                                 "sets are measured against.")


class GenericUnfamiliar(Document):
    """`unfamiliar_generic.json`: the run's generic-embedding detector (an ImageNet
    network's features, whatever model the run trained), fitted once on the training
    sample and shared by every model's detector; its arrays hold its validation and test
    scores in split order."""

    FILE: ClassVar[str] = "unfamiliar_generic.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "run"

    embedding: str
    method: str
    train_images: int
    arrays_checksum: str


class PropertyShiftRow(Part):
    """One image property compared between the training sample and another set."""

    name: str
    distance: float = Field(description="Kolmogorov-Smirnov distance (0 to 1).")
    p_value: float
    reference: list[float] = Field(description="Training sample: quartiles (25, 50, 75 %).")
    other: list[float] = Field(description="The other set: quartiles (25, 50, 75 %).")
    moved: bool = Field(description="Significant after Bonferroni's correction and at least "
                        "the configured distance.")


class SplitShift(Part):
    """The two-sample test of one set of images against the training sample."""

    reference_images: int
    images: int
    mmd2: float = Field(description="Maximum mean discrepancy (squared, biased estimate) "
                        "between the two sets' generic embeddings.")
    p_value: float = Field(description="Its permutation p-value.")
    permutations: int
    auc: float = Field(description="Cross-validated AUC of a classifier telling the sets "
                       "apart (0.5: it cannot).")
    shifted: bool = Field(description="p-value below the configured alpha.")
    properties: list[PropertyShiftRow] = Field(default_factory=list,
                                               description="Largest distance first.")


class ShiftDocument(Document):
    """`shift.json`: whether the validation and test images come from the distribution of
    the training images (a kernel two-sample test on a generic embedding, with the image
    properties that moved), and the training sample that new batches are compared with
    (`predict --check-shift`; arrays in `shift_reference.safetensors`)."""

    FILE: ClassVar[str] = "shift.json"
    LEVEL: ClassVar[Literal["run", "model", "export"]] = "run"

    embedding: str
    alpha: float
    permutations: int
    smallest_distance: float
    splits: dict[str, SplitShift] = Field(default_factory=dict,
                                          description="Split -> its test against training.")
    reference_checksum: str


class SegmentRow(Part):
    """One quantile bin of one image property on the test split."""

    property: str
    bin: int
    low: float | None = Field(description="Lower edge (from training images); None: open.")
    high: float | None = Field(description="Upper edge (from training images); None: open.")
    images: int
    accuracy: Interval = Field(description="With its exact (Clopper-Pearson) interval.")
    primary: Interval | None = Field(None, description="The headline metric, with a "
                                     "bootstrap interval (None where undefined).")
    p_value: float = Field(description="One-sided Fisher exact test: accuracy below the "
                           "rest of the test split.")
    adjusted: float = Field(description="Holm-adjusted over every bin of every property.")
    weak: bool


class Segments(Document):
    """`<model>/segments.json`: the model's accuracy and headline metric per quantile bin
    of each image property on the test split (edges from training images), and which bins
    are significantly weaker than the rest."""

    FILE: ClassVar[str] = "segments.json"
    LEVEL: ClassVar[Literal["run", "model", "export"]] = "model"

    primary_metric: str
    bins: int
    alpha: float
    accuracy: Interval = Field(description="On the whole test split.")
    rows: list[SegmentRow] = Field(default_factory=list)
    quality: list[SegmentRow] = Field(
        default_factory=list, description="The test images with each image-quality issue "
        "(`property`: the issue; no edges), tested the same way, Holm-corrected apart.")


class Explanations(Document):
    """`<model>/explanations.json`: maps' deletion scores and pictures, or why there are none."""

    FILE: ClassVar[str] = "explanations.json"
    LEVEL: ClassVar[Literal["run", "model"]] = "model"

    error: str | None = None
    methods: list[str] = Field(default_factory=list)
    deletion: dict[str, float] = Field(default_factory=dict)
    deletion_per_image: dict[str, list[float]] = Field(default_factory=dict)
    images: list[str] = Field(default_factory=list)
    titles: list[str] = Field(default_factory=list)
    gradcam_layer: str | None = None
    file: str | None = None
    note: str | None = None
    notes: list[str] = Field(default_factory=list)


class ExportUnfamiliar(Part):
    """The card's account of the unfamiliar-image detector inside an export's graph: the
    graph's second output `unfamiliar` is the score; above `threshold` the model should
    not be trusted to answer."""

    method: str
    keep: float = Field(description="The share of validation images the threshold lets "
                        "pass.")
    threshold: float = Field(description="Chosen on validation: a score above it is "
                             "unfamiliar.")
    generic: str | None = Field(None, description="The generic embedding whose detector is "
                                "combined with the model's (the score is then the higher "
                                "of the two ranks among validation scores).")
    flagged: dict[str, float] = Field(default_factory=dict,
                                      description="Split -> share of its images flagged.")


class ConformalSets(Part):
    """What predict needs to make conformal sets: the score, its threshold calibrated on
    validation, and the coverage it aims at."""

    score: str
    threshold: float
    coverage: float


class GraphTensor(Part):
    """An input or output of the ONNX graph: its name, dtype and shape, and what it is."""

    name: str
    dtype: str
    shape: list[int | str]
    layout: str | None = None
    holds: str | None = None


class ExportMember(Part):
    """A network inside the graph: its model, family, output kind and what it is fed."""

    model: str
    family: str
    output: str
    input: InputSpec


class ExportData(Part):
    """The data the export was checked on: the source, the SHA-256 of the run's data
    record, and how many test images the parity check used."""

    source: str
    fingerprint: str
    test_images: int


class Parity(Part):
    """onnxruntime against PyTorch on test images: the largest probability difference,
    top-1 agreement (with a detector: its scores' difference and flags' agreement), and the
    limits an export must meet."""

    images: int
    chosen: str | None = None
    max_abs_difference: float
    top1_agreement: float
    limits: dict[str, float] = Field(default_factory=dict)
    unfamiliar_max_abs_difference: float | None = None
    unfamiliar_agreement: float | None = None


class ExportCard(Document):
    """`model.json` of an export folder: everything needed to use `model.onnx` without
    visionbench — how to decode an image into its uint8 input, what comes out, the readings
    chosen on validation, the test metrics, and the parity check made at export."""

    FILE: ClassVar[str] = "model.json"
    LEVEL: ClassVar[Literal["run", "model", "export"]] = "export"

    model: str
    classes: list[str]
    decode: PreprocessConfig = Field(description="How an image becomes the uint8 (H, W, C) "
                                     "input: the run's data.preprocess, size included.")
    input: GraphTensor = Field(description="The ONNX input: name, dtype, shape.")
    output: GraphTensor = Field(description="The ONNX output: name, what it holds.")
    members: list[ExportMember] = Field(description="The model (or an ensemble's members): "
                                        "family, input size, channels, normalisation, "
                                        "resize, output kind; applied inside the graph.")
    positive_classes: list[str] | None = None
    threshold: float | None = None
    margin: float | None = None
    margin_note: str = ""
    temperature: float | None = Field(None, gt=0, allow_inf_nan=False,
                                      description="Temperature scaling fitted on validation, "
                                      "already inside the graph.")
    conformal: ConformalSets | None = Field(None, description="Conformal sets: `score`, "
                                            "its validation `threshold`, the `coverage`.")
    unfamiliar: ExportUnfamiliar | None = Field(None, description="The unfamiliar-image "
                                                "detector scored inside the graph.")
    test_metrics: dict[str, Interval] = Field(default_factory=dict)
    data: ExportData | None = None
    software: dict[str, str] = Field(default_factory=dict)
    parity: Parity | None = None
    source_run: str
