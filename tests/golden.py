"""Snapshots of whole run folders, to prove a refactoring changed no result.

`digest(folder)` reduces a run folder to what must not change: every JSON document and
CSV with its values (volatile ones — times, paths, timestamps, hardware, commits — masked),
the file list, and the report's visible text with numbers masked. `compare` checks a
folder against a stored snapshot (`tests/golden/<name>.json`); floats agree within a small
relative tolerance.

Training's floating point differs between vector units (an AMD EPYC with AVX2 and an Intel
Xeon with AVX-512 gave the quickstart's wide CNN other weights after one epoch, and one test
prediction flipped), so what training wrote is compared by value only on the numerics that
wrote the snapshot (CPU vendor, torch's CPU kernel capability, torch version). Everywhere
else the comparison still holds, by value:
- the run's shape: the same files, every document with the same keys at every depth;
- what does not depend on training: the data record, the inspection, the training images'
  hashes, the models' statuses (`DATA_FILES`);
- everything computed from saved predictions, and the report's wording: a copy of the run
  gets the snapshot's own training outputs (predictions, histories, metrics, detectors'
  documents), is evaluated again as `visionbench evaluate` does, and its leaderboard,
  comparison, evaluations and report must equal the snapshot's (`EVALUATED`).
What was not compared by value is named in a `SnapshotWarning`, never skipped silently.

The report page itself is fingerprinted too (`PAGE`): its bytes, built again from a copy of
the run whose volatile values are set to constants, with the inlined plotly.js and pictures
left out (their bytes are plotly's, Pillow's and matplotlib's); on the snapshot's numerics a
page that differs by one byte fails.

Set `VISIONBENCH_UPDATE_GOLDEN=1` to rewrite the snapshots (only after a change that is
meant to alter results, and say so in the commit).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import warnings
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from conftest import SHARED_DATA

GOLDEN = Path(__file__).parent / "golden"

# Keys whose values differ between two runs of the same code on the same data.
VOLATILE = {
    "seconds", "train_seconds", "wall_seconds_this_call", "images_per_second", "folder",
    "path", "created_at", "command", "hardware", "device", "code", "git", "platform",
    "python", "packages", "earlier", "from_cache", "key", "visionbench", "cache",
    "checksum", "arrays_checksum", "tta_seconds",
}
# Pictures are compared by presence: their bytes depend on the matplotlib build.
PICTURES = (".png", ".jpg")
REL_TOL = 1e-4
# The snapshot's entry naming the numerics that wrote it (no run file has this name).
NUMERICS = "@numerics"
# What training's floating point does not touch: compared by value on any machine.
DATA_FILES = ("data.json", "data/inspect.json", "data/training_hashes.json", "run.json")
# What `visionbench evaluate` recomputes from the saved predictions (and the report).
EVALUATED = ("leaderboard.json", "leaderboard.csv", "comparison.json", "evaluation.json",
             "report.html")


# The report page's fingerprint, beside the run's files (no run file has this name).
PAGE = "report.html#bytes"
# The parts of a page whose bytes are a library's, not the report's: the packed plotly.js
# and each inlined picture.
_LIBRARY_BYTES = re.compile(
    r'(<script id="plotly-gzip"[^>]*>)[^<]*|(src="data:image/\w+;base64,)[^"]*')


# What recipe runs hold that their snapshots, written before, may lack: additions, not
# changes (`compare`'s `new_files` and `new_keys`).
ADDITIONS = {"new_files": ("model.json",), "new_keys": ("schema_version", "checksum", "files")}


class SnapshotWarning(UserWarning):
    """Part of a snapshot could not be compared by value on this machine."""


def _evaluated(relative: str) -> bool:
    return relative in EVALUATED or relative.rsplit("/", 1)[-1] == "evaluation.json"


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<volatile>" if k in VOLATILE else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


class _Text(HTMLParser):
    """Visible text of a page, without scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def _report_text(text: str) -> list[str]:
    parser = _Text()
    parser.feed(text)
    # The data path before numbers are masked, so that one with digits is still recognised.
    parts = [part.replace(str(SHARED_DATA), "<data>") for part in parser.parts]
    # Numbers are checked through the JSON documents; the report's wording is checked here.
    return [re.sub(r"-?\d[\d,]*(\.\d+)?(e-?\d+)?", "#", part) for part in parts]


def _unrooted(value: Any, root: str, mark: str = "<root>") -> Any:
    if isinstance(value, dict):
        return {k: _unrooted(v, root, mark) for k, v in value.items()}
    if isinstance(value, list):
        return [_unrooted(v, root, mark) for v in value]
    return value.replace(root, mark) if isinstance(value, str) else value


