"""Unfamiliar images (issue 27 §1): detectors fitted on training features, a threshold
chosen on validation only, their arrays kept without pickle and checked when read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_class_folders, run_yaml
from visionbench.errors import UserError
from visionbench.evaluate.unfamiliar import DETECTORS, fit_unfamiliar, score, threshold_for


def _clusters(seed: int, n: int, classes: int = 3, dimension: int = 16,
              shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Features around one centre per class (the same centres for every seed)."""
    centres = np.random.default_rng(99).normal(size=(classes, dimension)) * 3
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    return centres[labels] + rng.normal(size=(n, dimension)) + shift, labels


def _layer(classes: int = 3, dimension: int = 16) -> dict[str, np.ndarray]:
    centres = np.random.default_rng(99).normal(size=(classes, dimension)) * 3
    return {"weight": centres, "bias": np.zeros(classes)}


@pytest.mark.parametrize("method", ["knn", "mahalanobis", "vim"])
def test_a_feature_detector_passes_its_share_of_familiar_images_and_flags_far_ones(method):
    train, validation = _clusters(0, 900), _clusters(1, 400)[0]
    familiar, far = _clusters(2, 400)[0], _clusters(3, 200, shift=12.0)[0]
    fitted = fit_unfamiliar(method, 0.95, train, validation, _layer(),
                            {"test": familiar, "foreign": far})
    arrays, flagged = fitted.arrays, fitted.flagged
    assert flagged["val"].share == pytest.approx(0.05, abs=0.0025)
    assert flagged["test"].share < 0.12, "familiar images pass about as often as validation"
    assert flagged["foreign"].share == 1.0
    assert all(isinstance(value, np.ndarray) for value in arrays.values())


def test_energy_needs_no_fitting_and_reads_a_binary_models_single_logit():
    energy = DETECTORS.get("energy")()
    layer = {"weight": np.ones((1, 4)), "bias": np.zeros(1)}
    arrays = energy.fit(np.zeros((0, 4)), np.zeros(0, int), layer)
    scores = score("energy", arrays, np.array([[0.0] * 4, [5.0] * 4]))
    # Logits (0, z): z = 0 is the least certain, z = 20 gives a far lower energy.
    assert scores[0] == pytest.approx(-np.log(2)) and scores[1] < scores[0] - 15


def _pytorch_ood_scores(method: str, train: tuple[np.ndarray, np.ndarray],
                        layer: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """The same detector's scores straight from pytorch-ood, fitted on the same data."""
    import torch
    from pytorch_ood import detector as ood

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(values, np.float32))

    weight, bias = tensor(layer["weight"]), tensor(layer["bias"])
    bank, labels = tensor(train[0]), torch.from_numpy(train[1])
    if method == "energy":
        return ood.EnergyBased.score(tensor(features) @ weight.T + bias).numpy()
    fitted = {"knn": lambda: ood.KNN(None, k=1).fit_features(bank, labels),
              "mahalanobis": lambda: ood.Mahalanobis(None).fit_features(bank, labels),
              "vim": lambda: ood.ViM(None, d=bank.shape[1] // 2, w=weight, b=bias
                                     ).fit_features(bank, labels)}[method]()
    return fitted.predict_features(tensor(features)).numpy()


@pytest.mark.parametrize("method", ["knn", "mahalanobis", "vim", "energy"])
def test_our_torch_scores_equal_pytorch_oods_own(method):
    """The scores are pytorch-ood's formulas restated in plain torch (so that a graph can
    hold them): they must give its numbers."""
    train, layer = _clusters(0, 300), _layer()
    features = np.vstack([_clusters(1, 40)[0], _clusters(2, 20, shift=6.0)[0]])
    ours = score(method, DETECTORS.get(method)().fit(*train, layer), features)
    theirs = _pytorch_ood_scores(method, train, layer, features)
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-4)


def test_the_threshold_is_validations_quantile_and_test_never_moves_it():
    assert threshold_for(np.arange(1, 101, dtype=float), 0.95) == 95.0
    assert threshold_for(np.arange(1, 101, dtype=float), 0.9) == 90.0
    train, validation = _clusters(0, 300), _clusters(1, 200)[0]
    one = fit_unfamiliar("knn", 0.95, train, validation, _layer(), {"test": _clusters(2, 50)[0]})
    other = fit_unfamiliar("knn", 0.95, train, validation, _layer(),
                           {"test": _clusters(5, 80, shift=30.0)[0]})
    assert one.threshold == other.threshold
    assert all(np.array_equal(one.arrays[k], other.arrays[k]) for k in one.arrays)
    with pytest.raises(UserError, match="validation split is empty"):
        threshold_for(np.array([]), 0.95)


