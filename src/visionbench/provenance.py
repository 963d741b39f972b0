"""What produced a result: package versions, the git commit, the command, the time."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from visionbench import __version__
from visionbench.config import Config, Provenance, dump_config
from visionbench.fileio import write_text

PACKAGES = ("torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "pillow", "pydantic")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(cwd: Path) -> dict[str, str | bool | None]:
    """Commit and dirty flag of the repository holding `cwd`, or Nones outside one."""
    commit = _git(["rev-parse", "HEAD"], cwd)
    dirty = None if commit is None else bool(_git(["status", "--porcelain"], cwd))
    return {"commit": commit, "dirty": dirty}


def collect(command: list[str] | None = None) -> Provenance:
    """Versions of Python, visionbench and its main dependencies, git state and command."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    package_dir = Path(__file__).resolve().parent
    return Provenance(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=list(sys.argv if command is None else command),
        visionbench=__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        packages=packages,
        git={
            **{f"project_{k}": v for k, v in git_state(Path.cwd()).items()},
            **{f"visionbench_{k}": v for k, v in git_state(package_dir).items()},
        },
    )


def _cpu_name() -> str:
    """The CPU's marketing name where the OS tells it, else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_hardware(device: str) -> str:
    """One line naming what ran on `device`: the GPU's name, or the CPU and its cores."""
    import torch  # imported here: provenance is read by light commands too

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA {torch.version.cuda})"
    if device.startswith("mps"):
        return f"Apple GPU (MPS) on {platform.machine()}"
    return f"CPU {_cpu_name()}, {torch.get_num_threads()} threads"


def save_config(config: Config, folder: Path, command: list[str] | None = None) -> Path:
    """Write `folder/config.yaml`: the resolved config with its provenance."""
    stamped = config.model_copy(update={"provenance": collect(command)})
    path = folder / "config.yaml"
    write_text(path, dump_config(stamped))
    return path
