"""Metrics (parity with scikit-learn, the MRI study's numbers), statistics and readings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from visionbench.evaluate.evaluation import choose_threshold, compare_models, evaluate_model
from visionbench.evaluate.metrics import METRICS, compute, confusion_matrix
from visionbench.evaluate.selection import recommend
from visionbench.evaluate.statistics import bootstrap_weights, delong, mcnemar, paired_bootstrap
from visionbench.rundir.documents import EvaluationDocument, PositiveGroupRecord, Selection
from visionbench.rundir.predictions import Predictions, read_predictions, write_predictions
from visionbench.schemas.evaluate import EvaluateConfig, ThresholdConfig

# The MRI study's "Model 1" (its notebook lists every VP/FP/FN per class); rows = true class,
# columns = predicted, order glioma, meningioma, no tumour, pituitary.
MRI_MODEL_1 = np.array([[17, 24, 56, 3], [1, 101, 10, 3], [1, 3, 101, 0], [2, 21, 6, 45]])
MRI_CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def _from_confusion(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and one-hot-ish probabilities reproducing a confusion matrix."""
    y_true, y_pred = [], []
    for true, row in enumerate(counts):
        for pred, count in enumerate(row):
            y_true += [true] * int(count)
            y_pred += [pred] * int(count)
    y_pred_arr = np.array(y_pred)
    prob = np.full((len(y_pred), counts.shape[1]), 0.1 / (counts.shape[1] - 1))
    prob[np.arange(len(y_pred)), y_pred_arr] = 0.9
    return np.array(y_true), prob


