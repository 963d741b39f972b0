"""The data path's cost curve: `inspect` (cold and warm cache) and one training epoch of a
small CNN on generated folders of 10,000, 20,000 and 50,000 32-px JPEGs (ten classes), with
the wall time and peak resident memory of every step.

Run from the repository root:  python benchmarks/scale.py [--sizes 10000 20000 50000]
                                                        [--work DIR] [--keep]

Each step runs as its own `visionbench` command in a child process with a private decode
cache, so its peak memory is its own (the child and its decode workers, the largest of
them). If a step's time grows much faster than its image count from one size to the next,
something quadratic came in. The numbers go into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10
SIDE = 32


def _write_class(folder: str, label: int, first: int, count: int) -> None:
    """`count` JPEGs of class `label`: smooth random texture (a 4x4 grid of grey levels
    enlarged) with a bar whose place says the class, so images differ from one another
    the way photos do and the classes can be learnt."""
    rng = np.random.default_rng(first * CLASSES + label)
    target = Path(folder) / f"class_{label}"
    target.mkdir(parents=True, exist_ok=True)
    for number in range(first, first + count):
        grid = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        texture = np.asarray(Image.fromarray(grid).resize((SIDE, SIDE),
                                                          Image.Resampling.BICUBIC))
        picture = texture.copy()
        row = 2 + 3 * label
        picture[row:row + 3, 4:28] = 255 - picture[row:row + 3, 4:28]
        noise = rng.integers(-12, 13, picture.shape)
        picture = np.clip(picture.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(picture).save(target / f"{number:07d}.jpg", quality=90)


def generate(folder: Path, count: int) -> None:
    """A class-folder dataset of `count` images (made once; the folder is reused)."""
    if folder.is_dir():
        return
    building = folder.with_name(folder.name + ".part")
    shutil.rmtree(building, ignore_errors=True)
    per_class = count // CLASSES
    pieces = 8
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        jobs = [pool.submit(_write_class, str(building), label, piece * per_class // pieces,
                            (piece + 1) * per_class // pieces - piece * per_class // pieces)
                for label in range(CLASSES) for piece in range(pieces)]
        for job in jobs:
            job.result()
    building.rename(folder)


def _config(data: Path, out: Path) -> Path:
    """A one-model config on `data`: the MNIST study's small CNN for one epoch, no checks
    that are not about the data path."""
    text = f"""
data:
  source: folder
  path: {data}
  preprocess: {{size: {SIDE}, color: rgb}}
  split: {{val: 0.1, test: 0.1, seed: 0}}
models:
  small_cnn: {{preset: mnist_baseline}}
train: {{epochs: 1, batch_size: 128, seed: 0}}
evaluate:
  robustness: {{}}
  explain: {{images: 0}}
  error_examples: 0
  unfamiliar: null
  shift: null
  segments: null
output: {{dir: {out}, name: scale}}
"""
    path = out / "scale.yaml"
    path.write_text(text)
    return path


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak resident MB of the child or its largest worker) of one command."""
    started = time.perf_counter()
    code = (f"import resource, runpy, sys; sys.argv = {['visionbench', *command]!r}; "
            "exit_code = 0\n"
            "try:\n runpy.run_module('visionbench', run_name='__main__')\n"
            "except SystemExit as stop:\n exit_code = stop.code or 0\n"
            "own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "sys.stderr.write(f'\\nPEAK {max(own, workers)}\\n'); sys.exit(exit_code)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    peak_kb = int(done.stderr.rsplit("PEAK ", 1)[1].split()[0])
    return seconds, peak_kb / 1024


def measure(size: int, work: Path) -> dict[str, float]:
    """Every step at one size."""
    data = work / f"jpeg_{size}"
    generate(data, size)
    with tempfile.TemporaryDirectory(dir=work) as cache, \
            tempfile.TemporaryDirectory(dir=work) as out:
        env = {**os.environ, "VISIONBENCH_CACHE": cache}
        config = str(_config(data, Path(out)))
        inspect = ["inspect", config, "--json", "--out", str(Path(out) / "inspect")]
        result: dict[str, float] = {"images": size}
        result["inspect_cold_s"], result["inspect_cold_mb"] = timed(inspect, env)
        result["inspect_warm_s"], result["inspect_warm_mb"] = timed(inspect, env)
        result["run_s"], result["run_mb"] = timed(["run", config], env)
        # The run folder is named by its start time under output.dir/output.name.
        history_file = next(Path(out).glob("scale/*/small_cnn/history.json"))
        history = json.loads(history_file.read_text())
        result["epoch_s"] = float(history["epochs"][0]["seconds"])
    return result


def main() -> None:
    """Measure every size and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 50_000])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vb-scale")
    parser.add_argument("--keep", action="store_true", help="Keep the generated folders.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{'images':>8} {'inspect cold':>16} {'inspect warm':>16} {'epoch':>8} "
          f"{'whole run':>16}")
    for size in args.sizes:
        row = measure(size, args.work)
        print(f"{size:>8} {row['inspect_cold_s']:>7.1f} s {row['inspect_cold_mb']:>5.0f} MB "
              f"{row['inspect_warm_s']:>7.1f} s {row['inspect_warm_mb']:>5.0f} MB "
              f"{row['epoch_s']:>6.1f} s {row['run_s']:>7.1f} s {row['run_mb']:>5.0f} MB",
              flush=True)
        if not args.keep:
            shutil.rmtree(args.work / f"jpeg_{size}", ignore_errors=True)
    print("MB: the peak resident memory of the step's process or its largest worker")


if __name__ == "__main__":
    main()
