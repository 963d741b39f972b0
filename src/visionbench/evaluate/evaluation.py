"""From saved predictions to every number of a model, and to the comparison of models.

`evaluate_model` gives one model's headline metrics with bootstrap intervals, per-class
table, confusion matrices, ROC/PR curves, calibration, and the clinical reading (argmax and
at a threshold chosen on validation). `compare_models` tests every pair on the same test
images and describes each model against the one recommended on validation
(`evaluate.selection`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from visionbench.evaluate.calibration import fit_temperature, negative_log_likelihood, scaled
from visionbench.evaluate.conformal import calibrate, summarise
from visionbench.evaluate.metrics import (
    METRICS,
    Metric,
    auc_ovr,
    compute,
    confusion_matrix,
    per_class,
    renormalised,
    undefined_notes,
)
from visionbench.evaluate.statistics import (
    auc_difference_test,
    mcnemar,
    paired_bootstrap,
    percentile_interval,
)
from visionbench.rundir.documents import (
    AucDifference,
    BeforeAfter,
    BinaryReading,
    BootstrapSettings,
    ChosenThreshold,
    ClassRow,
    ClinicalReading,
    Comparison,
    ConformalSummary,
    ConfusedPair,
    Confusion,
    EvaluationDocument,
    Interval,
    McNemar,
    Notice,
    PairedDifference,
    PairedGain,
    PairTest,
    PositiveGroupRecord,
    PrCurve,
    Reliability,
    ReliabilityBin,
    RocCurve,
    Selection,
    TemperatureScaling,
)
from visionbench.rundir.predictions import Predictions
from visionbench.schemas.evaluate import EvaluateConfig, ThresholdConfig

CURVE_POINTS = 200


@dataclass
class ModelEvaluation:
    """A model's evaluation document and the bootstrap values kept for paired comparisons."""

    document: EvaluationDocument
    resampled: dict[str, np.ndarray] = field(default_factory=dict)


def applicable_metrics(names: list[str], n_classes: int) -> list[str]:
    """Drop metrics that say nothing for this many classes (top-2 of two classes is 1)."""
    return [n for n in names if not (n == "top_2_accuracy" and n_classes <= 2)]


def positive_classes(classes: list[str], group: PositiveGroupRecord | None
                     ) -> list[int] | None:
    """Indices read as 'positive' clinically: the configured group, else class 1 of two."""
    if group:
        return [classes.index(c) for c in group.classes]
    if len(classes) == 2:
        return [1]
    return None


def _downsample(*arrays: np.ndarray) -> list[list[float]]:
    """At most CURVE_POINTS points of a curve, always keeping both ends."""
    n = len(arrays[0])
    keep = np.unique(np.r_[np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int)])
    return [[round(float(v), 6) for v in a[keep]] for a in arrays]


