"""Shared fixtures: tiny synthetic image folders made on the fly, and an isolated cache."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# A recipe's smoke run: one epoch, a small bootstrap, one corruption, few explained images.
FAST = ["train.epochs=1", "train.progress=quiet", "evaluate.bootstrap=100",
        "evaluate.robustness={noise: [0.1]}", "evaluate.explain.images=2",
        "evaluate.explain.steps=4", "evaluate.explain.samples=2", "evaluate.error_examples=4"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (whole runs end to end, real data, "
                     "browsers, Ray, exports); CI runs them")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without `--slow`, the slow tests are left out (deselected, and counted as such)."""
    if config.getoption("--slow"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own decode cache, never the user's."""
    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("VISIONBENCH_CACHE", str(root))
    return root


def pattern(label: int, index: int, size: int = 24, mode: str = "RGB") -> Image.Image:
    """A distinct image per (label, index): class sets the stripe direction, index the phase."""
    rng = np.random.default_rng(1000 * label + index)
    y, x = np.mgrid[0:size, 0:size]
    angle = label * np.pi / 5 + rng.uniform(0, 0.2)
    wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) * (0.5 + 0.05 * index) + index)
    blob = np.exp(-((x - rng.uniform(4, size - 4)) ** 2 + (y - rng.uniform(4, size - 4)) ** 2) / 20)
    grey = np.clip(127 + 80 * wave + 60 * blob + rng.normal(0, 8, (size, size)), 0, 255)
    rgb = np.stack([grey, np.roll(grey, label, 0), 255 - grey], -1).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    return image.convert(mode) if mode != "RGB" else image


def make_class_folders(
    root: Path,
    counts: dict[str, int],
    size: int = 24,
    offset: int = 0,
    suffix: str = ".png",
) -> Path:
    """Write `root/<class>/<i>.png` images, `counts[class]` of each."""
    for label, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pattern(label, i + offset, size).save(folder / f"img {i}{suffix}")
    return root


def run_yaml(root: Path, name: str, text: str) -> Path:
    """Write `root/<name>.yaml` (its runs go to `root/runs`), run it with the command line
    and return the finished run folder."""
    from visionbench.cli import main

    config = root / f"{name}.yaml"
    config.write_text(text + f"output: {{dir: {root / 'runs'}}}\n")
    assert main(["run", str(config)]) == 0
    return next((root / "runs" / name).iterdir())


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """Three classes, 12 images each, 24x24 RGB PNGs."""
    return make_class_folders(tmp_path / "data", {"cat": 12, "dog": 12, "fox": 12})


@pytest.fixture
def presplit_folder(tmp_path: Path) -> Path:
    """`Training/` and `Testing/` with two classes and distinct images in each split."""
    root = tmp_path / "mri"
    make_class_folders(root / "Training", {"healthy": 20, "tumour": 16})
    make_class_folders(root / "Testing", {"healthy": 5, "tumour": 4}, offset=100)
    return root


def listening_sockets() -> set[tuple[str, str, int]]:
    """(process name, address, port) of every socket this process and its descendants
    listen on (TCP, IPv4 and IPv6)."""
    import psutil

    found = set()
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            name = process.name()
            connections = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for connection in connections:
            if connection.status == psutil.CONN_LISTEN:
                found.add((name, connection.laddr.ip, connection.laddr.port))
    return found


def is_loopback(address: str) -> bool:
    """Whether `address` is on the loopback interface only."""
    import ipaddress

    return ipaddress.ip_address(address.split("%")[0]).is_loopback


class ListenerWatch:
    """Collects the listening sockets of this process tree every 20 ms while it runs (a
    `with` block), so short-lived servers are seen too."""

    def __enter__(self) -> ListenerWatch:
        import threading

        self.seen: set[tuple[str, str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.seen |= listening_sockets()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def pets_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of one small model (explained by occlusion) on two synthetic
    classes: what the hostile-input tests attack."""
    root = tmp_path_factory.mktemp("pets")
    data = make_class_folders(root / "data", {"cat": 10, "dog": 10})
    return run_yaml(root, "pets", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 16}}}}
models:
  mlp: {{preset: mlp}}
train: {{epochs: 2, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 2, steps: 2, samples: 2,
           methods: [occlusion]}}, error_examples: 0}}
""")


def smoke_run(recipe: str, overrides: list[str], root: Path) -> Any:
    """Recipe `recipe` in its smoke version (`FAST`), its runs under `root/runs`; the
    `RunResult`, every model finished."""
    from visionbench.config import load_config
    from visionbench.orchestrate import run_config

    config = load_config(recipe, [*overrides, *FAST, f"output.dir={root / 'runs'}"])
    result = run_config(config, report=lambda _: None)
    assert {n: m.error for n, m in result.models.items() if not m.ok} == {}
    return result


@dataclass(frozen=True)
class FinishedRun:
    """A finished run shared by the tests of a session: never change it (copy it first)."""

    result: Any
    root: Path

    @property
    def folder(self) -> Path:
        """The run folder."""
        return self.result.folder


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """The quickstart recipe's smoke run, trained once for every test that reads one."""
    root = tmp_path_factory.mktemp("quickstart")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONBENCH_CACHE", str(root / "cache"))
        return FinishedRun(smoke_run("quickstart", [], root), root)


@pytest.fixture
def fake_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `gs` first on PATH that leaves a mark when anything runs it (Pillow's EPS plugin
    looks for it afresh); returns the mark's path."""
    import os

    from PIL import EpsImagePlugin

    folder, mark = tmp_path / "bin", tmp_path / "gs-was-run"
    folder.mkdir()
    (folder / "gs").write_text(f"#!/bin/sh\ntouch '{mark}'\nexit 0\n")
    (folder / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return mark


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` for a full-disk test (skipped without the
    right to mount)."""
    import subprocess

    folder.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def edit_document(path: Path, change: Callable[[dict], object]) -> None:
    """Edit a run folder's JSON document as an attacker (or a careless user) would: the
    checksum line removed, which is how a reader accepts a deliberate edit."""
    import json

    document = json.loads(path.read_text())
    document.pop("checksum", None)
    change(document)
    path.write_text(json.dumps(document))