def test_vim_refuses_features_no_wider_than_the_classes():
    with pytest.raises(UserError, match="needs more features"):
        DETECTORS.get("vim")().fit(np.zeros((10, 3)), np.arange(10) % 3, _layer(3, 3))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unfamiliar")
    data = make_class_folders(root / "data", {"cat": 30, "dog": 30, "fox": 30})
    return run_yaml(root, "ood", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 16}}}}
models:
  cnn: {{layers: [{{type: conv, filters: 8}}, {{type: pool}}, {{type: conv, filters: 8}},
                {{type: pool}}, {{type: flatten}}]}}
  mlp: {{preset: mlp}}
train: {{epochs: 12, progress: quiet, seed: 0}}
evaluate:
  bootstrap: 0
  robustness: {{}}
  explain: {{images: 0}}
  error_examples: 0
  unfamiliar: {{method: mahalanobis, keep: 0.9, train_images: 40}}
  ensembles: {{pair: [cnn, mlp]}}
""")


def test_a_run_fits_each_models_detector_on_training_and_sets_it_on_validation(run):
    from visionbench.rundir.documents import Unfamiliar
    from visionbench.rundir.layout import RunFolder

    for name in ("cnn", "mlp"):
        folder = RunFolder(run).model(name)
        found = folder.require(Unfamiliar)
        assert (found.method, found.keep) == ("mahalanobis", 0.9)
        assert abs(found.train_images - 40) <= 3, "a stratified sample (rounded per class)"
        val = found.flagged["val"]
        assert val.flagged <= round(0.1 * val.images) + 1
        assert found.flagged["test"].images == 18
        arrays = folder.read_unfamiliar_arrays(found.arrays_checksum)
        assert set(arrays) == {"mu", "precision", "weight", "bias", "val_scores",
                               "generic_val_scores"}
        assert found.generic, "combined with the run's generic-embedding detector"


def test_damaged_or_swapped_detector_arrays_are_refused_in_one_line(run, tmp_path):
    import shutil

    from visionbench.rundir.documents import Unfamiliar
    from visionbench.rundir.layout import RunFolder

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    folder = RunFolder(copy).model("cnn")
    checksum = folder.require(Unfamiliar).arrays_checksum
    shutil.copy(RunFolder(copy).model("mlp").unfamiliar_arrays, folder.unfamiliar_arrays)
    with pytest.raises(UserError, match=r"does not match unfamiliar\.json"):
        folder.read_unfamiliar_arrays(checksum)
    folder.unfamiliar_arrays.write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(UserError, match="does not match"):
        folder.read_unfamiliar_arrays(checksum)


def test_the_arrays_file_is_safetensors_not_a_pickle(run):
    from visionbench.rundir.layout import RunFolder

    raw = RunFolder(run).model("cnn").unfamiliar_arrays.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert {"mu", "precision"} <= set(header)
    assert b"\x80\x04" not in raw[:2]


def _foreign(folder: Path) -> list[Path]:
    """Images no training image looks like: noise, blank, a checkerboard."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    pictures = {
        "noise.png": rng.integers(0, 256, (24, 24, 3), dtype=np.uint8),
        "black.png": np.zeros((24, 24, 3), np.uint8),
        "white.png": np.full((24, 24, 3), 255, np.uint8),
        "checks.png": (np.indices((24, 24)).sum(0) % 2 * 255).astype(np.uint8)[..., None]
        .repeat(3, -1),
    }
    for name, pixels in pictures.items():
        Image.fromarray(pixels).save(folder / name)
    return [folder / name for name in pictures]


def test_predict_flags_unfamiliar_images_and_sorts_them_into_their_folder(run, tmp_path):
    # A small model's own features tell blank images from its training images, not noise
    # or a checkerboard: what they cannot see is the generic embedding's job (issue 27).
    import csv

    from conftest import pattern
    from visionbench.cli import main

    images = tmp_path / "in"
    _foreign(images)
    for i in range(6):
        pattern(i % 3, 500 + i).save(images / f"familiar {i}.png")
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run), str(images), "--model", "mlp", "--out", str(out),
                 "--sort-into", str(tmp_path / "sorted")]) == 0
    rows = {Path(row["path"]).name: row for row in csv.DictReader(out.open())}
    flagged = {name for name, row in rows.items() if row["unfamiliar"] == "True"}
    assert {"black.png", "white.png"} <= flagged
    assert len(flagged & {f"familiar {i}.png" for i in range(6)}) <= 1
    from visionbench.rundir.documents import Unfamiliar
    from visionbench.rundir.layout import RunFolder

    threshold = RunFolder(run).model("mlp").require(Unfamiliar).threshold
    assert flagged == {name for name, row in rows.items()
                       if float(row["unfamiliar_score"]) > threshold}
    sorted_out = tmp_path / "sorted"
    assert {p.name for p in (sorted_out / "_unfamiliar").iterdir()} == flagged
    assert not any(p.name in flagged for p in sorted_out.rglob("*.png")
                   if p.parent.name != "_unfamiliar")


