"""Sorting images into one folder per predicted class, as a scanner's output is sorted:
`DIR/<class>/`, images unlike the training images into `DIR/_unfamiliar/`, uncertain ones
into `DIR/_uncertain/`, unreadable ones into `DIR/_unreadable/`, with a manifest (source,
destination, class, probabilities).

What may go wrong and what holds then:
- Nothing is ever overwritten, even by another sort running into the same folder at the
  same time: each file is first written whole under a temporary name in its destination
  folder and then hard-linked to its final name, which fails if the name exists (the next
  suffix `-1`, `-2`, ... is taken; on FAT or exFAT, which have no hard links, an exclusive
  rename does the same). A reader never sees a partial file under a final name.
- A move removes the source only once the destination is complete and recorded.
- The manifest is written row by row as each file is placed (created exclusively, flushed
  per row), so a kill leaves a record of everything placed before it. Each file is first
  noted in a journal (`.sort-*.journal`, locked while its sort runs); the next sort into
  the folder finishes what a killed one left half done (a move whose copy is complete
  removes its source; a temporary file is removed) and adds those rows to its manifest.
- Only regular files are placed: links are never followed (copying a link to a private
  file would copy the file), devices and FIFOs are never read; such files are listed in
  the manifest as skipped, with the reason. A class folder that is a link, or that resolves
  outside the sort folder, is refused before anything is placed.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import errno
import fcntl
import io
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from visionbench import csvcells
from visionbench.errors import UserError
from visionbench.predict.stream import Prediction
from visionbench.rasters import regular_file_problem

UNCERTAIN = "_uncertain"
UNFAMILIAR = "_unfamiliar"
UNREADABLE = "_unreadable"
SKIPPED = "_skipped"
JOURNAL_GLOB = ".sort-*.journal"
# Longest file name most filesystems take; a suffix must not push a name past it.
NAME_MAX = 255


@dataclass
class Placement:
    """Where one file goes, and why (`folder` is SKIPPED for a file left where it is)."""

    prediction: Prediction
    folder: str
    destination: Path | None
    skipped: str | None = None


def folder_name(label: str) -> str:
    """A class name as a safe folder name: no separators, no leading dot or underscore
    (those name visionbench's own folders).

    Example:
        >>> folder_name("../etc"), folder_name("Photo"), folder_name("_uncertain")
        ('etc', 'Photo', 'uncertain')
    """
    return re.sub(r"[^\w\- ]+", "_", label).strip(" ._") or "class"


def _folder(prediction: Prediction) -> str:
    if prediction.error is not None:
        return UNREADABLE
    # Unlike every training image: its class is a guess whatever its probability.
    if prediction.unfamiliar:
        return UNFAMILIAR
    if prediction.uncertain:
        return UNCERTAIN
    return folder_name(prediction.predicted or "")


def _named(path: Path, number: int) -> Path:
    """`path` with suffix `-number`, its stem shortened so the name stays within NAME_MAX
    bytes."""
    if number == 0:
        return path
    tail = f"-{number}{path.suffix}"
    stem = path.stem
    while len((stem + tail).encode("utf-8", "surrogateescape")) > NAME_MAX:
        stem = stem[:-1]
    return path.with_name(stem + tail)


def plan_sort(predictions: list[Prediction], out: Path) -> list[Placement]:
    """Each file's intended destination under `out` (free when planned; placing takes the
    next free name if another process took it since), or why it is skipped."""
    taken: set[Path] = set()
    placements = []
    for prediction in predictions:
        problem = (prediction.error if prediction.skipped else
                   regular_file_problem(Path(prediction.source), follow_links=False))
        if problem is not None:
            placements.append(Placement(prediction, SKIPPED, None, problem))
            continue
        folder = _folder(prediction)
        path, number = out / folder / Path(prediction.source).name, 0
        while _named(path, number) in taken or os.path.lexists(_named(path, number)):
            number += 1
        taken.add(_named(path, number))
        placements.append(Placement(prediction, folder, _named(path, number)))
    return placements


def _check_folders(out: Path, folders: set[str]) -> None:
    """Refuse a sort folder, or a class folder in it, that is a link or leads elsewhere."""
    if out.is_symlink():
        raise UserError(f"--sort-into {out} is a link: name the folder it points to")
    if out.exists() and not out.is_dir():
        raise UserError(f"--sort-into {out} is a file, not a folder")
    root = out.resolve()
    for folder in sorted(folders):
        path = out / folder
        if path.is_symlink() or (path.exists() and path.resolve() != root / folder):
            raise UserError(f"{path} is a link: remove it (sorted files must stay inside "
                            f"{out})")
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is a file, not a folder: move it away")


def _copy_whole(source: Path, folder: Path, journal: _Journal) -> Path:
    """A complete copy of regular file `source` under a temporary name in `folder` (the
    name journalled first, so a kill mid-copy leaves nothing a later sort cannot remove)."""
    name = str(folder / f".sorting-{secrets.token_hex(8)}.tmp")
    journal.write(source, temporary=name)
    handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(handle, "wb") as target, _read_regular(source) as data:
            shutil.copyfileobj(data, target, 1024 * 1024)
            target.flush()
            os.fsync(target.fileno())
        shutil.copystat(source, name, follow_symlinks=False)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _read_regular(source: Path) -> IO[bytes]:
    """`source` opened for reading without following a link or blocking on a FIFO, and
    only if it is a regular file."""
    descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(errno.EINVAL, "not a regular file")
    return os.fdopen(descriptor, "rb")


# What a filesystem without hard links (FAT, exFAT, some network shares) answers os.link.
NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def _rename_noreplace(old: Path, new: Path) -> None:
    """Rename `old` to `new` unless `new` exists (FileExistsError), atomically: Linux's
    renameat2 with RENAME_NOREPLACE, which FAT and exFAT support though they have no hard
    links."""
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename is None:
        raise OSError(errno.ENOSYS, "this system has no renameat2")
    at_cwd, no_replace = -100, 1
    if rename(at_cwd, os.fsencode(old), at_cwd, os.fsencode(new), no_replace) != 0:
        code = ctypes.get_errno()
        raise FileExistsError(code, os.strerror(code), str(new)) if code == errno.EEXIST \
            else OSError(code, os.strerror(code), str(new))


def _link_free(made: Path, wanted: Path, journal: _Journal, source: Path) -> Path:
    """Give the file `made` the first free name from `wanted` on (-1, -2, ...): a hard link
    never replaces an existing name, so a concurrent sort's file survives. Where the
    filesystem has no hard links, an exclusive rename does the same (each name tried is
    journalled first, so a kill between the rename and its record is finished later)."""
    number = 0
    while True:
        candidate = _named(wanted, number)
        try:
            os.link(made, candidate, follow_symlinks=False)
        except FileExistsError:
            number += 1
            continue
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
            journal.write(source, attempt=str(candidate))
            try:
                _rename_noreplace(made, candidate)
            except FileExistsError:
                number += 1
                continue
        return candidate


def _place(source: Path, wanted: Path, move: bool, journal: _Journal) -> Path:
    """Put `source` at `wanted` (or the next free name); returns where it went."""
    wanted.parent.mkdir(parents=True, exist_ok=True)
    if move:
        # On one filesystem a move is one more name for the same file, then the old one
        # goes: no copy, never a partial file. Across filesystems the link fails (EXDEV).
        with contextlib.suppress(OSError):
            placed = _link_free(source, wanted, journal, source)
            journal.write(source, placed=str(placed))
            return placed
    made = _copy_whole(source, wanted.parent, journal)
    try:
        placed = _link_free(made, wanted, journal, source)
        journal.write(source, placed=str(placed))
    finally:
        made.unlink(missing_ok=True)
    return placed


class _Journal:
    """What a sort is doing, one flushed JSON line per step, locked while it runs, so the
    next sort into the folder can finish what a killed one left (see the module
    docstring). Steps of one file: `begin` (its manifest row, where it should go),
    `temporary` (a whole copy exists there), `placed` (it has its final name), `recorded`
    (its row is in the manifest), `done` (a moved file's source is removed)."""

    def __init__(self, out: Path, manifest: Path) -> None:
        handle, name = tempfile.mkstemp(prefix=".sort-", suffix=".journal", dir=out)
        self.path, self.handle = Path(name), os.fdopen(handle, "w", encoding="utf-8")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        self.write(manifest, manifest=True)

    def write(self, source: Path, **step: object) -> None:
        """One step of the file `source`."""
        self.handle.write(json.dumps({"source": str(source), **step}) + "\n")
        self.handle.flush()

    def close(self) -> None:
        """The sort ended: nothing is left to finish."""
        self.handle.close()
        self.path.unlink(missing_ok=True)


def _finish_interrupted(out: Path, manifest: _Manifest) -> int:
    """Finish the sorts into `out` that were killed: returns the files recorded now."""
    finished = 0
    for journal in sorted(out.glob(JOURNAL_GLOB)):
        try:
            handle = journal.open("r", encoding="utf-8")
        except OSError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a sort that is still running
            steps: dict[str, dict] = {}
            for line in handle:
                if line.endswith("\n"):  # a line cut by the kill was never acted on
                    entry = json.loads(line)
                    steps.setdefault(entry.pop("source"), {}).update(entry)
            # The killed sort's manifest: rows it wrote are not written again.
            recorded = _destinations(next((Path(name) for name, entry in steps.items()
                                           if entry.get("manifest")), None))
            finished += sum(_finish_entry(Path(source), entry, manifest, recorded)
                            for source, entry in steps.items())
        journal.unlink(missing_ok=True)
    return finished


def _found_placed(source: Path, entry: dict) -> Path | None:
    """Where a file was placed before the kill, if it was: the name recorded, or the free
    name holding the very file (the whole copy, or for a move the source itself)."""
    if entry.get("placed"):
        return Path(entry["placed"])
    made = Path(entry["temporary"]) if entry.get("temporary") else None
    if entry.get("attempt"):
        # No hard links: the last name tried holds the file once the file it renames (the
        # whole copy, or a moved source) is gone from where it was.
        attempt, pending = Path(entry["attempt"]), made if made is not None else source
        return attempt if not pending.exists() and attempt.is_file() else None
    original = made if made is not None and made.is_file() else (
        source if entry["move"] and source.is_file() else None)
    if original is None:
        return None
    number, wanted = 0, Path(entry["wanted"])
    while os.path.lexists(candidate := _named(wanted, number)):
        if os.path.samefile(candidate, original) and candidate != original:
            return candidate
        number += 1
    return None


def _destinations(manifest: Path | None) -> set[str]:
    """The destinations a manifest lists (a row cut by a kill counts as unwritten)."""
    if manifest is None or not manifest.is_file():
        return set()
    with manifest.open(newline="", encoding="utf-8") as handle:
        text = handle.read()
    complete = text[: text.rfind("\n") + 1]
    return {csvcells.unescape(row["destination"])
            for row in csv.DictReader(io.StringIO(complete)) if row.get("destination")}


def _finish_entry(source: Path, entry: dict, manifest: _Manifest, recorded: set[str]) -> int:
    if entry.get("done") or "wanted" not in entry:
        return 0
    placed = _found_placed(source, entry)
    if entry.get("temporary"):
        Path(entry["temporary"]).unlink(missing_ok=True)
    if placed is None or not placed.is_file():
        return 0  # nothing was placed: the source is where it was
    written = bool(entry.get("recorded")) or str(placed) in recorded
    if not written:
        row = entry["row"]
        row[1] = str(placed)
        manifest.write(row)
    if entry["move"] and source.is_file() and not source.is_symlink():
        # The placed file is the source's whole copy (or the same file): the move was cut
        # between placing and removing.
        source.unlink()
    return int(not written)


class _Manifest:
    """The manifest CSV, created exclusively, one flushed row per placed file."""

    def __init__(self, out: Path, classes: list[str]) -> None:
        number = 0
        while True:
            path = _named(out / "manifest.csv", number)
            try:
                self.handle = path.open("x", encoding="utf-8", newline="")
                break
            except FileExistsError:
                number += 1
        self.path = path
        self.writer = csvcells.Writer(self.handle)
        self.write(["source", "destination", "folder", "predicted",
                    *(f"prob_{c}" for c in classes), "duplicate_of_training", "skipped",
                    "error"])

    def write(self, row: list[object]) -> None:
        """One more row, on disk before the next file is touched."""
        self.writer.writerow(row)
        self.handle.flush()

    def close(self) -> None:
        """Close the file."""
        self.handle.close()


def _row(placement: Placement, classes: list[str]) -> list[object]:
    found = placement.prediction
    return [found.source, str(placement.destination or ""), placement.folder,
            found.predicted or "",
            *("" if found.probabilities is None else f"{found.probabilities[c]:.6f}"
              for c in classes), found.duplicate or "", placement.skipped or "",
            found.error or ""]


def sort_files(predictions: list[Prediction], out: Path, classes: list[str], *,
               move: bool = False, dry_run: bool = False) -> tuple[list[Placement], Path | None]:
    """Copy (or move) every predicted file into its folder under `out` and write the
    manifest as it goes; with `dry_run`, only the plan. Returns the placements (with the
    destinations actually taken) and the manifest path."""
    placements = plan_sort(predictions, out)
    _check_folders(out, {p.folder for p in placements if p.destination is not None})
    if dry_run:
        return placements, None
    try:
        out.mkdir(parents=True, exist_ok=True)
        manifest = _Manifest(out, classes)
    except OSError as exc:
        raise UserError(f"cannot write into --sort-into {out}: {exc.strerror or exc}"
                        ) from None
    try:
        _finish_interrupted(out, manifest)
        journal = _Journal(out, manifest.path)
        for placement in placements:
            _sort_one(placement, classes, move, journal, manifest)
        journal.close()
    finally:
        manifest.close()
    return placements, manifest.path


def _sort_one(placement: Placement, classes: list[str], move: bool, journal: _Journal,
              manifest: _Manifest) -> None:
    source, wanted = Path(placement.prediction.source), placement.destination
    if wanted is not None:
        journal.write(source, wanted=str(wanted), move=move, row=_row(placement, classes))
        try:
            placement.destination = _place(source, wanted, move, journal)
        except FileNotFoundError:
            # Moved or removed since it was predicted (by another sort, say): left out.
            placement.folder, placement.destination = SKIPPED, None
            placement.skipped = "no such file: moved or removed during the sort"
        except OSError as exc:
            raise UserError(_failure(exc, source, wanted, move)) from None
    manifest.write(_row(placement, classes))
    journal.write(source, recorded=True)
    if move and placement.destination is not None:
        source.unlink(missing_ok=True)
        journal.write(source, done=True)


def _failure(exc: OSError, source: Path, destination: Path, move: bool) -> str:
    verb = "move" if move else "copy"
    if exc.errno == errno.ENOSPC:
        return (f"no space left to {verb} {source} to {destination.parent}: free space and "
                "run the same command again (the files placed so far are in the manifest)")
    return f"cannot {verb} {source} to {destination}: {exc.strerror or exc}"


def counts(placements: list[Placement]) -> dict[str, int]:
    """Files per destination folder (skipped files under `_skipped`), largest first."""
    return dict(Counter(p.folder for p in placements).most_common())
