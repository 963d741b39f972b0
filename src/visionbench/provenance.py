"""What produced a result: package versions, the git commit, the command, the time."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from visionbench import __version__
from visionbench.config import Config, Provenance, dump_config
from visionbench.fileio import write_text
from visionbench.rundir.layout import RunFolder

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


def command_line(argv: list[str] | None = None) -> list[str]:
    """`argv` (default: this process's) as a user would retype it.

    `python -m visionbench` puts the path of `__main__.py` in argv[0]; it is written back
    as the module call, so a recorded command reruns on another machine.
    """
    words = list(sys.argv if argv is None else argv)
    program = Path(words[0]) if words else Path()
    if program.name == "__main__.py" and program.parent.name == "visionbench":
        words[:1] = ["python", "-m", "visionbench"]
    return words


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
        command=command_line(command),
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


def code_version() -> dict[str, str | bool | None]:
    """visionbench's version and the git commit (and dirty flag) of its source, if any."""
    state = git_state(Path(__file__).resolve().parent)
    return {"visionbench": __version__, "commit": state["commit"], "dirty": state["dirty"]}


def describe_hardware(device: str) -> str:
    """One line naming what ran on `device`: the GPU's name, or the CPU and its cores."""
    import torch  # imported here: provenance is read by light commands too

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA {torch.version.cuda})"
    if device.startswith("mps"):
        return f"Apple GPU (MPS) on {platform.machine()}"
    return f"CPU {_cpu_name()}, {torch.get_num_threads()} threads"


def _earlier_commands(path: Path) -> list[dict[str, Any]]:
    """The commands recorded in an existing config.yaml, oldest first."""
    if not path.is_file():
        return []
    try:
        previous = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("provenance")
    except yaml.YAMLError:
        return []
    if not isinstance(previous, dict) or "command" not in previous:
        return []
    return [*previous.get("earlier", []),
            {"created_at": previous.get("created_at"), "command": previous["command"],
             "commit": (previous.get("git") or {}).get("visionbench_commit")}]


def save_config(config: Config, folder: Path, command: list[str] | None = None) -> Path:
    """Write `folder/config.yaml`: the resolved config with its provenance; the commands
    that wrote to the folder before (a resumed or continued run) are kept in `earlier`."""
    path = RunFolder(folder).config_file
    provenance = collect(command)
    provenance.earlier = _earlier_commands(path)
    stamped = config.model_copy(update={"provenance": provenance})
    write_text(path, dump_config(stamped))
    return path