def _random(n: int = 300, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, prob


def test_mri_study_model_1_report_and_aggregated_table_are_reproduced():
    y, prob = _from_confusion(MRI_MODEL_1)
    values = {k: float(v[0]) for k, v in compute(
        ["accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "global_f1",
         "precision_macro", "recall_macro", "f1_macro"], y, prob).items()}
    # The aggregated table, to its printed digits.
    assert round(values["precision_weighted"], 5) == 0.72462
    assert round(values["recall_weighted"], 6) == 0.670051
    assert round(values["f1_weighted"], 6) == 0.623519
    assert round(values["accuracy"], 4) == 0.6701
    # The formula the study wrote gives another number: kept under its own name.
    assert round(values["global_f1"], 3) == 0.696
    # The classification report (2 digits).
    assert [round(values[k], 2) for k in ("precision_macro", "recall_macro", "f1_macro")] == [
        0.74, 0.65, 0.62]
    report = evaluate_model(Predictions([str(i) for i in range(len(y))], y, prob), MRI_CLASSES,
                            EvaluateConfig(bootstrap=0)).document
    rows = report.per_class
    printed = {"glioma": (0.81, 0.17, 0.28, 100), "meningioma": (0.68, 0.88, 0.77, 115),
               "no_tumor": (0.58, 0.96, 0.73, 105), "pituitary": (0.88, 0.61, 0.72, 74)}
    for name, (precision, recall, f1, support) in printed.items():
        row = rows[name]
        assert (round(row.precision, 2), round(row.recall, 2), round(row.f1, 2),
                row.support) == (precision, recall, f1, support)
    # Its listed VP / FP / FN.
    assert [(rows[n].tp, rows[n].fp, rows[n].fn) for n in MRI_CLASSES] == [
        (17, 4, 83), (101, 48, 14), (101, 72, 4), (45, 6, 29)]


SKLEARN = {
    "accuracy": lambda y, p: skm.accuracy_score(y, p.argmax(1)),
    "balanced_accuracy": lambda y, p: skm.balanced_accuracy_score(y, p.argmax(1)),
    "precision_macro": lambda y, p: skm.precision_score(y, p.argmax(1), average="macro",
                                                        labels=range(p.shape[1]),
                                                        zero_division=0),
    "recall_macro": lambda y, p: skm.recall_score(y, p.argmax(1), average="macro",
                                                  labels=range(p.shape[1]), zero_division=0),
    "f1_macro": lambda y, p: skm.f1_score(y, p.argmax(1), average="macro",
                                          labels=range(p.shape[1]), zero_division=0),
    "precision_weighted": lambda y, p: skm.precision_score(y, p.argmax(1), average="weighted",
                                                           zero_division=0),
    "recall_weighted": lambda y, p: skm.recall_score(y, p.argmax(1), average="weighted"),
    "f1_weighted": lambda y, p: skm.f1_score(y, p.argmax(1), average="weighted",
                                             zero_division=0),
    "f1_micro": lambda y, p: skm.f1_score(y, p.argmax(1), average="micro"),
    "cohen_kappa": lambda y, p: skm.cohen_kappa_score(y, p.argmax(1)),
    "matthews_corrcoef": lambda y, p: skm.matthews_corrcoef(y, p.argmax(1)),
    "log_loss": lambda y, p: skm.log_loss(y, p, labels=range(p.shape[1])),
    "brier_score": lambda y, p: skm.brier_score_loss(y, p if p.shape[1] > 2 else p[:, 1],
                                                     labels=range(p.shape[1])),
    "top_2_accuracy": lambda y, p: skm.top_k_accuracy_score(y, p, k=2,
                                                            labels=range(p.shape[1])),
    "roc_auc_macro": lambda y, p: skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    if p.shape[1] > 2 else skm.roc_auc_score(y, p[:, 1]),
    "roc_auc_weighted": lambda y, p: skm.roc_auc_score(y, p, multi_class="ovr",
                                                       average="weighted")
    if p.shape[1] > 2 else skm.roc_auc_score(y, p[:, 1]),
}


def test_every_metric_scikit_learn_has_is_checked_for_parity():
    ours_only = {"global_f1", "expected_calibration_error"}
    assert set(METRICS.names()) == set(SKLEARN) | ours_only


@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_parity_with_scikit_learn(name, classes):
    if name == "top_2_accuracy" and classes == 2:
        pytest.skip("top-2 of two classes is always 1")
    y, prob = _random(k=classes)
    # Rounded probabilities create ties, which AUCs must count as half.
    prob = np.round(prob, 2)
    prob = prob / prob.sum(axis=1, keepdims=True)
    ours = compute([name], y, prob)[name][0]
    assert ours == pytest.approx(SKLEARN[name](y, prob), abs=1e-9)


def test_weighted_rows_equal_repeating_images():
    y, prob = _random(n=60)
    counts = np.random.default_rng(1).integers(0, 3, size=(1, 60)).astype(float)
    repeated = np.repeat(np.arange(60), counts[0].astype(int))
    for name in METRICS.names():
        weighted = compute([name], y, prob, counts)[name][0]
        plain = compute([name], y[repeated], prob[repeated])[name][0]
        assert weighted == pytest.approx(plain, abs=1e-9), name


def test_expected_calibration_error_on_a_known_case():
    # Two bins: 0.95-confident (all right) and 0.65-confident (half right).
    y = np.array([0, 0, 1, 1])
    prob = np.array([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.65, 0.35]])
    value = compute(["expected_calibration_error"], y, prob)["expected_calibration_error"][0]
    assert value == pytest.approx((2 * 0.05 + 2 * abs(0.65 - 0.5)) / 4)


def test_zero_division_is_defined_and_noted():
    y = np.array([0, 0, 1, 1])
    prob = np.array([[0.9, 0.1]] * 4)
    summary = evaluate_model(Predictions(list("abcd"), y, prob), ["a", "b"],
                             EvaluateConfig(bootstrap=0)).document
    assert summary.per_class["b"].precision == 0.0
    # Notes are records: the report picks them by code, a reader sees the message.
    assert summary.notes[0].code == "one_class_only"
    assert summary.notes[0].message == "the model predicts one class only (a)"
    assert any(n.code == "never_predicted" and n.data == {"classes": ["b"]}
               and "no image was predicted b" in n.message for n in summary.notes)


