"""Decode workers do not outlive a run that is killed while they work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_class_folders

SCRIPT = """
import sys
from visionbench.config import config_from_dict
from visionbench.data.dataset import prepare_data

if __name__ == "__main__":
    config = config_from_dict({"data": {"source": "folder", "path": sys.argv[1],
                                        "workers": 2, "preprocess": {"size": 512}}})
    prepare_data(config.data)
"""


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux's")
def test_decode_workers_die_with_a_killed_run(tmp_path):
    data = make_class_folders(tmp_path / "data", {"a": 200, "b": 200}, size=64)
    script = tmp_path / "decode.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "VISIONBENCH_CACHE": str(tmp_path / "cache")}
    run = subprocess.Popen([sys.executable, str(script), str(data)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.monotonic() + 60
    # The pool's workers are the children that import visionbench (not the resource tracker).
    while time.monotonic() < deadline and len(workers) < 2 and run.poll() is None:
        workers = [c for c in _children(run.pid)
                   if "spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes().decode(
                       errors="replace")]
        time.sleep(0.05)
    assert len(workers) >= 1, "the decode pool did not start"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    # A worker still starting up notices at its first instruction; give it that long.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(workers):
        time.sleep(0.2)
    assert _alive(workers) == []


def _alive(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(pid)
    return found