def digest(folder: Path, root: Path | None = None, aliases: tuple[Path, ...] = ()
           ) -> dict[str, Any]:
    """What of the run folder must stay the same, keyed by relative path; the folder itself
    (and `aliases`: other places it was), the Python environment and `root` (a test's
    temporary folder) are written `<root>` wherever they appear, the shared data folder
    `<data>`."""
    found: dict[str, Any] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith(".") or "/." in relative:
            continue
        if "checkpoints/" in relative or relative.endswith(".safetensors"):
            found[relative] = "<weights>"
        elif path.suffix == ".json":
            found[relative] = _mask(json.loads(path.read_text(encoding="utf-8")))
        elif path.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
            header = rows[0] if rows else []
            skip = {i for i, name in enumerate(header) if name in VOLATILE}
            found[relative] = [[("<volatile>" if i in skip else c) for i, c in enumerate(r)]
                               for r in rows]
        elif relative == "report.html":
            found[relative] = _report_text(path.read_text(encoding="utf-8"))
        elif path.suffix in PICTURES:
            found[relative] = "<picture>"
        elif path.suffix in (".yaml", ".md", ".txt"):
            found[relative] = "<text>"
        else:
            found[relative] = "<file>"
    if (folder / "report.html").is_file() and (folder / "leaderboard.json").is_file():
        found[PAGE] = page_fingerprint(folder, (folder, *aliases, sys.prefix, root))
    for place in (folder, *aliases):
        found = _unrooted(found, str(place))
    found = _unrooted(found, sys.prefix)  # weights in site-packages
    # The studies' data lie wherever the checkout's ../shared is (CI clones elsewhere).
    found = _unrooted(found, str(SHARED_DATA), "<data>")
    return _unrooted(found, str(root)) if root is not None else found


def _same(a: Any, b: Any, where: str, problems: list[str]) -> None:
    if len(problems) > 20:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                problems.append(f"{where}.{key}: missing now")
            elif key not in a:
                problems.append(f"{where}.{key}: new")
            else:
                _same(a[key], b[key], f"{where}.{key}", problems)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            problems.append(f"{where}: {len(a)} items before, {len(b)} now")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]", problems)
        return
    if isinstance(a, str) and isinstance(b, str):
        try:
            x, y = float(a), float(b)
        except ValueError:
            if a != b:
                problems.append(f"{where}: {a!r} before, {b!r} now")
            return
        a, b = x, y
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        if not (math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9)
                or (math.isnan(a) and math.isnan(b))):
            problems.append(f"{where}: {a!r} before, {b!r} now")
        return
    if a != b:
        problems.append(f"{where}: {a!r} before, {b!r} now")


def numerics() -> str:
    """What decides training's floating point on this machine: architecture, CPU vendor,
    the vector unit torch's CPU kernels use, and the versions of torch and of the libraries
    that fit the run's small models (the shift test's PCA and logistic regression: a new
    NumPy, SciPy or scikit-learn moves its AUC in the fourth digit)."""
    import platform

    import numpy
    import scipy
    import sklearn
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text(encoding="utf-8").splitlines() if cpuinfo.is_file() else []
    vendor = next((line.split(":", 1)[1].strip() for line in lines
                   if line.startswith("vendor_id")), platform.processor())
    return (f"{platform.machine()} {vendor} {torch.backends.cpu.get_cpu_capability()} "
            f"torch {torch.__version__} numpy {numpy.__version__} scipy {scipy.__version__} "
            f"scikit-learn {sklearn.__version__}")


def _shape(value: Any) -> Any:
    """A document's keys at every depth, without its values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return "<list>" if isinstance(value, list) else "<value>"


def _constant(value: Any) -> Any:
    """`value` with every volatile value at every depth set to a constant of its type."""
    if isinstance(value, dict):
        return {k: _constant(v) if k not in VOLATILE or isinstance(v, dict | list)
                else v if v is None else type(v)() for k, v in value.items()}
    if isinstance(value, list):
        return [_constant(v) for v in value]
    return value


def page_fingerprint(folder: Path, places: tuple[Path | str | None, ...]) -> dict[str, str]:
    """The SHA-256 of the run's report page built again from a copy at a fixed path whose
    documents hold constants where they hold volatile values (times, paths), without the
    bytes of plotly.js and of the pictures; `places` (the folder, a test's temporary
    folder) are written `<root>` and the shared data folder `<data>` first."""
    from visionbench.report.build import build_report
    from visionbench.rundir.layout import RunFolder

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "runs" / "run"
        shutil.copytree(folder, copy, symlinks=True)
        for path in copy.rglob("*.json"):
            document = _constant(json.loads(path.read_text(encoding="utf-8")))
            if isinstance(document, dict):
                # A checksum is of the file as written; a document without one still reads.
                document.pop("checksum", None)
                if path.name == "metrics.json":
                    document.pop("files", None)
            path.write_text(json.dumps(document), encoding="utf-8")
        page = build_report(RunFolder(copy))
    page = _LIBRARY_BYTES.sub(lambda m: m.group(1) or m.group(2), page)
    page = page.replace(str(SHARED_DATA), "<data>")
    for place in places:
        if place is not None:
            page = page.replace(str(place), "<root>")
    return {"sha256": hashlib.sha256(page.encode("utf-8")).hexdigest()}


def _restore(snapshot: Any, raw: Any, seen: Any) -> Any:
    """The snapshot's content as a file holds it: where the snapshot masked a value (volatile,
    or a path written `<root>`), this machine's value from the same place (`raw` is this
    machine's file, `seen` its digest)."""
    if snapshot == "<volatile>":
        return raw
    if isinstance(snapshot, dict):
        raw, seen = (raw if isinstance(raw, dict) else {}), (seen if isinstance(seen, dict) else {})
        # The snapshot's keys are sorted; the file's order is what the code wrote (and what
        # the report iterates in).
        order = [key for key in raw if key in snapshot] + [k for k in snapshot if k not in raw]
        return {key: _restore(snapshot[key], raw.get(key), seen.get(key)) for key in order}
    if isinstance(snapshot, list):
        paired = isinstance(raw, list) and isinstance(seen, list) and len(raw) == len(snapshot)
        return [_restore(item, raw[i] if paired else None, seen[i] if paired else None)
                for i, item in enumerate(snapshot)]
    return raw if isinstance(snapshot, str) and snapshot == seen else snapshot


