"""What `visionbench predict` was given, as a list of image files: files, folders (searched
recursively, links not followed), glob patterns, and CSV files with a `path` column."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

from visionbench.data.sources import IMAGE_EXTENSIONS
from visionbench.errors import UserError


def expand_inputs(arguments: list[str]) -> list[Path]:
    """Every file the arguments name, in the order given, each once.

    A file is taken as it is (an unreadable or non-image file is reported by the
    prediction, not dropped here); a folder gives its image files, sorted; a pattern with
    `*`, `?` or `[` gives what it matches; a `.csv` gives the files of its `path` column,
    relative paths read from the CSV's folder.
    """
    found: dict[Path, None] = {}
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.suffix.lower() == ".csv" and path.is_file():
            files = _from_csv(path)
        elif path.is_dir():
            files = _from_folder(path)
        elif path.exists() or path.is_symlink():
            files = [path]
        elif any(mark in argument for mark in "*?["):
            files = [Path(p) for p in sorted(glob.glob(argument, recursive=True))
                     if Path(p).is_file()]
            if not files:
                raise UserError(f"nothing matches {argument}")
        else:
            raise UserError(f"no such file or folder: {argument}")
        found.update(dict.fromkeys(files))
    if not found:
        raise UserError("no images to predict: name files, folders, patterns or a CSV")
    return list(found)


def _from_folder(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        # rglob does not descend into linked folders; a linked file is taken as it is.
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(path)
    return files


def _from_csv(path: Path) -> list[Path]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: save it as UTF-8") from None
    if not rows or "path" not in rows[0]:
        raise UserError(f"{path} needs a 'path' column naming one image per row")
    return [(path.parent / row["path"]) if not Path(row["path"]).is_absolute()
            else Path(row["path"]) for row in rows if row.get("path")]
