"""How long the command line takes to refuse a bad config, and to print its help.

Run from the repository root:
    python benchmarks/cli_start.py [REPEATS]

Each command runs REPEATS times (default 7) as a fresh process, as a user types it; the
median and the slowest wall time are printed. Issue 28 asks for a misspelt key to be
refused in under a second on the 2-core machine (the config's structure is checked before
torch and the registering modules load); a misspelt registered name (an optimizer) still
loads them to list the valid names, and is measured for comparison.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "bad-key.yaml": "data: {source: digits}\nmodles: {a: {preset: mlp}}\n",
    "bad-name.yaml": "data: {source: digits}\nmodels: {a: {preset: mlp}}\n"
                     "train: {optimizer: {name: adamm}}\n",
}


def timed(argv: list[str], repeats: int) -> list[float]:
    """Wall seconds of `argv` as a fresh process, `repeats` times."""
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        walls.append(time.perf_counter() - started)
    return walls


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    command = [sys.executable, "-m", "visionbench"]
    with tempfile.TemporaryDirectory() as scratch:
        for name, text in CONFIGS.items():
            (Path(scratch) / name).write_text(text)
        cases = {
            "--help": [*command, "--help"],
            "run: unknown key": [*command, "run", str(Path(scratch) / "bad-key.yaml")],
            "run: --set unknown key": [*command, "run", "quickstart", "--set",
                                       "train.epoch=1"],
            "inspect: unknown key": [*command, "inspect", str(Path(scratch) / "bad-key.yaml")],
            "run: unknown optimizer": [*command, "run", str(Path(scratch) / "bad-name.yaml")],
        }
        print(f"{'command':<26} {'median s':>9} {'slowest s':>10}")
        for label, argv in cases.items():
            walls = timed(argv, repeats)
            print(f"{label:<26} {statistics.median(walls):>9.2f} {max(walls):>10.2f}")


if __name__ == "__main__":
    main()
