"""Training throughput of `visionbench run` against a minimal hand-written PyTorch loop.

Run from the repository root:
    python benchmarks/train_speed.py [MNIST_T10K_DIR] [EPOCHS] [ROUNDS]
Both train the MNIST study's baseline CNN (225,034 parameters) with Adam, batch 128, on the
same in-memory uint8 tensors of MNIST's 10k test images (8,000 after the validation split),
channels-last, for the same number of epochs. Each round runs the hand loop and then
`visionbench run`; it prints the median training images/second of each (the first epoch
is warm-up and left out) and their ratio, then the median ratio over the rounds.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    """Measure and print."""
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