def test_the_library_and_every_answer_carry_the_flag(run, tmp_path):
    from visionbench import load

    images = _foreign(tmp_path / "in")
    predictor = load(run, "mlp")
    found = {Path(p.source).name: p for p in predictor.predict(images)}
    assert found["black.png"].unfamiliar is True
    assert found["black.png"].unfamiliar_score > predictor.unfamiliar.threshold
    probabilities, scores = predictor.read(np.stack([predictor.decode(p)[0] for p in images]))
    assert probabilities.shape == (4, 3) and scores.shape == (4,)
    assert np.allclose(probabilities, predictor.probabilities(
        np.stack([predictor.decode(p)[0] for p in images])))


@pytest.mark.slow
def test_an_ensemble_answers_with_its_first_members_detector(run, tmp_path):
    from visionbench import load

    images = _foreign(tmp_path / "in")
    pair, cnn = load(run, "pair"), load(run, "cnn")
    assert pair.unfamiliar is not None and pair.members_names == ["cnn", "mlp"]
    assert (pair.unfamiliar.method, pair.unfamiliar.threshold) == \
        (cnn.unfamiliar.method, cnn.unfamiliar.threshold)
    pictures = np.stack([pair.decode(p)[0] for p in images])
    probabilities, scores = pair.read(pictures)
    assert np.allclose(scores, cnn.read(pictures)[1])
    assert not np.allclose(probabilities, cnn.read(pictures)[0]), "still the ensemble's answer"
    found = {Path(p.source).name: p for p in pair.predict(images)}
    assert found["black.png"].unfamiliar is True
    report = (run / "report.html").read_text(encoding="utf-8")
    assert "pair answers with cnn&#x27;s detector" in report
    pytest.importorskip("onnxscript")
    from visionbench.cli import main

    assert main(["export", str(run), "--model", "pair", "--out", str(tmp_path / "pair")]) == 0
    card = json.loads((tmp_path / "pair" / "model.json").read_text())
    assert card["unfamiliar"]["threshold"] == cnn.unfamiliar.threshold
    exported = {Path(p.source).name: p for p in load(tmp_path / "pair").predict(images)}
    assert {n: p.unfamiliar for n, p in exported.items()} == \
        {n: p.unfamiliar for n, p in found.items()}


