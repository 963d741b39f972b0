"""`train.distributed`: two CPU processes (gloo) train one model with DistributedDataParallel;
after one step their weights agree with each other and with one process on the whole
batch, and a run with it writes an ordinary model folder."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ListenerWatch, is_loopback, make_class_folders, run_yaml
from visionbench.config import config_from_dict
from visionbench.data.dataset import prepare_data
from visionbench.models.build import build_model
from visionbench.runtime.batches import SplitImages
from visionbench.schemas.train import DistributedConfig
from visionbench.train.distributed import FitSpec, fit_distributed
from visionbench.train.loop import Trainer, plan_stages

# Whole runs end to end: with `pytest --slow` (CI).
pytestmark = pytest.mark.slow


def _setup(class_folder):
    config = config_from_dict({
        "data": {"source": "folder", "path": str(class_folder), "preprocess": {"size": 8}},
        "models": {"m": {"layers": [{"type": "conv", "filters": 4}, {"type": "pool"},
                                    {"type": "flatten"}, {"type": "dense", "units": 8}]}},
        # One step: the batch holds every training image; no augmentation, no dropout.
        "train": {"epochs": 1, "batch_size": 64, "progress": "quiet", "checkpoint": False,
                  "augment": {"crop": None, "hflip": 0.0}}})
    data = prepare_data(config.data)
    model = config.models["m"]
    device = torch.device("cpu")
    torch.manual_seed(model.train.seed)
    norm = data.normalization()
    built = build_model(model, len(data.classes), (8, 8, 3), norm.mean, norm.std)
    train = SplitImages(data, "train", device, 64)
    return model, data, built, train, device


def test_two_processes_take_the_step_one_process_takes_on_the_whole_batch(class_folder):
    model, data, built, train, device = _setup(class_folder)
    assert len(train) <= model.train.batch_size
    start = {k: v.clone() for k, v in built.module.state_dict().items()}
    with ListenerWatch() as watch:
        state = fit_distributed(FitSpec(built, model.train, plan_stages(model), train, None,
                                        data.classes, device, {}, None, None, ("m", "quiet")),
                                DistributedConfig(processes=2))
    # The store and gloo listen on loopback only: nobody else may join the group.
    assert watch.seen, "the store's listener was never seen"
    assert {found for found in watch.seen if not is_loopback(found[1])} == set()
    assert state["meta"]["process_spread"] == 0.0
    built.module.load_state_dict(start)
    alone = Trainer(built, model.train, plan_stages(model), train, None, data.classes, device)
    alone.fit()
    for key, value in alone.model.state_dict().items():
        assert torch.allclose(state["model"][key], value, atol=1e-6), key
    assert state["history"][0]["train_loss"] == pytest.approx(
        alone.history[0]["train_loss"], rel=1e-5)


def test_a_run_with_two_processes_writes_an_ordinary_model_folder(tmp_path):
    data = make_class_folders(tmp_path / "data", {"cat": 8, "dog": 8})
    run = run_yaml(tmp_path, "ddp", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 8}}}}
models:
  m: {{layers: [{{type: conv, filters: 4}}, {{type: pool}}, {{type: flatten}}]}}
train: {{epochs: 2, batch_size: 8, progress: quiet, distributed: {{processes: 2}}}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
""")
    metrics = json.loads((run / "m" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs"] == 2
    assert (run / "m" / "model.safetensors").is_file()
    assert (run / "m" / "checkpoints" / "last.pt").is_file()
    history = json.loads((run / "m" / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert ("trained by 2 processes (DistributedDataParallel); their weights differed by at "
            "most 0.0e+00 at the end") in metrics["notes"]


def test_nproc_on_the_command_line_trains_with_that_many_processes(tmp_path):
    from visionbench.cli import main

    data = make_class_folders(tmp_path / "data", {"cat": 6, "dog": 6})
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{source: folder, path: {data}, preprocess: {{size: 8}}}}\n"
                      "models: {m: {layers: [{type: flatten}, {type: dense, units: 4}]}}\n"
                      "train: {epochs: 1, progress: quiet}\n"
                      "evaluate: {bootstrap: 0, robustness: {}, explain: {images: 0}, "
                      f"error_examples: 0}}\noutput: {{dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(config), "--nproc", "2"]) == 0
    saved = (next((tmp_path / "runs" / "c").iterdir()) / "config.yaml").read_text()
    assert "processes: 2" in saved