def test_confusion_matrix_matches_scikit_learn():
    y, prob = _random()
    assert (confusion_matrix(y, prob.argmax(1), 4)[0] == skm.confusion_matrix(y, prob.argmax(1))
            ).all()


# -- statistics ------------------------------------------------------------------------


def test_stratified_bootstrap_keeps_class_sizes():
    y = np.array([0] * 30 + [1] * 10)
    weights = bootstrap_weights(y, 50, seed=3)
    assert (weights[:, y == 0].sum(axis=1) == 30).all()
    assert (weights[:, y == 1].sum(axis=1) == 10).all()


def test_bootstrap_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    truth, hits = 0.8, 0
    trials = 200
    for _ in range(trials):
        y = np.zeros(200, dtype=int)
        correct = rng.random(200) < truth
        prob = np.where(correct[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
        boot = compute(["accuracy"], y, prob, bootstrap_weights(y, 400, int(rng.integers(1e9))))
        low, high = np.percentile(boot["accuracy"], [2.5, 97.5])
        hits += low <= truth <= high
    assert 0.90 <= hits / trials <= 0.99


def test_mcnemar_exact_and_chi_square_by_hand():
    a = np.array([True] * 10 + [False] * 2 + [True] * 20)
    b = np.array([False] * 10 + [True] * 2 + [True] * 20)
    exact = mcnemar(a, b)
    # 10 vs 2 discordant pairs: two-sided exact binomial = 2 * P(X <= 2), X ~ B(12, 1/2).
    assert exact["method"] == "exact"
    assert exact["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)
    big_a = np.r_[np.ones(30, bool), np.zeros(10, bool)]
    big = mcnemar(big_a, ~big_a)
    assert big["method"] == "chi2"
    assert big["statistic"] == pytest.approx((30 - 10 - 1) ** 2 / 40)
    assert big["p_value"] == pytest.approx(stats.chi2.sf(361 / 40, 1))


def _delong_by_hand(a: np.ndarray, b: np.ndarray, positive: np.ndarray) -> float:
    """DeLong's variance from the O(m n) placement values of the 1988 paper."""
    def psi(x: float, y: float) -> float:
        return 1.0 if x > y else 0.5 if x == y else 0.0

    aucs, v10, v01 = [], [], []
    for s in (a, b):
        pos, neg = s[positive], s[~positive]
        v10.append([np.mean([psi(x, y) for y in neg]) for x in pos])
        v01.append([np.mean([psi(x, y) for x in pos]) for y in neg])
        aucs.append(np.mean(v10[-1]))
    m, n = len(v10[0]), len(v01[0])
    s10, s01 = np.cov(v10), np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1]
                                                          - 2 * s01[0, 1]) / n
    z = (aucs[0] - aucs[1]) / math.sqrt(var)
    return 2 * stats.norm.sf(abs(z))


def test_delong_matches_the_placement_value_formula():
    rng = np.random.default_rng(4)
    positive = np.r_[np.ones(9, bool), np.zeros(7, bool)]
    a = np.round(positive + rng.normal(0, 0.8, 16), 1)
    b = np.round(positive + rng.normal(0, 1.2, 16), 1)
    result = delong(a, b, positive)
    assert result["auc_a"] == pytest.approx(skm.roc_auc_score(positive, a))
    assert result["p_value"] == pytest.approx(_delong_by_hand(a, b, positive))


def test_paired_bootstrap_sees_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    y = np.zeros(400, dtype=int)
    good = np.where((rng.random(400) < 0.9)[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    bad = np.where((rng.random(400) < 0.75)[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    weights = bootstrap_weights(y, 500, 1)
    a, b = compute(["accuracy"], y, good, weights), compute(["accuracy"], y, bad, weights)
    real = paired_bootstrap(a["accuracy"], b["accuracy"], 0.9, 0.75)
    assert real["p_value"] < 0.01 and real["low"] > 0
    same = paired_bootstrap(a["accuracy"], a["accuracy"], 0.9, 0.9)
    assert same["p_value"] == 1.0


def _three_models(seed: int = 2, n: int = 400) -> dict[str, Predictions]:
    """good, its near twin, and a poor model, on the same images."""
    y, prob = _random(n=n, k=3, seed=seed)
    noisy = prob + np.random.default_rng(seed + 3).normal(0, 0.02, prob.shape).clip(-0.01, 0.01)
    noisy = noisy.clip(1e-6) / noisy.clip(1e-6).sum(axis=1, keepdims=True)
    poor = np.full_like(prob, 1 / 3)
    poor[np.arange(len(y)), (y + 1) % 3] += 0.1
    return {name: Predictions([str(i) for i in range(len(y))], y, p)
            for name, p in (("good", prob), ("twin", noisy), ("poor", poor))}


def test_comparison_marks_each_model_against_the_recommended_one_on_test():
    preds = _three_models()
    settings = EvaluateConfig(bootstrap=300)
    weights = bootstrap_weights(preds["good"].y_true, 300, 0)
    evaluations = {n: evaluate_model(p, ["a", "b", "c"], settings, weights=weights)
                   for n, p in preds.items()}
    comparison = compare_models(evaluations, preds, ["a", "b", "c"], settings,
                                Selection(recommended="twin"))
    assert comparison.recommended == "twin"
    assert comparison.marks == {"good": "no significant difference", "twin": "recommended",
                                   "poor": "worse on test"}
    assert comparison.test_best in ("good", "twin")
    # Recommending the poor model shows the others as better on test, not as worse.
    against_poor = compare_models(evaluations, preds, ["a", "b", "c"], settings,
                                  Selection(recommended="poor")).marks
    assert against_poor["good"] == against_poor["twin"] == "better on test"


def test_the_recommendation_is_the_smallest_model_validation_cannot_tell_from_the_best():
    val = _three_models(seed=11)
    sizes = {"good": 1000, "twin": 10, "poor": 1}
    choice = recommend(val, sizes, EvaluateConfig(bootstrap=300))
    assert choice.best_on_validation in ("good", "twin")
    assert set(choice.tied) == {"good", "twin"} and choice.p_values["poor"] < 0.05
    assert choice.recommended == "twin", "the smaller of the two tied models"
    assert "smallest" in choice.reason
    # Without resamples only equal values tie: the twin's accuracy equals good's, but its
    # log loss does not, so under log loss the best on validation wins.
    assert recommend(val, sizes, EvaluateConfig(bootstrap=0)).recommended == "twin"
    by_loss = recommend(val, sizes, EvaluateConfig(bootstrap=0, primary_metric="log_loss"))
    assert by_loss.tied == [by_loss.best_on_validation]
    assert by_loss.recommended == by_loss.best_on_validation


def test_without_validation_predictions_nothing_is_recommended():
    preds = _three_models()
    choice = recommend(dict.fromkeys(preds), {}, EvaluateConfig(bootstrap=0))
    assert choice.recommended is None and "no model has validation" in choice.reason
    alone = recommend({"only": None}, {}, EvaluateConfig(bootstrap=0))
    assert alone.recommended == "only"


def test_permuting_only_the_test_predictions_never_changes_the_recommendation(tmp_path):
    from visionbench.evaluate.leaderboard import evaluate_folder
    from visionbench.rundir import DataRecord, ModelMetrics, RunFolder, Status

    val, test = _three_models(seed=4, n=150), _three_models(seed=5, n=150)
    classes = ["a", "b", "c"]
    counts = {"a": 50, "b": 50, "c": 50}
    run = RunFolder(tmp_path)
    run.write(DataRecord(source="synthetic", classes=classes, channels=1, image_shape=[8, 8],
                         splits={"val": counts, "test": counts}, totals={"val": 150,
                                                                         "test": 150}))
    settings = EvaluateConfig(bootstrap=200)
    sizes = {"good": 1000, "twin": 900, "poor": 10}
    recommended, test_best = set(), set()
    # Each model's test predictions are given to every model in turn; validation stays.
    for shift in range(3):
        names = list(test)
        for i, name in enumerate(names):
            folder = run.model(name)
            folder.write_predictions("val", val[name], classes)
            folder.write_predictions("test", test[names[(i + shift) % 3]], classes)
            folder.write(ModelMetrics(model=name, status=Status.OK, parameters=sizes[name],
                                      timing={"train_seconds": 1.0},
                                      files=folder.predictions_checksums()))
        board = evaluate_folder(run, settings, names)
        recommended.add(board.recommended)
        test_best.add(board.test_best)
    assert len(recommended) == 1 and len(test_best) > 1, "the test-best moved, the choice not"


# -- clinical readings and thresholds --------------------------------------------------


def test_threshold_is_chosen_on_validation_only():
    val_scores = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8])
    val_truth = np.array([0, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    youden = choose_threshold(val_scores, val_truth, ThresholdConfig(method="youden"))
    assert youden.threshold == pytest.approx(0.6)
    strict = choose_threshold(val_scores, val_truth,
                              ThresholdConfig(method="sensitivity", target_sensitivity=1.0))
    assert strict.threshold == pytest.approx(0.35)
    assert strict.val_sensitivity == 1.0 and strict.val_specificity == 0.75


def test_clinical_reading_counts_missed_positives_of_the_group():
    y, prob = _from_confusion(MRI_MODEL_1)
    group = PositiveGroupRecord(name="any_tumour",
                                classes=["glioma", "meningioma", "pituitary"])
    val = Predictions(["v"] * len(y), y, prob)
    summary = evaluate_model(Predictions([str(i) for i in range(len(y))], y, prob), MRI_CLASSES,
                             EvaluateConfig(bootstrap=100), val=val, group=group,
                             weights=bootstrap_weights(y, 100)).document
    clinical = summary.clinical
    # Tumours predicted "no tumour": 56 gliomas + 10 meningiomas + 6 pituitary.
    assert clinical.argmax.missed_positives.value == 72
    assert clinical.argmax.sensitivity.value == pytest.approx((289 - 72) / 289)
    assert clinical.argmax.specificity.value == pytest.approx(101 / 105)
    assert clinical.argmax.sensitivity.low < clinical.argmax.sensitivity.value
    assert clinical.group == "any_tumour"
    # The threshold chosen on validation, and the test reading at it, kept apart.
    assert 0 < clinical.chosen_threshold.threshold <= 1
    assert clinical.threshold is not None and clinical.threshold.missed_positives.value >= 0


def test_predictions_round_trip(tmp_path):
    y, prob = _random(n=20, k=3)
    path = tmp_path / "predictions.csv"
    write_predictions(path, Predictions([f"img {i}.png" for i in range(20)], y, prob),
                      ["cat", "dog", "fox"])
    back = read_predictions(path, ["cat", "dog", "fox"])
    assert back.ids[3] == "img 3.png" and (back.y_true == y).all()
    assert np.allclose(back.prob, prob, atol=1e-6)
    assert path.read_text().splitlines()[0] == "id,true,predicted,prob_cat,prob_dog,prob_fox"


# -- robustness and error analysis -----------------------------------------------------


def _images_for_corruption():
    import torch

    _, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    stripes = (x % 8 < 4).float() * 0.6 + 0.2
    return stripes.expand(3, 1, 32, 32).clone()


def test_corruptions_do_what_they_say():
    import torch

    from visionbench.evaluate.robustness import CORRUPTIONS

    images = _images_for_corruption()
    gen = torch.Generator().manual_seed(0)
    noisy = CORRUPTIONS.get("noise")(images, 0.1, gen)
    assert (noisy - images).std().item() == pytest.approx(0.1, rel=0.2)
    dark = CORRUPTIONS.get("brightness")(images, 0.5, gen)
    assert torch.allclose(dark, images * 0.5)
    flat = CORRUPTIONS.get("contrast")(images, 0.5, gen)
    assert flat.std().item() == pytest.approx(images.std().item() * 0.5, rel=1e-3)
    blurred = CORRUPTIONS.get("blur")(images, 2.0, gen)
    assert blurred.shape == images.shape and blurred.std() < images.std() * 0.7
    assert torch.allclose(blurred.mean(), images.mean(), atol=0.02)
    turned = CORRUPTIONS.get("rotation")(images, 90, gen)
    # A quarter turn makes vertical stripes horizontal (away from the zero-filled corners).
    centre = turned[..., 8:24, 8:24]
    assert centre.std(dim=-1).mean() < 0.05 < centre.std(dim=-2).mean()
    jpeg = CORRUPTIONS.get("jpeg")(images, 10, gen)
    assert jpeg.shape == images.shape and 0 < (jpeg - images).abs().mean() < 0.1


@pytest.mark.parametrize("channels", [1, 3])
def test_the_batched_jpeg_corruption_gives_pillows_bytes_for_every_image(channels):
    import io

    import numpy as np
    import torch
    from PIL import Image

    from visionbench.evaluate.robustness import CORRUPTIONS

    images = torch.rand(6, channels, 20, 28, generator=torch.Generator().manual_seed(1))
    batched = CORRUPTIONS.get("jpeg")(images, 30, torch.Generator())
    assert batched.dtype == images.dtype and batched.shape == images.shape
    for image, corrupted in zip(images, batched, strict=True):
        pixels = (image * 255).round().byte().permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(
            buffer, "JPEG", quality=30)
        expected = np.asarray(Image.open(buffer)).reshape(20, 28, channels)
        assert np.array_equal((corrupted * 255).round().byte().permute(1, 2, 0).numpy(),
                              expected)


def test_error_analysis_pictures_and_top_losses(tmp_path):
    from visionbench.evaluate.error_examples import error_analysis
    from visionbench.rundir import ModelFolder

    y, prob = _from_confusion(np.array([[3, 1], [2, 4]]))
    images = np.random.default_rng(0).integers(0, 255, (len(y), 8, 8, 1), dtype=np.uint8)
    found = error_analysis(images, Predictions([f"i{k}" for k in range(len(y))], y, prob),
                           ["a", "b"], ModelFolder(tmp_path), examples=4)
    assert found.files == ["misclassified.png", "top_losses.png", "error_rate.png"]
    assert all((tmp_path / f).stat().st_size > 1000 for f in found.files)
    assert found.error_rate == {"a": 0.25, "b": pytest.approx(1 / 3)}
    assert len(found.top_losses) == 4
    assert all(row.true != row.predicted for row in found.top_losses[:3])


def test_comparison_has_a_paired_bootstrap_for_every_metric_and_mcnemar_without_bootstrap():
    y, prob = _random(n=200, k=3, seed=7)
    other = np.roll(prob, 1, axis=1)
    preds = {n: Predictions([str(i) for i in range(len(y))], y, p)
             for n, p in (("a", prob), ("b", other))}
    settings = EvaluateConfig(bootstrap=200)
    weights = bootstrap_weights(y, 200, 0)
    evaluations = {n: evaluate_model(p, ["x", "y", "z"], settings, weights=weights)
                   for n, p in preds.items()}
    pair = compare_models(evaluations, preds, ["x", "y", "z"], settings,
                          Selection(recommended="a")).pairs[0]
    assert set(pair.bootstrap) == set(settings.metrics)
    assert pair.bootstrap["log_loss"].difference < 0
    plain = EvaluateConfig(bootstrap=0)
    unsure = {n: evaluate_model(p, ["x", "y", "z"], plain) for n, p in preds.items()}
    marks = compare_models(unsure, preds, ["x", "y", "z"], plain, Selection(recommended="a")).marks
    assert marks == {"a": "recommended", "b": "worse on test"}, \
        "McNemar decides accuracy without resamples"


def test_clean_test_leaves_out_images_that_duplicate_training():
    from visionbench.evaluate.leaderboard import clean_test

    y, prob = _from_confusion(np.array([[8, 2], [1, 9]]))
    ids = [f"t{i}" for i in range(len(y))]
    leaked = {"t0", "t1", "t10"}
    found = clean_test(Predictions(ids, y, prob), leaked, ["a", "b"],
                       EvaluateConfig(bootstrap=50))
    assert found.images == 17 and found.removed == 3
    keep = np.array([i not in leaked for i in ids])
    expected = (prob[keep].argmax(1) == y[keep]).mean()
    assert found.metrics["accuracy"].value == pytest.approx(expected)
    assert found.metrics["accuracy"].low is not None and set(found.recall) == {"a", "b"}
    assert found.support == {"a": 8, "b": 9}


def test_clean_test_recall_of_a_class_left_without_images_is_undefined():
    from visionbench.evaluate.leaderboard import clean_test

    y, prob = _from_confusion(np.array([[8, 2], [1, 9]]))
    ids = [f"t{i}" for i in range(len(y))]
    every_a = {i for i, label in zip(ids, y, strict=True) if label == 0}
    found = clean_test(Predictions(ids, y, prob), every_a, ["a", "b"],
                       EvaluateConfig(bootstrap=0))
    assert found.support == {"a": 0, "b": 10}
    assert found.recall == {"a": None, "b": 0.9}


def test_each_model_is_tested_against_each_reference():
    from visionbench.evaluate.references import against_references
    from visionbench.schemas.evaluate import Reference

    summaries = {name: EvaluationDocument.model_validate(
        {**summary, "per_class": {}, "confusion": {"counts": [], "normalized": []}})
        for name, summary in {
        # 312 of 394 correct: the brain study's RGB CNN reported 0.74 on the same split.
        "ours": {"images": 394, "metrics": {
            "accuracy": {"value": 312 / 394, "low": 0.756, "high": 0.825},
            "f1_weighted": {"value": 0.78, "low": 0.74, "high": 0.81},
            "log_loss": {"value": 0.6, "low": 0.5, "high": 0.7}}},
        "weak": {"images": 394, "metrics": {
            "accuracy": {"value": 250 / 394, "low": 0.59, "high": 0.68},
            "f1_weighted": {"value": 0.6, "low": 0.55, "high": 0.65},
            "log_loss": {"value": 1.0, "low": 0.9, "high": 1.1}}},
    }.items()}
    references = {"study": Reference.model_validate(
        {"accuracy": 0.74, "f1_weighted": 0.68, "log_loss": 0.65, "source": "report"})}
    found = against_references(summaries, references, 0.05)["study"]
    assert found.source == "report" and found.metrics["accuracy"] == 0.74
    ours, weak = found.models["ours"], found.models["weak"]
    assert ours["accuracy"].verdict == "better"
    assert ours["accuracy"].p_greater == pytest.approx(0.0098, abs=5e-5)
    assert weak["accuracy"].verdict == "worse" and weak["accuracy"].p_less < 1e-4
    assert ours["f1_weighted"].verdict == "better"  # the reference is below the interval
    assert ours["log_loss"].verdict == "within the interval"
    assert weak["log_loss"].verdict == "worse"  # lower is better: reference below interval


def test_a_class_absent_from_test_is_left_out_of_the_macro_auc_not_counted_as_zero():
    from visionbench.evaluate.metrics import compute, undefined_notes

    y = np.array([0, 0, 1, 1])
    prob = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    found = compute(["roc_auc_macro", "roc_auc_weighted"], y, prob)
    assert found["roc_auc_macro"][0] == 1.0 and found["roc_auc_weighted"][0] == 1.0
    # scikit-learn on the classes present gives the same.
    present = skm.roc_auc_score(y, prob[:, 1])
    assert found["roc_auc_macro"][0] == present
    # Resamples missing a class leave it out too; none is dragged to 0.
    weights = np.array([[1, 1, 1, 1], [2, 2, 0, 0], [0, 2, 1, 1]], dtype=float)
    resampled = compute(["roc_auc_macro"], y, prob, weights)["roc_auc_macro"]
    assert resampled[0] == 1.0 and np.isnan(resampled[1]) and resampled[2] == 1.0
    conf = np.zeros((3, 3))
    conf[0, 0] = conf[1, 1] = 2
    assert "left out of the macro and weighted ROC AUC" in undefined_notes(conf, ["a", "b", "c"])[
        -1].message


def test_auc_differences_with_few_positives_are_tested_by_permutation_at_their_level():
    from visionbench.evaluate.statistics import DELONG_MIN, auc_difference_test, delong

    rng = np.random.default_rng(5)
    for positives in (1, 3):
        rejected = 0
        for trial in range(60):
            truth = np.r_[np.ones(positives, bool), np.zeros(200, bool)]
            found = auc_difference_test(rng.random(201 + positives - 1),
                                        rng.random(201 + positives - 1), truth, seed=trial)
            assert found["method"] == "permutation"
            rejected += found["p_value"] < 0.05
        # Two random scorers: about 5 % (DeLong rejected 86 % with one positive).
        assert rejected / 60 < 0.1, (positives, rejected)
    truth = np.r_[np.ones(DELONG_MIN, bool), np.zeros(100, bool)]
    a, b = rng.random(len(truth)), rng.random(len(truth))
    assert auc_difference_test(a, b, truth) == delong(a, b, truth)


def test_probability_metrics_share_one_convention_renormalised_probabilities():
    from visionbench.evaluate.metrics import compute

    # Per-class sigmoid outputs that do not sum to 1: every probability metric reads them
    # renormalised, as log loss always did, so scaling them changes none of the three.
    y = np.array([0, 1, 2, 1])
    prob = np.array([[0.9, 0.3, 0.2], [0.1, 0.8, 0.4], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    names = ["log_loss", "brier_score", "expected_calibration_error"]
    once, twice = compute(names, y, prob), compute(names, y, prob * 2)
    for name in names:
        assert once[name][0] == pytest.approx(twice[name][0]), name
    normalised = prob / prob.sum(axis=1, keepdims=True)
    assert once["brier_score"][0] == pytest.approx(
        ((normalised - np.eye(3)[y]) ** 2).sum(axis=1).mean())


def test_a_model_tuned_on_validation_is_recommended_with_the_caveat_where_the_claim_is():
    val = _three_models(seed=11)
    sizes = {"good": 1000, "twin": 10, "poor": 1}
    plain = recommend(val, sizes, EvaluateConfig(bootstrap=300))
    assert "tuned" not in plain.reason
    tuned = recommend(val, sizes, EvaluateConfig(bootstrap=300), tuned={plain.recommended})
    assert tuned.recommended == plain.recommended
    assert ("settings were tuned on this same validation split, so its validation score is "
            "optimistic") in tuned.reason


def test_robustness_runs_on_a_stratified_sample_with_its_interval(tmp_path):
    from conftest import make_class_folders, run_yaml

    data = make_class_folders(tmp_path / "data", {"cat": 30, "dog": 30})
    run = run_yaml(tmp_path, "robust", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 8}}, split: {{test: 0.5}}}}
models: {{mlp: {{preset: mlp}}}}
train: {{epochs: 1, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{noise: [0.1, 0.3]}}, robustness_images: 20,
           explain: {{images: 0}}, error_examples: 0}}
""")
    import json

    found = json.loads((run / "mlp" / "robustness.json").read_text())
    assert found["images"] == 20 and found["test_images"] == 30
    for row in found["corruptions"]["noise"]:
        assert row["low"] <= row["accuracy"] <= row["high"]
        assert round(row["accuracy"] * 20) == pytest.approx(row["accuracy"] * 20)
    assert "stratified sample of 20 of the 30 test images" in (run / "report.html").read_text()
    # The clean accuracy is the sample's, read from the test predictions (not predicted
    # again): the drops compare the same images.
    from visionbench.evaluate.robustness import stratified_sample
    from visionbench.rundir.predictions import read_predictions

    test = read_predictions(run / "mlp" / "predictions.csv", ["cat", "dog"])
    keep = stratified_sample(test.y_true, 20, seed=0)
    assert found["clean_accuracy"] == pytest.approx(
        float((test.y_pred[keep] == test.y_true[keep]).mean()), abs=1e-9)
