"""Training throughput of `visionbench run` against a minimal hand-written PyTorch loop.

Run from the repository root:
    python benchmarks/train_speed.py [MNIST_T10K_DIR] [EPOCHS] [ROUNDS]
Both train the MNIST study's baseline CNN (225,034 parameters) with Adam, batch 128, on the
same in-memory uint8 tensors of MNIST's 10k test images (8,000 after the validation split),
channels-last, for the same number of epochs. Each round runs the hand loop and then
`visionbench run`; it prints the median training images/second of each (the first epoch
is warm-up and left out) and their ratio, then the median ratio over the rounds.

GPU mode (issue 18 §6):
    python benchmarks/train_speed.py --gpu [--models resnet18,resnet50] [--size 224]
        [--batch 256] [--images 8192] [--epochs 4] [--device cuda]
trains each timm model from random initialisation on the same random uint8 images (an
`.npz` in memory: decoding is not measured), bf16 autocast, channels-last, SGD with
momentum, once through a hand loop (index on the device, scale, normalise, forward,
backward, step) and once through `visionbench run`, and prints both rates and the ratio
(target: visionbench at least 0.95 of the hand loop).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from visionbench.config import config_from_dict
from visionbench.data.dataset import prepare_data
from visionbench.orchestrate import run_config

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist_t10k"


def _config(data_dir: Path, out: Path, epochs: int) -> dict:
    return {
        "data": {"source": "idx", "path": str(data_dir),
                 "split": {"val": 0.2, "given": "pool", "seed": 0},
                 "preprocess": {"normalize": "unit", "color": "grayscale"},
                 "duplicates": {"near": False}},
        "models": {"baseline": {"preset": "mnist_baseline"}},
        "train": {"epochs": epochs, "batch_size": 128, "optimizer": {"name": "adam", "lr": 1e-3},
                  "progress": "quiet"},
        "output": {"dir": str(out), "name": "speed"},
    }


def hand_loop(images: torch.Tensor, targets: torch.Tensor, epochs: int) -> list[float]:
    """The plainest fast loop: index a batch, scale, forward, backward, step."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    ).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rates = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for batch in torch.randperm(len(images)).split(128):
            x = images[batch].float().div_(255).contiguous(memory_format=torch.channels_last)
            loss = nn.functional.cross_entropy(model(x), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        rates.append(len(images) / (time.perf_counter() - started))
    return rates


def _gpu_config(data: Path, out: Path, model: str, args: argparse.Namespace) -> dict:
    return {
        "data": {"source": "npz", "path": str(data), "split": {"val": 0.05, "seed": 0},
                 "preprocess": {"size": args.size, "normalize": "imagenet"},
                 "duplicates": {"near": False}},
        "models": {model: {"backbone": model, "pretrained": False,
                           "input": {"size": args.size}}},
        "train": {"epochs": args.epochs, "batch_size": args.batch, "device": args.device,
                  "precision": "bf16", "channels_last": True, "progress": "quiet",
                  "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
        "evaluate": {"robustness": {}, "explain": {"images": 0}, "error_examples": 0,
                     "bootstrap": 0},
        "output": {"dir": str(out), "name": "speed"},
    }


def gpu_hand_loop(model_name: str, images: torch.Tensor, targets: torch.Tensor,
                  args: argparse.Namespace) -> list[float]:
    """The plainest fast loop on the device: uint8 NHWC on the device, index, scale,
    normalise, channels-last, bf16 autocast, forward, backward, SGD step."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=int(targets.max()) + 1)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    images, targets = images.to(device), targets.to(device)
    rates = []
    for _ in range(args.epochs):
        _sync(device)
        started = time.perf_counter()
        model.train()
        for batch in torch.randperm(len(images), device=device).split(args.batch):
            x = images[batch].permute(0, 3, 1, 2).float().div_(255).sub_(mean).div_(std)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x).float(), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        rates.append(len(images) / (time.perf_counter() - started))
    return rates


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_main(args: argparse.Namespace) -> None:
    """GPU mode: each model through the hand loop and through `visionbench run`."""
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"torch {torch.__version__}, timm {timm.__version__}, {name}, {args.size} px, "
          f"batch {args.batch}, bf16, channels-last")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images)
    with tempfile.TemporaryDirectory() as out:
        data = Path(out) / "random.npz"
        np.savez(data, x_train=pixels, y_train=labels)
        for model in args.models.split(","):
            config = config_from_dict(_gpu_config(data, Path(out), model, args))
            prepared = prepare_data(config.data)
            train = prepared.positions("train")
            images = torch.from_numpy(prepared.images[prepared.index[train]])
            targets = torch.as_tensor(prepared.targets[train])
            hand = statistics.median(gpu_hand_loop(model, images, targets, args)[1:])
            result = run_config(config, report=lambda _: None)
            history = json.loads((result.folder / model / "history.json").read_text())
            ours = statistics.median(r["images"] / r["seconds"] for r in history["epochs"][1:])
            print(f"{model}: hand loop {hand:7.0f} images/s, visionbench {ours:7.0f} "
                  f"images/s, ratio {ours / hand:.3f} ({len(train)} images, "
                  f"{args.epochs} epochs, the first left out)")


def main() -> None:
    """Measure and print."""
    if "--gpu" in sys.argv:
        parser = argparse.ArgumentParser(description="GPU mode of train_speed.py")
        parser.add_argument("--gpu", action="store_true")
        parser.add_argument("--models", default="resnet18,resnet50")
        parser.add_argument("--size", type=int, default=224)
        parser.add_argument("--batch", type=int, default=256)
        parser.add_argument("--images", type=int, default=8192)
        parser.add_argument("--epochs", type=int, default=4)
        parser.add_argument("--device", default="cuda")
        gpu_main(parser.parse_args())
        return
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    if not data_dir.is_dir():
        sys.exit(f"no MNIST IDX folder at {data_dir}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    ratios = []
    with tempfile.TemporaryDirectory() as out:
        config = config_from_dict(_config(data_dir, Path(out), epochs))
        data = prepare_data(config.data)
        train = data.positions("train")
        images = torch.from_numpy(data.images[data.index[train]]).permute(0, 3, 1, 2)
        targets = torch.as_tensor(data.targets[train])
        for round_ in range(1, rounds + 1):
            # Alternate the two so a machine whose speed drifts favours neither.
            hand = statistics.median(hand_loop(images, targets, epochs)[1:])
            started = time.perf_counter()
            result = run_config(config, report=lambda _: None)
            wall = time.perf_counter() - started
            history = json.loads((result.folder / "baseline" / "history.json").read_text())
            ours = statistics.median(r["images"] / r["seconds"] for r in history["epochs"][1:])
            ratios.append(ours / hand)
            accuracy = result.models["baseline"]["val"]["accuracy"]
            print(f"round {round_}: hand loop {hand:6.0f} images/s, visionbench {ours:6.0f} "
                  f"images/s, ratio {ours / hand:.3f}; run wall {wall:.1f} s, "
                  f"val accuracy {accuracy:.4f}")
    print(f"training images: {len(images)}, {epochs} epochs per round (first one is warm-up)")
    print(f"median ratio visionbench / hand loop: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
