"""Test-time augmentation: the `<model>+tta` row, its paired test against the plain model,
and the same numbers through predict and export."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch

from conftest import make_class_folders, run_yaml
from visionbench.cli import main
from visionbench.config import config_from_dict
from visionbench.errors import UserError
from visionbench.evaluate.tta import centre_crop, view_names, view_transform
from visionbench.models.family import FAMILIES
from visionbench.schemas.evaluate import TtaConfig

CONFIG = """
data: {{source: folder, path: {data}, preprocess: {{size: 16}}, split: {{val: 0.25, test: 0.25}}}}
models:
  cnn: {{layers: [{{type: conv, filters: 8}}, {{type: pool}}, {{type: flatten}}]}}
train: {{epochs: 4, progress: quiet}}
evaluate: {{bootstrap: 200, robustness: {{}}, explain: {{images: 0}}, error_examples: 0,
           tta: {tta}}}
"""


def _run(root: Path, tta: str) -> Path:
    data = make_class_folders(root / "data", {"cat": 16, "dog": 16, "fox": 16})
    return run_yaml(root, "animals", CONFIG.format(data=data, tta=tta))


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _probabilities(rows: list[dict[str, str]]) -> torch.Tensor:
    return torch.tensor([[float(r[f"prob_{c}"]) for c in ("cat", "dog", "fox")] for r in rows])


@pytest.fixture(scope="module")
def flipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("tta"), "{hflip: true}")


def test_tta_with_identity_views_only_equals_the_plain_model(tmp_path):
    run = _run(tmp_path, "{hflip: false, crops: false}")
    for split in ("predictions.csv", "predictions_val.csv"):
        plain, augmented = _rows(run / "cnn" / split), _rows(run / "cnn+tta" / split)
        assert [r["id"] for r in plain] == [r["id"] for r in augmented]
        assert torch.equal(_probabilities(plain), _probabilities(augmented))


def test_the_tta_row_is_scored_and_tested_against_its_model(flipped):
    board = json.loads((flipped / "leaderboard.json").read_text())
    assert {row["model"] for row in board["rows"]} == {"cnn", "cnn+tta"}
    gains = json.loads((flipped / "comparison.json").read_text())["tta"]
    assert len(gains) == 1
    gain = gains[0]
    assert (gain["model"], gain["against"], gain["metric"]) == ("cnn+tta", "cnn", "accuracy")
    assert gain["views"] == ["identity", "hflip"]
    assert gain["low"] <= gain["difference"] <= gain["high"]
    metrics = json.loads((flipped / "cnn+tta" / "metrics.json").read_text())
    assert metrics["tta"] == {"model": "cnn", "views": ["identity", "hflip"]}
    # The views differ: averaging them changes the probabilities.
    assert not torch.equal(_probabilities(_rows(flipped / "cnn" / "predictions.csv")),
                           _probabilities(_rows(flipped / "cnn+tta" / "predictions.csv")))
    assert "Test-time augmentation" in (flipped / "report.html").read_text()


def test_predict_with_the_tta_row_gives_the_runs_numbers(flipped, capsys):
    written = _rows(flipped / "cnn+tta" / "predictions.csv")
    data_root = flipped.parents[2] / "data"
    assert main(["predict", str(flipped), "--model", "cnn+tta",
                 *[str(data_root / r["id"]) for r in written]]) == 0
    found = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    torch.testing.assert_close(_probabilities(found), _probabilities(written), atol=1e-5,
                               rtol=0)


@pytest.mark.slow
def test_the_export_of_a_tta_row_averages_the_same_views(flipped, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from visionbench.orchestrate.export import export_model

    # The export refuses to write a graph that differs from PyTorch on the test images.
    folder = export_model(flipped, "cnn+tta", tmp_path / "export")
    card = json.loads((folder / "model.json").read_text())
    assert card["parity"]["max_abs_difference"] <= 1e-4
    written = _rows(flipped / "cnn+tta" / "predictions.csv")
    data_root = flipped.parents[2] / "data"
    assert main(["predict", str(folder), *[str(data_root / r["id"]) for r in written]]) == 0
    found = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    torch.testing.assert_close(_probabilities(found), _probabilities(written), atol=1e-4,
                               rtol=0)


def test_views_and_the_crops_a_family_declares():
    timm, cnn = FAMILIES.get("timm"), FAMILIES.get("cnn")
    config = config_from_dict({"data": {"source": "digits"}, "models": {
        "net": {"backbone": "resnet18"}, "small": {"preset": "mlp"}}}).models
    assert view_names(TtaConfig(), timm.tta_crops(config["net"])) == [
        "identity", "hflip", "crop 0.875"]
    assert view_names(TtaConfig(vflip=True), cnn.tta_crops(config["small"])) == [
        "identity", "hflip", "vflip"]
    images = torch.zeros(1, 1, 8, 8)
    images[..., 1:7, 1:7] = 1.0
    # The centre 6 of 8 pixels is all ones: cropped and resized back, the image is ones.
    assert torch.allclose(centre_crop(images, 0.75), torch.ones(1, 1, 8, 8))
    assert view_transform("crop 1")(images).equal(images)
    with pytest.raises(UserError, match="unknown test-time augmentation view"):
        view_transform("crop 2")


def test_a_model_name_cannot_take_a_tta_rows_name():
    with pytest.raises(UserError, match=r"kept for test-time augmentation"):
        config_from_dict({"data": {"source": "digits"}, "models": {"a+tta": {"preset": "mlp"}}})


def test_tta_models_must_be_models_of_the_config():
    with pytest.raises(UserError, match=r"evaluate.tta.models: ghost is not a model"):
        config_from_dict({"data": {"source": "digits"}, "models": {"a": {"preset": "mlp"}},
                          "evaluate": {"tta": {"models": ["ghost"]}}})
