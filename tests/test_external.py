"""Models trained elsewhere: ONNX (a Keras-style NHWC export) and TorchScript."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from visionbench.cli import main
from visionbench.config import load_config
from visionbench.data.dataset import prepare_data


class KerasLike(nn.Module):
    """Takes NHWC pixels in [0, 255] and rescales itself, as a Keras export does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * 6 * 6, 10), nn.Softmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2) / 255.0)


def _data_config(tmp_path):
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"source": "digits", "preprocess": {"color": "grayscale"},
                 "split": {"val": 0.2, "test": 0.3, "seed": 1, "limit_per_class": 20}},
        "evaluate": {"robustness": {"noise": [0.1]}, "bootstrap": 50},
        "output": {"dir": str(tmp_path / "runs")},
    }))
    return path


def _expected_predictions(config_path, model: nn.Module) -> np.ndarray:
    data = prepare_data(load_config(config_path).data)
    images, _ = data.arrays("test")
    with torch.no_grad():
        return model(torch.from_numpy(images).float()).argmax(1).numpy()


def _run_folder(tmp_path):
    return next((tmp_path / "runs" / "digits").iterdir())


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_external_model_gets_the_same_predictions_file_and_metrics(kind, tmp_path):
    model = KerasLike().eval()
    example = torch.rand(2, 8, 8, 1) * 255
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
        path = tmp_path / "old_keras.onnx"
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
    else:
        path = tmp_path / "old.pt"
        torch.jit.trace(model, example).save(str(path))
    config = _data_config(tmp_path)
    # `--model` is the option's former name, kept as an alias of `--external`.
    code = main(["evaluate", "--model", str(path), "--data", str(config), "--name", "keras",
                 "--set", "models.keras.input.layout=nhwc", "--set",
                 "models.keras.input.scale=255", "--set", "models.keras.input.mean=[0.0]",
                 "--set", "models.keras.input.std=[1.0]"])
    assert code == 0
    folder = _run_folder(tmp_path)
    rows = (folder / "keras" / "predictions.csv").read_text().splitlines()
    predicted = np.array([int(row.split(",")[2]) for row in rows[1:]])
    assert (predicted == _expected_predictions(config, model)).all()
    metrics = json.loads((folder / "keras" / "metrics.json").read_text())
    assert metrics["external"] == str(path)
    evaluation = json.loads((folder / "keras" / "evaluation.json").read_text())
    assert evaluation["metrics"]["accuracy"]["value"] == pytest.approx(
        metrics["test"]["accuracy"])
    assert (folder / "keras" / "robustness.json").is_file()
    board = json.loads((folder / "leaderboard.json").read_text())
    assert board["rows"][0]["model"] == "keras" and board["rows"][0]["mark"] == "recommended"
    # A model trained elsewhere gives no features: it gets no unfamiliar-image detector
    # (and the run goes on), rather than a detector on features it does not have.
    assert not (folder / "keras" / "unfamiliar.json").exists()
    assert "Unfamiliar images" not in (folder / "report.html").read_text(encoding="utf-8")
    # Predicting with it is refused in one line that says why (not "retrain it").
    from visionbench import load
    from visionbench.errors import UserError

    with pytest.raises(UserError, match=r"evaluated from .* trained elsewhere") as refused:
        load(folder, "keras")
    assert "\n" not in str(refused.value) and "retrain" not in str(refused.value)


def test_external_model_that_does_not_fit_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    pytest.importorskip("onnxruntime")
    code = main(["evaluate", "--external", str(path), "--data", str(_data_config(tmp_path))])
    assert code == 2
    assert "cannot load ONNX model" in capsys.readouterr().err
