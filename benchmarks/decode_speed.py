"""Decode-and-cache speed on the brain-tumour MRI set, and the warm `inspect` time.

Run from the repository root:  python benchmarks/decode_speed.py [DATA_DIR]
Prints images/second for a cold decode with 1 and with all worker processes, the raw
single-process decoder rate (PIL open + preprocess, no cache) for comparison, and the
wall time of a second `visionbench inspect` (everything cached).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from visionbench.config import load_config
from visionbench.data.cache import decode
from visionbench.data.decode import preprocess
from visionbench.readers import read_raster

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain_tumor_mri"


def main() -> None:
    """Measure and print."""
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not data_dir.is_dir():
        sys.exit(f"no data at {data_dir}")
    config = load_config("recipes/brain_tumor.yaml", [f"data.path={data_dir}"])
    source = config.data.load()
    count = len(source.ids)
    sample = source.paths[::6]  # spread over every class and size
    started = time.perf_counter()
    for path in sample:
        with read_raster(path) as raster:
            preprocess(raster, config.data.preprocess)
    raw_rate = len(sample) / (time.perf_counter() - started)
    print(f"{count} images")
    print(f"decoder alone, 1 process: {raw_rate:.0f} images/s ({len(sample)} images)")
    for workers in (1, os.cpu_count() or 1):
        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            decode(source, config.data.preprocess, Path(cache), workers=workers)
            seconds = time.perf_counter() - started
        rate = count / seconds
        print(f"cold decode + cache, {workers} worker(s): {seconds:.1f} s, {rate:.0f} images/s")
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "VISIONBENCH_CACHE": cache}
        command = [
            sys.executable,
            "-m",
            "visionbench.cli",
            "inspect",
            "recipes/brain_tumor.yaml",
            "--set",
            f"data.path={data_dir}",
            "--json",
            "--out",
            out,
        ]
        subprocess.run(command, env=env, check=True, capture_output=True)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            timings.append(time.perf_counter() - started)
        print(
            f"warm inspect (whole command): best {min(timings):.2f} s, worst {max(timings):.2f} s"
        )


if __name__ == "__main__":
    main()
