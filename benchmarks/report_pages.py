"""Fingerprints of report pages: does a change of the report's code leave every page as it was?

Run from the repository root:
    python benchmarks/report_pages.py runs SCRATCH        # two fresh quickstart runs, once
    python benchmarks/report_pages.py hash SCRATCH OUT.json
    python benchmarks/report_pages.py compare BEFORE.json AFTER.json

`runs` trains the quickstart twice into SCRATCH: as shipped, and with three folds and two
repeats (the folds and repeats sections). `hash` builds the report page of every stored run
folder under `benchmarks/result_runs/` and of every run under SCRATCH, each from a copy at a
fixed path (the page's title names the folder), and writes each page's SHA-256. Run `hash`
with the code before a change (a `git worktree` of the earlier commit, its `src` first on
PYTHONPATH) and after it, on the same runs; `compare` lists the pages that differ and exits
1 when one does. Issue 28 moved the report into a package with every page byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

STORED = Path(__file__).parent / "result_runs"
FRESH = {
    "quickstart": [],
    "quickstart-folds": ["--set", "data.split.folds=3", "--set", "train.repeats=2"],
}


def make_runs(scratch: Path) -> None:
    """The two fresh quickstart runs, each in its own folder under `scratch`."""
    from visionbench.cli import main

    for name, settings in FRESH.items():
        code = main(["run", "quickstart", "--set", f"output.dir={scratch / name}",
                     "--set", f"data.cache_dir={scratch / 'cache'}",
                     "--set", "train.progress=quiet", *settings])
        if code != 0:
            sys.exit(f"the {name} run failed (exit {code})")


def run_folders(scratch: Path) -> dict[str, Path]:
    """Every run folder to build a page of, by a stable name: the stored ones, then the
    fresh ones."""
    found = {f"{folder.parent.name}/{folder.name}": folder
             for folder in sorted(STORED.glob("*/*")) if (folder / "data.json").is_file()}
    for name in FRESH:
        for folder in sorted((scratch / name).glob("*/*")):
            if (folder / "data.json").is_file():
                found[f"{name}/{folder.name}"] = folder
    return found


def page_hashes(scratch: Path) -> dict[str, str]:
    """The SHA-256 of each run folder's page, built from a copy at the same relative path
    every time."""
    from visionbench.report.build import build_report
    from visionbench.rundir import RunFolder

    hashes = {}
    with tempfile.TemporaryDirectory() as copies:
        for name, folder in run_folders(scratch).items():
            copy = Path(copies) / name
            shutil.copytree(folder, copy, symlinks=True)
            page = build_report(RunFolder(copy))
            hashes[name] = hashlib.sha256(page.encode()).hexdigest()
            print(f"{hashes[name][:16]}  {name}")
    return hashes


def compare(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The pages that differ, are missing or are new."""
    differ = []
    for name in sorted(before.keys() | after.keys()):
        if before.get(name) != after.get(name):
            how = ("missing" if name not in after else "new" if name not in before
                   else "differs")
            differ.append(f"{name}: {how}")
    return differ


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "runs":
        make_runs(Path(rest[0]).resolve())
    elif command == "hash":
        Path(rest[1]).write_text(json.dumps(page_hashes(Path(rest[0]).resolve()), indent=1))
    elif command == "compare":
        before, after = (json.loads(Path(path).read_text()) for path in rest)
        differ = compare(before, after)
        print("\n".join(differ) if differ else f"all {len(after)} pages byte-identical")
        return 1 if differ else 0
    else:
        sys.exit(f"unknown command {command}: write runs, hash or compare")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
