"""Speed of `visionbench predict` against the same model's forward pass alone.

Run from the repository root:
    python benchmarks/predict_speed.py RUN_DIR [IMAGES] [SOURCE_SIDE] [MODEL]

Writes IMAGES JPEG files of SOURCE_SIDE px (default 2x the run's data size, so decoding
resizes as it would for new scans) into a temporary folder, then measures, on the run's
recommended model:
- forward only: `Predictor.probabilities` on the already-decoded uint8 tensors, in batches
  of 64 (what the model costs);
- predict: `predict_files` on the files (reading, decoding on threads, hashing for the
  training-duplicate flag, the model, the readings);
and prints both rates and their ratio. Each is the best of three passes. With an
unfamiliar-image detector, both are measured again without it (the flag's cost: issue 27
asks predict to keep at least 85 % of its throughput with it).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from visionbench.predict import Predictor, load, predict_files


def _files(folder: Path, count: int, side: int) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        y, x = np.mgrid[0:side, 0:side]
        wave = np.sin((x * np.cos(i) + y * np.sin(i)) * 0.2 + i)
        grey = np.clip(127 + 90 * wave + rng.normal(0, 10, (side, side)), 0, 255)
        path = folder / f"scan {i}.jpg"
        Image.fromarray(np.stack([grey, grey[::-1], 255 - grey], -1).astype(np.uint8)).save(
            path, quality=90)
        files.append(path)
    return files


def _best(seconds: list[float]) -> float:
    return min(seconds)


def _rates(predictor: Predictor, files: list[Path], decoded: np.ndarray) -> tuple[float, float]:
    """Images per second of the forward pass alone and of predict on the files."""
    forward, whole = [], []
    for _ in range(3):
        start = time.perf_counter()
        for first in range(0, len(files), 64):
            predictor.read(decoded[first:first + 64])
        forward.append(time.perf_counter() - start)
        start = time.perf_counter()
        found = list(predict_files(predictor, files))
        whole.append(time.perf_counter() - start)
    assert len(found) == len(files) and not any(p.error for p in found)
    return len(files) / _best(forward), len(files) / _best(whole)


def main() -> None:
    """Measure and print."""
    run = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    predictor = load(run, sys.argv[4] if len(sys.argv) > 4 else None)
    side = int(sys.argv[3]) if len(sys.argv) > 3 else 2 * max(predictor.decode_settings.size)
    with tempfile.TemporaryDirectory() as folder:
        files = _files(Path(folder), count, side)
        decoded = np.stack([predictor.decode(path)[0] for path in files])
        measured = {"": _rates(predictor, files, decoded)}
        if predictor.unfamiliar is not None:
            predictor.unfamiliar = None
            measured[" without the detector"] = _rates(predictor, files, decoded)
    print(f"model {predictor.name} of {run}: input {predictor.card.input.size}, "
          f"{count} JPEGs of {side} px")
    for label, (rate_forward, rate_predict) in measured.items():
        print(f"forward only on decoded tensors{label}: {rate_forward:,.0f} images/s")
        print(f"visionbench predict on the files{label}: {rate_predict:,.0f} images/s")
        print(f"ratio{label}: {rate_predict / rate_forward:.2f}")
    if len(measured) == 2:
        with_flag, without = (rates[1] for rates in measured.values())
        print(f"predict with the flag keeps {with_flag / without:.0%} of its throughput")


if __name__ == "__main__":
    main()
