"""The whole pipeline on a CUDA device: skipped where there is none (CI), run on GPU boxes.

CPU-only tests cannot see a tensor made on the wrong device; this one can.
"""

import json

import pytest
import torch

from visionbench.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_quickstart_trains_evaluates_and_explains_on_cuda(tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["--set", f"output.dir={out}", "--set", "train.epochs=1", "--set", "train.device=cuda",
            "--set", "data.split.limit_per_class=30", "--set", "train.progress=quiet",
            # Exercise the grey-from-RGB path and device augmentation on the GPU as well.
            "--set", "models.small_cnn.input.channels=1",
            "--set", "models.wide_cnn.train.augment.rotation=10"]
    assert main(["run", "quickstart", *args]) == 0, capsys.readouterr().err
    folder = next((out / "quickstart").iterdir())
    for model in ("small_cnn", "wide_cnn", "mlp"):
        metrics = json.loads((folder / model / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["device"].startswith("cuda")
        assert (folder / model / "explanations.json").is_file()
        assert (folder / model / "robustness.json").is_file()