def _transplant(folder: Path, copy: Path, before: dict[str, Any], now: dict[str, Any]) -> None:
    """Write into `copy` the snapshot's training outputs: every JSON document and CSV that
    is neither data (`DATA_FILES`) nor recomputed from predictions (`EVALUATED`)."""
    for relative, content in before.items():
        source, target = folder / relative, copy / relative
        if relative in DATA_FILES or _evaluated(relative) or not source.is_file():
            continue
        if source.suffix == ".json":
            document = _restore(content, json.loads(source.read_text(encoding="utf-8")),
                                now.get(relative))
            # Checksums are of this machine's content: a document without one still reads,
            # and a model's predictions are the snapshot's now.
            document.pop("checksum", None)
            if relative.endswith("metrics.json"):
                document.pop("files", None)
            target.write_text(json.dumps(document), encoding="utf-8")
        elif source.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(source.read_text(encoding="utf-8"))))
            with target.open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows(_restore(content, rows, now.get(relative)))


def _reevaluated(folder: Path, before: dict[str, Any], now: dict[str, Any],
                 root: Path | None) -> dict[str, Any]:
    """The `EVALUATED` files of a copy of the run that holds the snapshot's training outputs,
    evaluated again from them by `visionbench evaluate`."""
    from visionbench.cli import main

    with tempfile.TemporaryDirectory() as scratch:
        # The report names the run by its folder and the one above it.
        copy = Path(scratch) / folder.parent.name / folder.name
        shutil.copytree(folder, copy, symlinks=True)
        _transplant(folder, copy, before, now)
        assert main(["evaluate", str(copy)]) == 0, f"{copy} could not be evaluated again"
        again = digest(copy, root, aliases=(folder,))
    return {relative: content for relative, content in again.items() if _evaluated(relative)}


def _without_additions(before: dict[str, Any], now: dict[str, Any], new_files: tuple[str, ...],
                       new_keys: tuple[str, ...]) -> None:
    """Drop from `now` the files and top-level keys the snapshot may lack."""
    for relative in list(now):
        if relative not in before and relative.endswith(new_files):
            del now[relative]
    for relative, content in now.items():
        if isinstance(content, dict) and isinstance(before.get(relative), dict):
            for key in new_keys:
                if key not in before[relative]:
                    content.pop(key, None)


def compare(folder: Path, name: str, *, root: Path | None = None, new_files: tuple[str, ...] = (),
            new_keys: tuple[str, ...] = ()) -> list[str]:
    """Differences between the run folder and snapshot `name` (empty: the same).

    `new_files` (relative paths or suffixes) and `new_keys` (top-level keys of JSON
    documents) may exist now that the snapshot does not have: additions, not changes.
    On other numerics than the snapshot's, what could not be compared by value is named in
    a `SnapshotWarning`.
    """
    now = digest(folder, root)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("VISIONBENCH_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        text = json.dumps({**now, NUMERICS: numerics()}, sort_keys=True,
                          separators=(",", ":"))
        path.write_text(text + "\n", encoding="utf-8")
        return []
    before = json.loads(path.read_text(encoding="utf-8"))
    written_on = before.pop(NUMERICS, None)
    _without_additions(before, now, new_files, new_keys)
    problems: list[str] = []
    if written_on == numerics():
        _same(before, now, name, problems)
        return problems
    _same(_shape(before), _shape(now), name, problems)
    again = _reevaluated(folder, before, now, root)
    _without_additions(before, again, new_files, new_keys)
    for relative in sorted(before):
        if relative in DATA_FILES and relative in now:
            _same(before[relative], now[relative], f"{name}.{relative}", problems)
        elif relative in again:
            _same(before[relative], again[relative], f"{name}.{relative}", problems)
    by_shape = [relative for relative, content in before.items()
                if relative not in DATA_FILES and not _evaluated(relative)
                and isinstance(content, dict | list)]
    warnings.warn(SnapshotWarning(
        f"snapshot {name} was made on {written_on}, this machine is {numerics()}: its "
        f"training outputs were compared by shape only ({', '.join(sorted(by_shape))}); "
        "the data, the evaluation from its predictions and the report by value"), stacklevel=2)
    return problems