@pytest.mark.slow
def test_an_export_scores_unfamiliarity_in_its_graph_as_the_run_does(run, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    from conftest import pattern
    from visionbench import load
    from visionbench.cli import main

    images = _foreign(tmp_path / "in")
    for i in range(3):
        images.append(tmp_path / "in" / f"familiar {i}.png")
        pattern(i, 800 + i).save(images[-1])
    assert main(["export", str(run), "--model", "cnn", "--out", str(tmp_path / "cnn")]) == 0
    card = json.loads((tmp_path / "cnn" / "model.json").read_text())
    from visionbench.rundir.documents import Unfamiliar
    from visionbench.rundir.layout import RunFolder

    fitted = RunFolder(run).model("cnn").require(Unfamiliar)
    assert card["unfamiliar"]["method"] == "mahalanobis"
    assert card["unfamiliar"]["threshold"] == fitted.threshold
    assert card["unfamiliar"]["generic"], "the generic embedding is inside the graph too"
    assert card["parity"]["unfamiliar_agreement"] == 1.0
    from_run = {Path(p.source).name: p for p in load(run, "cnn").predict(images)}
    from_export = {Path(p.source).name: p for p in load(tmp_path / "cnn").predict(images)}
    assert {n for n, p in from_run.items() if p.unfamiliar} >= {"black.png", "white.png"}
    for name, found in from_export.items():
        assert found.unfamiliar == from_run[name].unfamiliar, name
        assert found.unfamiliar_score == pytest.approx(from_run[name].unfamiliar_score,
                                                       rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_an_export_whose_card_and_graph_disagree_on_the_detector_is_refused(run, tmp_path):
    pytest.importorskip("onnxscript")
    from visionbench import load
    from visionbench.cli import main
    from visionbench.rundir.documents import ExportCard
    from visionbench.rundir.layout import ExportFolder

    assert main(["export", str(run), "--model", "cnn", "--out", str(tmp_path / "cnn")]) == 0
    folder = ExportFolder(tmp_path / "cnn")
    folder.write(folder.require(ExportCard).model_copy(update={"unfamiliar": None}))
    with pytest.raises(UserError, match="disagree on the unfamiliar-image detector"):
        load(tmp_path / "cnn")


def test_folds_repeats_and_sweep_trials_get_no_detector_of_their_own(tmp_path):
    from visionbench.rundir.layout import ModelFolder, nested

    model = ModelFolder(tmp_path / "cnn")
    assert not nested(model)
    assert nested(model.fold(0)) and nested(model.repeat(1))
    assert nested(ModelFolder(tmp_path / "sweep" / "3"))


def test_without_named_sets_each_detector_is_measured_on_generated_ones(run):
    from visionbench.rundir.documents import Unfamiliar
    from visionbench.rundir.layout import RunFolder

    found = RunFolder(run).model("mlp").require(Unfamiliar)
    assert set(found.foreign) == {"generated: noise", "generated: blank",
                                  "generated: photo crops", "generated: digits"}
    for measured in found.foreign.values():
        assert measured.images == 60
        assert 0 <= measured.auroc_low <= measured.auroc <= measured.auroc_high <= 1
        assert 0 <= measured.fpr_at_95 <= 1 and 0 <= measured.flagged <= 1
    report = (run / "report.html").read_text()
    assert '<h2 id="unfamiliar">Unfamiliar images</h2>' in report
    assert "No foreign image set was named" in report


def test_named_foreign_sets_are_measured_and_a_missing_one_refused_at_load(tmp_path, capsys):
    from visionbench.cli import main
    from visionbench.rundir.documents import Unfamiliar
    from visionbench.rundir.layout import RunFolder

    data = make_class_folders(tmp_path / "data", {"cat": 20, "dog": 20})
    foreign = tmp_path / "foreign"
    _foreign(foreign)
    config = tmp_path / "named.yaml"
    text = f"""
data: {{source: folder, path: {data}, preprocess: {{size: 12}}}}
models: {{mlp: {{preset: mlp}}}}
train: {{epochs: 2, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0,
           unfamiliar: {{foreign: [{{where}}]}}}}
output: {{dir: {tmp_path / 'runs'}}}
"""
    config.write_text(text.replace("{where}", str(tmp_path / "nowhere")))
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "foreign image set" in err and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists(), "refused before anything was decoded or written"
    config.write_text(text.replace("{where}", str(foreign)))
    assert main(["run", str(config)]) == 0
    run = next((tmp_path / "runs" / "named").iterdir())
    found = RunFolder(run).model("mlp").require(Unfamiliar)
    assert list(found.foreign) == [str(foreign)]
    assert found.foreign[str(foreign)].images == 4
    assert "No foreign image set was named" not in (run / "report.html").read_text()


def test_separation_auroc_equals_scikit_learns():
    from sklearn.metrics import roc_auc_score

    from visionbench.evaluate.unfamiliar import separation

    rng = np.random.default_rng(3)
    familiar, foreign = rng.normal(size=200).round(1), rng.normal(0.7, 1, 50).round(1)
    found = separation(familiar, foreign, 1.0, resamples=200)
    expected = roc_auc_score(np.r_[np.zeros(200), np.ones(50)], np.r_[familiar, foreign])
    assert found.auroc == pytest.approx(expected, abs=1e-12)
    assert found.auroc_low < expected < found.auroc_high
    assert found.flagged == pytest.approx((foreign > 1.0).mean())


def test_the_bootstrap_auroc_equals_scikit_learns_with_the_same_weights():
    from sklearn.metrics import roc_auc_score

    from visionbench.evaluate.unfamiliar import weighted_auroc

    rng = np.random.default_rng(2)
    familiar = rng.normal(size=60).round(1)  # rounded: ties count half, as in scikit-learn
    foreign = (rng.normal(size=25) + 1).round(1)
    weights = [rng.integers(0, 4, size=(3, len(side))).astype(float)
               for side in (familiar, foreign)]
    ours = weighted_auroc(familiar, foreign, *weights)
    for row in range(3):
        expected = roc_auc_score(np.r_[np.zeros(60), np.ones(25)], np.r_[familiar, foreign],
                                 sample_weight=np.r_[weights[0][row], weights[1][row]])
        assert ours[row] == pytest.approx(expected, abs=1e-12)


def test_the_generic_embedding_folds_its_norms_without_changing_what_it_computes():
    import timm
    import torch
    from timm.layers import BatchNormAct2d

    from visionbench.models.backbones import load_weights, resolve_weights
    from visionbench.runtime.embedding import NETWORK, fold_batch_norms, generic_embedding

    plain = timm.create_model(NETWORK)
    load_weights(plain, resolve_weights(NETWORK, True), "classifier")
    plain.reset_classifier(0)
    plain.eval()
    folded = generic_embedding("cpu").network
    assert not any(isinstance(m, BatchNormAct2d) for m in folded.modules())
    assert fold_batch_norms(folded) == 0, "folding twice changes nothing"
    images = torch.rand(4, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, found = plain(images), folded(images.contiguous(
            memory_format=torch.channels_last))
    assert torch.allclose(found, expected, atol=1e-4, rtol=1e-4)