def _binary_counts(truth: np.ndarray, decided: np.ndarray, weights: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV, NPV and counts of a positive/negative decision."""
    def count(mask: np.ndarray) -> np.ndarray:
        return weights @ mask.astype(float)

    tp, fp = count(truth & decided), count(~truth & decided)
    fn, tn = count(truth & ~decided), count(~truth & ~decided)

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.full(a.shape, np.nan)
        np.divide(a, b, out=out, where=b > 0)
        return out

    return {
        "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
        "missed_positives": fn, "false_alarms": fp, "tp": tp, "tn": tn,
    }


def choose_threshold(scores: np.ndarray, truth: np.ndarray, cfg: ThresholdConfig
                     ) -> ChosenThreshold:
    """A threshold on the positive score chosen on validation images only."""
    if truth.all() or not truth.any():
        return ChosenThreshold(threshold=0.5, note="validation has one reading only; 0.5 used")
    fpr, tpr, thresholds = roc_curve(truth, scores)
    if cfg.method == "youden":
        best = int(np.argmax(tpr - fpr))
    else:
        # roc_curve lists thresholds from high to low: the first reaching the target
        # sensitivity is the highest such threshold.
        best = int(np.flatnonzero(tpr >= cfg.target_sensitivity)[0])
    threshold = float(min(thresholds[best], 1.0))
    return ChosenThreshold(threshold=threshold, method=cfg.method,
                           val_sensitivity=float(tpr[best]),
                           val_specificity=float(1 - fpr[best]))


def estimate(point: float, resampled: np.ndarray | None, level: float) -> Interval:
    """`point` with the percentile interval of its finite bootstrap values (none without
    them)."""
    finite = resampled[np.isfinite(resampled)] if resampled is not None else np.array([])
    if not len(finite):
        return Interval(value=float(point))
    low, high = percentile_interval(finite, level)
    return Interval(value=float(point), low=low, high=high)


def clinical_reading(
    test: Predictions, val: Predictions | None, positive: list[int], classes: list[str],
    weights: np.ndarray | None, settings: EvaluateConfig, group: str | None = None,
) -> ClinicalReading:
    """The positive-group reading (named `group` when it has a name) at argmax and at a
    validation-chosen threshold."""
    truth = np.isin(test.y_true, positive)
    score = test.prob[:, positive].sum(axis=1)
    rows = np.ones((1, len(truth)))

    def reading(decided: np.ndarray) -> BinaryReading:
        point = _binary_counts(truth, decided, rows)
        boot = _binary_counts(truth, decided, weights) if weights is not None else None
        return BinaryReading(**{
            key: estimate(value[0], None if boot is None else boot[key], settings.confidence)
            for key, value in point.items()})

    chosen = None
    if val is not None and len(val.y_true):
        chosen = choose_threshold(val.prob[:, positive].sum(axis=1),
                                  np.isin(val.y_true, positive), settings.threshold)
    return ClinicalReading(
        positive_classes=[classes[i] for i in positive],
        **({} if chosen is None else {"chosen_threshold": chosen}),
        argmax=reading(np.isin(test.y_pred, positive)),
        **({} if chosen is None else {"threshold": reading(score >= chosen.threshold)}),
        auc=float(auc_ovr(score, truth, rows.T)[0]),
        **({} if group is None else {"group": group}))


def evaluate_model(
    test: Predictions, classes: list[str], settings: EvaluateConfig, *,
    val: Predictions | None = None, group: PositiveGroupRecord | None = None,
    weights: np.ndarray | None = None,
) -> ModelEvaluation:
    """Every number of one model from its test (and validation) predictions.

    `weights` are the shared bootstrap resamples of the test set (None: no intervals).
    """
    n_classes = len(classes)
    names = applicable_metrics(settings.metrics, n_classes)
    point = compute(names, test.y_true, test.prob)
    resampled = compute(names, test.y_true, test.prob, weights) if weights is not None else {}
    metrics = {
        name: estimate(point[name][0], resampled.get(name), settings.confidence)
        for name in names
    }
    conf = confusion_matrix(test.y_true, test.y_pred, n_classes)
    table = per_class(conf)
    onehot = np.eye(n_classes)[test.y_true]
    per_class_rows = {}
    roc, pr = {}, {}
    for k, name in enumerate(classes):
        row = {stat: float(table[stat][0, k]) for stat in
               ("precision", "recall", "specificity", "f1", "support", "tp", "fp", "fn", "tn")}
        truth = onehot[:, k]
        if 0 < truth.sum() < len(truth):
            fpr, tpr, _ = roc_curve(truth, test.prob[:, k])
            precision, recall, _ = precision_recall_curve(truth, test.prob[:, k])
            roc[name] = RocCurve(**dict(zip(("fpr", "tpr"), _downsample(fpr, tpr),
                                            strict=True)))
            pr[name] = PrCurve(**dict(zip(("recall", "precision"),
                                          _downsample(recall, precision), strict=True)))
            row["auc"] = float(auc_ovr(test.prob[:, k], truth.astype(bool),
                                       np.ones((len(truth), 1)))[0])
            row["average_precision"] = float(average_precision_score(truth, test.prob[:, k]))
        per_class_rows[name] = ClassRow(**row)
    counts = conf[0]
    normalized = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    notes = undefined_notes(conf, classes)
    predicted_classes = np.unique(test.y_pred)
    if len(predicted_classes) == 1 and n_classes > 1:
        only = classes[predicted_classes[0]]
        notes.insert(0, Notice(code="one_class_only", data={"class": only},
                               message=f"the model predicts one class only ({only})"))
    wanted = settings.calibration != "none" or settings.conformal is not None
    temperature = None
    if wanted and val is None:
        notes.append(Notice(code="no_validation", message="calibration and conformal sets "
                            "are fitted on validation, and this model has no validation "
                            "predictions: neither is made"))
    elif settings.calibration == "temperature" and val is not None:
        temperature = fit_temperature(val.prob, val.y_true)
    positive = positive_classes(classes, group)
    # The reading is of the probabilities predict returns: calibrated when scaling is on.
    clinical = None if positive is None else clinical_reading(
        with_temperature(test, temperature),
        None if val is None else with_temperature(val, temperature),
        positive, classes, weights, settings, group.name if group else None)
    acting = (acting_on_probabilities(test, val, classes, settings, temperature)
              if wanted and val is not None else {})
    document = EvaluationDocument(
        images=len(test.y_true), metrics=metrics, per_class=per_class_rows,
        confusion=Confusion(counts=counts.astype(int).tolist(),
                            normalized=np.round(normalized, 6).tolist()),
        roc=roc, pr=pr, calibration=reliability(test),
        confusions=most_confused(counts, classes), notes=notes,
        bootstrap=BootstrapSettings(resamples=0 if weights is None else len(weights),
                                    confidence=settings.confidence, stratified=True),
        **({} if clinical is None else {"clinical": clinical}), **acting)
    return ModelEvaluation(document, dict(resampled))


def with_temperature(predictions: Predictions, temperature: float | None) -> Predictions:
    """`predictions` with their probabilities scaled by `temperature` (None: as they are)."""
    if temperature is None:
        return predictions
    return Predictions(predictions.ids, predictions.y_true, scaled(predictions.prob, temperature))


CALIBRATION_METRICS = ["log_loss", "expected_calibration_error", "brier_score"]


def acting_on_probabilities(test: Predictions, val: Predictions, classes: list[str],
                            settings: EvaluateConfig, temperature: float | None
                            ) -> dict[str, TemperatureScaling | ConformalSummary]:
    """What temperature scaling (`temperature`, fitted on `val`) and conformal sets
    (calibrated on `val`) do: the calibration metrics of test before and after scaling, and
    the sets' coverage and sizes on test (made from the calibrated probabilities when
    scaling is on, as predict returns them)."""
    found: dict[str, TemperatureScaling | ConformalSummary] = {}
    test_prob, val_prob = test.prob, val.prob
    if temperature is not None:
        test_prob, val_prob = scaled(test.prob, temperature), scaled(val.prob, temperature)
        before = compute(CALIBRATION_METRICS, test.y_true, test.prob)
        after = compute(CALIBRATION_METRICS, test.y_true, test_prob)
        found["temperature"] = TemperatureScaling(
            value=temperature, fitted_on="validation", validation_images=len(val.y_true),
            validation_nll=BeforeAfter(before=negative_log_likelihood(val.prob, val.y_true),
                                       after=negative_log_likelihood(val_prob, val.y_true)),
            test={name: BeforeAfter(before=float(before[name][0]), after=float(after[name][0]))
                  for name in CALIBRATION_METRICS},
            reliability=reliability(Predictions(test.ids, test.y_true, test_prob)))
    if settings.conformal is not None:
        wanted = settings.conformal
        cutoff = calibrate(val_prob, val.y_true, wanted.score, wanted.coverage)
        found["conformal"] = summarise(test_prob, test.y_true, classes, wanted.score,
                                       wanted.coverage, cutoff, len(val.y_true),
                                       settings.confidence)
    return found


def reliability(test: Predictions, bins: int = 10) -> Reliability:
    """Reliability-diagram data: per confidence bin, mean confidence, accuracy and count
    (probabilities renormalised, as the calibration error reads them)."""
    confidence = renormalised(test.prob).max(axis=1)
    correct = test.y_pred == test.y_true
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        member = index == b
        if member.any():
            rows.append(ReliabilityBin(low=b / bins, high=(b + 1) / bins,
                                       count=int(member.sum()),
                                       confidence=float(confidence[member].mean()),
                                       accuracy=float(correct[member].mean())))
    return Reliability(bins=rows)


def most_confused(counts: np.ndarray, classes: list[str], top: int = 10) -> list[ConfusedPair]:
    """The largest off-diagonal cells: (true, predicted, count), largest first."""
    off = counts.copy().astype(float)
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    rows = []
    for flat in order:
        true, predicted = divmod(int(flat), len(classes))
        if off[true, predicted] > 0:
            rows.append(ConfusedPair(true=classes[true], predicted=classes[predicted],
                                     count=int(off[true, predicted])))
    return rows


def compare_models(
    evaluations: dict[str, ModelEvaluation], predictions: dict[str, Predictions],
    classes: list[str], settings: EvaluateConfig, selection: Selection,
) -> Comparison:
    """Paired tests between every two models on the same test images, and each model's
    mark against the recommended one (`selection`, chosen on validation): the test split
    describes the choice, it never makes it."""
    metric = METRICS.get(settings.primary_metric)
    names = list(evaluations)
    value = {n: evaluations[n].document.metrics[metric.name].value for n in names}
    sign = 1 if metric.higher_is_better else -1
    test_best = max(names, key=lambda n: sign * value[n]) if names else None
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pa, pb = predictions[a], predictions[b]
            # The paired bootstrap of the difference, for every headline metric.
            shared = set(evaluations[a].resampled) & set(evaluations[b].resampled)
            pairs.append(PairTest(
                a=a, b=b, mcnemar=McNemar(**mcnemar(pa.y_pred == pa.y_true,
                                                    pb.y_pred == pb.y_true)),
                bootstrap={m: PairedDifference(**paired_bootstrap(
                    evaluations[a].resampled[m], evaluations[b].resampled[m],
                    evaluations[a].document.metrics[m].value,
                    evaluations[b].document.metrics[m].value, settings.confidence))
                    for m in settings.metrics if m in shared},
                delong=_delong_pairs(pa, pb, classes)))
    recommended = selection.recommended
    marks = {}
    if recommended in names:
        for name in names:
            marks[name] = ("recommended" if name == recommended else
                           _test_mark(name, recommended, pairs, metric, value, settings.alpha))
    return Comparison(primary_metric=metric.name, recommended=recommended,
                      test_best=test_best, selection=selection, alpha=settings.alpha,
                      marks=marks, pairs=pairs)


def paired_gain(pairs: list[PairTest], model: str, against: str, metric: str
                ) -> PairedGain | None:
    """`model` minus `against` on `metric` from the comparison's paired tests: the
    difference, its paired bootstrap interval and p-value, and McNemar's p-value (None when
    the two were not compared)."""
    pair = next((p for p in pairs if {p.a, p.b} == {model, against}), None)
    if pair is None:
        return None
    tested = pair.bootstrap.get(metric)
    if not tested:
        return PairedGain(model=model, against=against, metric=metric,
                          mcnemar_p=pair.mcnemar.p_value)
    sign = 1 if pair.a == model else -1
    low, high = sorted((sign * tested.low, sign * tested.high))
    return PairedGain(model=model, against=against, metric=metric,
                      mcnemar_p=pair.mcnemar.p_value, difference=sign * tested.difference,
                      low=low, high=high, p_value=tested.p_value)


def _test_mark(name: str, recommended: str, pairs: list[PairTest], metric: Metric,
               value: dict[str, float], alpha: float) -> str:
    """How `name` compares with the recommended model on test: a description only."""
    pair = next(p for p in pairs if {p.a, p.b} == {name, recommended})
    tested = pair.bootstrap.get(metric.name)
    p_value = tested.p_value if tested else (
        pair.mcnemar.p_value if metric.name == "accuracy" else math.nan)
    if math.isnan(p_value):
        return "untested"
    if p_value >= alpha:
        return "no significant difference"
    better = (value[name] > value[recommended]) == metric.higher_is_better
    return "better on test" if better else "worse on test"


def _delong_pairs(a: Predictions, b: Predictions, classes: list[str]
                  ) -> dict[str, AucDifference]:
    """AUCs compared (DeLong, or a permutation test for a class with few test images): the
    positive class for two classes, else one-vs-rest per class."""
    tested = [1] if len(classes) == 2 else range(len(classes))
    return {classes[k]: AucDifference(**auc_difference_test(a.prob[:, k], b.prob[:, k],
                                                            a.y_true == k))
            for k in tested}
