"""Typed `evaluate:` settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, model_validator

from visionbench.schemas.base import Registered, StrictModel, structure_only

Metric = Annotated[str, Registered("metric")]

ALL_METRICS = [
    "accuracy", "balanced_accuracy", "f1_macro", "precision_weighted", "recall_weighted",
    "f1_weighted", "global_f1", "roc_auc_macro", "roc_auc_weighted", "log_loss", "cohen_kappa",
    "matthews_corrcoef", "top_2_accuracy", "brier_score", "expected_calibration_error",
]
# A model's test-time augmentation row is `<model>+tta`: no model may end with it.
TTA_SUFFIX = "+tta"
HEADLINE = ["accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro", "log_loss"]


class ThresholdConfig(StrictModel):
    """How the decision threshold of a binary or grouped reading is chosen on validation.

    `youden` maximises sensitivity + specificity - 1; `sensitivity` takes the highest
    threshold whose validation sensitivity reaches `target_sensitivity` (so specificity is
    as high as that target allows).
    """

    method: Literal["youden", "sensitivity"] = "youden"
    target_sensitivity: float = Field(0.95, gt=0, le=1)


class TtaConfig(StrictModel):
    """Test-time augmentation: each image's probabilities averaged over views of it - as
    given, flipped, and the centre crops its model family declares (ImageNet-pretrained
    backbones: 0.875) - scored as one more row, `<model>+tta`."""

    hflip: bool = True
    vflip: bool = False
    crops: bool = True
    models: list[str] | None = Field(None, description="The models that get a row (default: "
                                     "every trained model).")


class ConformalConfig(StrictModel):
    """Split conformal prediction sets calibrated on the validation split: each image gets
    the classes whose score (`lac`: 1 - p; `aps`: the mass ranked at or above the class) is
    within the validation quantile, so the set holds the true class with probability at
    least `coverage`."""

    coverage: float = Field(0.9, gt=0, lt=1)
    score: Annotated[str, Registered("conformal score")] = "lac"


class ShiftConfig(StrictModel):
    """Shift between splits: a kernel two-sample test (MMD, permutation p-value) of the
    validation and test images against a sample of training images, on a generic ImageNet
    embedding, and the simple image properties that moved (Kolmogorov-Smirnov). The same
    test compares a new batch with the training sample in `predict --check-shift`."""

    alpha: float = Field(0.05, gt=0, lt=0.5, description="A set whose p-value is below it "
                         "has shifted.")
    images: int = Field(1000, ge=20, description="Images per set compared: a sample (of "
                        "training images stratified by class) when a set is larger.")
    permutations: int = Field(1000, ge=99, description="Random relabellings for the p-value.")
    smallest_distance: float = Field(0.1, gt=0, le=1, description="A property moved when "
                                     "its Kolmogorov-Smirnov distance is at least this (and "
                                     "significant after Bonferroni's correction).")


class SegmentsConfig(StrictModel):
    """Weak segments: each model's accuracy and headline metric per quantile bin of every
    image property on the test split (edges from training images), and the bins whose
    accuracy is significantly below the rest of the test split (Fisher exact, Holm's
    correction over every bin tried)."""

    bins: int = Field(4, ge=2, le=10, description="Quantile bins per property.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="A bin is weak when its Holm-"
                         "adjusted p-value is below it.")
    resamples: int = Field(200, ge=0, description="Bootstrap resamples for the headline "
                           "metric's interval per bin (0: none).")


class UnfamiliarConfig(StrictModel):
    """Unfamiliar images: a detector on the model's own penultimate features (`method`;
    fitted after training on a stratified sample of training images), combined with one on
    a generic ImageNet embedding (`generic`), its threshold chosen on validation so that
    `keep` of the validation images pass; an image scoring above it does not look like the
    images the model learnt from. Mahalanobis is the default: combined with the generic
    detector it is the one method that met every aim on the real data (the brain and chest
    models against X-rays or MRIs, digits and photos: AUROC >= 0.995, FPR at 95 % TPR <=
    3.3 %), where energy let a fifth of the digits through the brain model; it flags all of
    the quickstart's 60 foreign images too (benchmarks/README.md, `unfamiliar_real.py`)."""

    method: Annotated[str, Registered("unfamiliar detector")] = "mahalanobis"
    keep: float = Field(0.95, ge=0.5, lt=1, description="Share of validation images that "
                        "pass the threshold (the rest are flagged, as are images unlike them).")
    train_images: int = Field(2000, ge=20, description="Training images the detector is "
                              "fitted on: a stratified sample when the split is larger.")
    generic: bool = Field(True, description="Combine with a detector on a generic ImageNet "
                          "embedding, which sees what a narrow model's features ignore (a "
                          "photo given to a digit model).")
    foreign: list[Path] = Field(
        default_factory=list, description="Folders (or files) of images the models should "
        "call unfamiliar: each detector's AUROC and FPR at 95 % TPR against the test images "
        "are reported. Without them, generated sets (noise, blank images, photo crops, "
        "digits) are used as a floor, labelled as such.")

    @model_validator(mode="after")
    def _foreign_exist(self) -> UnfamiliarConfig:
        # Checked when the config loads: a wrong path must not fail a model after training.
        for path in self.foreign:
            if path.is_symlink() or not path.exists():
                raise ValueError(f"foreign image set {path} does not exist (or is a link): "
                                 "name a folder of images unlike the training images")
        return self


