"""What produced a result: package versions, the git commit, the command, the time."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from visionbench.config import Config, Provenance, dump_config
from visionbench.fileio import write_text
from visionbench.rundir.layout import RunFolder
from visionbench.version import __version__

PACKAGES = ("torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "pillow", "pydantic")


# A repository's own config can name programs git runs (core.fsmonitor, for one): these
# options switch them off for the one git command visionbench runs, in its own source tree.
SAFE_GIT = ["-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false",
            "-c", "core.hooksPath=/dev/null"]


def _git_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        marker = folder / ".git"
        if marker.is_dir():
            return marker
        if marker.is_file():  # a worktree: "gitdir: <path>"
            text = marker.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                return (folder / text.removeprefix("gitdir:").strip()).resolve()
    return None


def head_commit(start: Path) -> str | None:
    """The commit checked out in the repository holding `start`, read from its files
    (no git program runs, so nothing a repository configures can run either)."""
    git_dir = _git_dir(start)
    if git_dir is None:
        return None
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.removeprefix("ref:").strip()
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
        for base in (git_dir, common):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                if line.endswith(f" {ref}"):
                    return line.split()[0]
    except OSError:
        return None
    return None


def git_state(cwd: Path, *, own_tree: bool = False) -> dict[str, str | bool | None]:
    """Commit and dirty flag of the repository holding `cwd`, or Nones outside one.

    The dirty flag needs `git status`, which runs only for visionbench's own source tree
    (`own_tree`) and with the options above; any other repository (the directory a user
    runs from) gives its commit alone.
    """
    git_dir = _git_dir(cwd)
    if own_tree and (git_dir is None
                     or (git_dir.parent / "src" / "visionbench").resolve() != cwd.resolve()):
        # Installed, not a checkout: a repository further up is someone else's.
        return {"commit": None, "dirty": None}
    commit = head_commit(cwd)
    dirty: bool | None = None
    if commit is not None and own_tree:
        try:
            done = subprocess.run(["git", *SAFE_GIT, "status", "--porcelain"], cwd=cwd,
                                  capture_output=True, text=True, timeout=5, check=False)
            dirty = bool(done.stdout.strip()) if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            dirty = None
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


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """The installed version of each package ("not installed" when absent)."""
    packages = {}
    for name in names:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    return packages


def collect(command: list[str] | None = None) -> Provenance:
    """Versions of Python, visionbench and its main dependencies, git state and command."""
    packages = package_versions()
    return Provenance(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command_line(command),
        visionbench=__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        packages=packages,
        git={
            **{f"project_{k}": v for k, v in git_state(Path.cwd()).items()},
            **{f"visionbench_{k}": v for k, v in loaded_source().items()},
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


@cache
def loaded_source() -> dict[str, str | bool | None]:
    """The git commit and dirty flag of visionbench's source as this process first read
    them: the code a process runs is the code it loaded, so a commit made while a long run
    trains (a run saves its provenance first) must not be credited with its models."""
    return git_state(Path(__file__).resolve().parent, own_tree=True)


def code_version() -> dict[str, str | bool | None]:
    """visionbench's version and the git commit (and dirty flag) of its source, if any, as
    the process first read them."""
    state = loaded_source()
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
