"""Sorting images into one folder per predicted class, as a scanner's output is sorted:
`DIR/<class>/`, uncertain ones into `DIR/_uncertain/`, unreadable ones into
`DIR/_unreadable/`. Nothing is ever overwritten (a clashing name gets `-1`, `-2`, ...), and a
manifest (source, destination, class, probabilities) records every file's move."""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from visionbench.errors import UserError
from visionbench.fileio import write_text
from visionbench.predict.stream import Prediction

UNCERTAIN = "_uncertain"
UNREADABLE = "_unreadable"


@dataclass
class Placement:
    """Where one file goes, and why."""

    prediction: Prediction
    folder: str
    destination: Path


def folder_name(label: str) -> str:
    """A class name as a safe folder name: no separators, no leading dot or underscore
    (those name visionbench's own folders).

    Example:
        >>> folder_name("../etc"), folder_name("Photo"), folder_name("_uncertain")
        ('etc', 'Photo', 'uncertain')
    """
    return re.sub(r"[^\w\- ]+", "_", label).strip(" ._") or "class"


def plan_sort(predictions: list[Prediction], out: Path) -> list[Placement]:
    """Each file's destination under `out`, never an existing file nor another planned one."""
    taken: set[Path] = set()
    placements = []
    for prediction in predictions:
        if prediction.error is not None:
            folder = UNREADABLE
        elif prediction.uncertain:
            folder = UNCERTAIN
        else:
            folder = folder_name(prediction.predicted or "")
        target = _free(out / folder / Path(prediction.source).name, taken)
        taken.add(target)
        placements.append(Placement(prediction, folder, target))
    return placements


def _free(path: Path, taken: set[Path]) -> Path:
    candidate, number = path, 0
    while candidate in taken or candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def sort_files(predictions: list[Prediction], out: Path, classes: list[str], *,
               move: bool = False, dry_run: bool = False) -> tuple[list[Placement], Path | None]:
    """Copy (or move) every predicted file into its folder under `out` and write the
    manifest; with `dry_run`, only the plan. Returns the placements and the manifest path."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--sort-into {out} is a file, not a folder")
    placements = plan_sort(predictions, out)
    if dry_run:
        return placements, None
    for placement in placements:
        source = Path(placement.prediction.source)
        placement.destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            if move:
                shutil.move(source, placement.destination)
            else:
                shutil.copy2(source, placement.destination)
        except OSError as exc:
            raise UserError(f"cannot {'move' if move else 'copy'} {source} to "
                            f"{placement.destination}: {exc.strerror or exc}") from None
    manifest = _free(out / "manifest.csv", set())
    write_text(manifest, _manifest(placements, classes))
    return placements, manifest


def _manifest(placements: list[Placement], classes: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "destination", "folder", "predicted",
                     *(f"prob_{c}" for c in classes), "duplicate_of_training", "error"])
    for placement in placements:
        found = placement.prediction
        writer.writerow([found.source, str(placement.destination), placement.folder,
                         found.predicted or "",
                         *("" if found.probabilities is None else f"{found.probabilities[c]:.6f}"
                           for c in classes), found.duplicate or "", found.error or ""])
    return buffer.getvalue()


def counts(placements: list[Placement]) -> dict[str, int]:
    """Files per destination folder, largest first."""
    return dict(Counter(p.folder for p in placements).most_common())
