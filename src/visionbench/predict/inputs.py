"""What `visionbench predict` was given, as a list of files: files, folders (searched
recursively, links not followed), glob patterns, and CSV files with a `path` column.

Only regular files are ever read: a link, a FIFO, a device (`/dev/zero`) or a folder named
where an image is expected stays in the list and gets its reason as an error row
(`rasters.regular_file_problem`), so nothing is dropped without a word and nothing hangs
or fills a disk.
A CSV's paths must lie inside the CSV's own folder unless the caller allows more.
"""

from __future__ import annotations

import csv
import glob
import os
from pathlib import Path

from visionbench.errors import UserError
from visionbench.readers import is_image


def expand_inputs(arguments: list[str], *, allow_outside: bool = False) -> list[Path]:
    """Every file the arguments name, in the order given, each once (the same file named
    twice, even by another spelling, is kept once).

    A file is taken as it is (an unreadable, non-image or non-regular file is reported by
    the prediction, not dropped here); a folder gives every file in it, sorted (those that
    are not images become skipped rows); a pattern
    with `*`, `?` or `[` gives what it matches; a `.csv` gives the files of its `path`
    column, relative paths read from the CSV's folder, and refuses a path that leaves that
    folder unless `allow_outside`.
    """
    found: dict[Path, None] = {}
    seen: set[tuple[int, int] | Path] = set()
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.suffix.lower() == ".csv" and path.is_file():
            files = _from_csv(path, allow_outside)
        elif path.is_dir() and not path.is_symlink():
            files = _from_folder(path)
        elif path.exists() or path.is_symlink():
            files = [path]
        elif any(mark in argument for mark in "*?["):
            files = [Path(p) for p in sorted(glob.glob(argument, recursive=True))
                     if Path(p).is_file() or Path(p).is_symlink()]
            if not files:
                raise UserError(f"nothing matches {argument}")
        else:
            raise UserError(f"no such file or folder: {argument}")
        for file in files:
            identity = _identity(file)
            if identity not in seen:
                seen.add(identity)
                found[file] = None
    if not found:
        raise UserError("no images to predict: name files, folders, patterns or a CSV")
    return list(found)


def _identity(path: Path) -> tuple[int, int] | Path:
    """What makes two spellings the same file: device and inode for what exists (links
    not followed), the absolute normalised path otherwise."""
    try:
        facts = path.lstat()
    except OSError:
        return Path(os.path.normpath(path.absolute()))
    return (facts.st_dev, facts.st_ino)


def _from_folder(folder: Path) -> list[Path]:
    """Every file under `folder`: images are predicted, the others listed as skipped (a
    sort leaves them where they are), so no file is passed over without a word."""
    files = []
    for path in sorted(folder.rglob("*")):
        # rglob does not descend into linked folders; a linked image is listed, and its
        # prediction says it was not followed.
        if path.is_symlink() or path.is_file():
            files.append(path)
    return files


def not_an_image(path: Path) -> str | None:
    """Why `path` is skipped without being decoded (neither its extension nor, for a file
    without one, its first bytes are an image format's), or None.

    Example:
        >>> not_an_image(Path("notes.txt")), not_an_image(Path("scan.PNG"))
        ('not an image file (.txt): skipped', None)
    """
    if is_image(path):
        return None
    return f"not an image file ({path.suffix.lower() or 'no extension'}): skipped"


def _from_csv(path: Path, allow_outside: bool) -> list[Path]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: save it as UTF-8") from None
    if not rows or "path" not in rows[0]:
        raise UserError(f"{path} needs a 'path' column naming one image per row")
    root = path.parent.resolve()
    files = []
    for row in rows:
        if not row.get("path"):
            continue
        named = Path(row["path"])
        file = named if named.is_absolute() else path.parent / named
        if not allow_outside and not file.resolve().is_relative_to(root):
            raise UserError(f"{path}: the path {row['path']!r} leads outside the CSV's folder "
                            f"{root}: move the CSV up, or pass --allow-outside")
        files.append(file)
    return files