class LabelIssuesConfig(StrictModel):
    """Confident learning (cleanlab) on out-of-sample probabilities - validation
    predictions, or out-of-fold ones with `split.folds` - of `model` (default: the
    recommended one): the images whose given label the model disputes."""

    model: str | None = None
    shown: int = Field(24, ge=1, le=200, description="Issues listed and drawn in the report.")


def _default_robustness() -> dict[str, list[float]]:
    return {"noise": [0.05, 0.1, 0.2], "rotation": [5, 15, 30], "blur": [0.5, 1.0, 2.0],
            "contrast": [0.7, 0.4], "brightness": [0.6, 1.4], "jpeg": [50, 20]}


class ExplainConfig(StrictModel):
    """Explanation maps made for each model at the end of a run (and by `visionbench
    explain`): which methods, how many test images, and the cost knobs."""

    methods: list[Annotated[str, Registered("explanation method")]] = Field(
        default_factory=lambda: [
        "gradcam", "integrated_gradients", "smoothgrad", "guided_backprop", "occlusion"])
    images: int = Field(8, ge=0, description="Test images: per class, a confident correct "
                        "one and the most confident mistake, up to this many (0 = none).")
    layer: str | None = Field(None, description="Grad-CAM layer; default the last conv.")
    steps: int = Field(24, ge=2)
    samples: int = Field(12, ge=1)
    batch_size: int = Field(16, ge=1, description="Bounds memory of every method.")


class Reference(StrictModel):
    """A published or earlier result to compare with: metric values on the same test split,
    and where they come from. Written flat, as `{accuracy: 0.74, source: "..."}`."""

    source: str = ""
    metrics: dict[Metric, float] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, value: Any) -> Any:
        # Every key but `source` is a metric name (checked against the metric registry).
        if isinstance(value, dict) and "metrics" not in value:
            return {"source": value.get("source", ""),
                    "metrics": {k: v for k, v in value.items() if k != "source"}}
        return value


class EvaluateConfig(StrictModel):
    """What the comparison reports and how sure it must be."""

    primary_metric: Metric = "accuracy"
    metrics: list[Metric] = Field(default_factory=lambda: list(ALL_METRICS),
                                  description="Every metric computed, with its interval.")
    headline: list[Metric] = Field(
        default_factory=lambda: list(HEADLINE),
        description="The metrics the tables and charts show, after the primary one (those "
        "not in `metrics` are left out); the rest are in leaderboard.csv.")
    # More resamples than this change no interval's digits and would run for hours.
    bootstrap: int = Field(1000, ge=0, le=100_000)
    confidence: float = Field(0.95, gt=0, lt=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    seed: int = 0
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    robustness: dict[Annotated[str, Registered("corruption")], list[float]] = Field(
        default_factory=_default_robustness,
        description="Corruption -> severities run on the test split ({} to skip).",
    )
    robustness_images: int | None = Field(
        500, ge=20, description="Robustness runs on a stratified sample of this many test "
        "images (every one when the split is smaller; null: always all), with the interval "
        "the sample gives: 15 settings over 3,000 images cost more than training did.")
    error_examples: int = Field(25, ge=0)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    ensembles: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Name -> models whose probabilities are averaged (on validation and test) "
        "and evaluated like one more model, once every member has predictions.",
    )
    tta: TtaConfig | None = Field(
        None, description="Test-time augmentation of every trained model, scored as one "
        "more row `<model>+tta` with paired tests against the plain model; the "
        "recommendation (on validation) decides between them.")
    calibration: Literal["none", "temperature"] = Field(
        "none", description="`temperature`: temperature scaling fitted on validation; the "
        "report shows calibration before and after, and predict returns the calibrated "
        "probabilities.")
    conformal: ConformalConfig | None = Field(
        None, description="Prediction sets with a guaranteed coverage, calibrated on "
        "validation; their coverage and size on test are reported, and predict returns them.")
    label_issues: LabelIssuesConfig | None = Field(
        None, description="Suspected label errors among the images scored out of sample "
        "(cleanlab).")
    unfamiliar: UnfamiliarConfig | None = Field(
        default_factory=UnfamiliarConfig, description="Flag images unlike the training "
        "images (null: no detector).")
    shift: ShiftConfig | None = Field(
        default_factory=ShiftConfig, description="Test whether validation and test "
        "images come from the training images' distribution (null: no test).")
    segments: SegmentsConfig | None = Field(
        default_factory=SegmentsConfig, description="Where each model is weak: accuracy per "
        "bin of simple image properties on test (null: not measured).")
    references: dict[str, Reference] = Field(
        default_factory=dict,
        description="Name -> published or earlier numbers on the same test split, shown as "
        "reference rows; every model is tested against each (exact binomial for accuracy).")

    @model_validator(mode="after")
    def _primary_is_computed(self, info: ValidationInfo) -> EvaluateConfig:
        # The recommendation and every mark are made on the primary metric (whose name is
        # checked with the others once the registries are filled).
        if not structure_only(info) and self.primary_metric not in self.metrics:
            self.metrics = [self.primary_metric, *self.metrics]
        return self
