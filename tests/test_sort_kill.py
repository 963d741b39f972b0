"""`predict --sort-into` killed (SIGKILL) at many points, on one filesystem and across two,
and on a full disk: no file is lost, none is left half-written under a final name, and the
next sort into the folder finishes what the killed one left, so every file ends up placed
exactly once and listed exactly once in a manifest."""

from __future__ import annotations

import csv
import errno
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from conftest import small_tmpfs
from visionbench.errors import UserError
from visionbench.predict import sort
from visionbench.predict.stream import Prediction

CLASSES = ["even", "odd"]
FILES = 6


def _files(source: Path) -> dict[str, bytes]:
    """FILES files of distinct contents (large enough to be cut in half), by name."""
    source.mkdir(parents=True)
    contents = {}
    for index in range(FILES):
        data = bytes([index]) * 50_000 + os.urandom(16)
        (source / f"scan {index}.png").write_bytes(data)
        contents[f"scan {index}.png"] = data
    return contents


def _predictions(source: Path) -> list[Prediction]:
    found = []
    for index, path in enumerate(sorted(p for p in source.iterdir() if p.is_file())):
        label = CLASSES[index % 2]
        found.append(Prediction(source=str(path), predicted=label, uncertain=False,
                                probabilities={c: float(c == label) for c in CLASSES}))
    return found


def _hook(kill_at: str) -> None:
    """In the child: SIGKILL just before the N-th journal step (`journal:N`) or halfway
    through the N-th copy (`copy:N`)."""
    kind, _, number = kill_at.partition(":")
    calls = {"n": 0}
    if kind == "journal":
        write = sort._Journal.write

        def killing_write(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == int(number):
                os.kill(os.getpid(), signal.SIGKILL)
            return write(self, *args, **kwargs)

        sort._Journal.write = killing_write
    elif kind == "copy":
        copy = shutil.copyfileobj

        def killing_copy(source, target, length=0):
            calls["n"] += 1
            if calls["n"] == int(number):
                data = source.read()
                target.write(data[: len(data) // 2])
                target.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return copy(source, target, length)

        shutil.copyfileobj = killing_copy


def _child(source: Path, out: Path, move: bool, kill_at: str) -> None:
    if kill_at.startswith("nolinks+"):
        kill_at = kill_at.removeprefix("nolinks+")

        def no_links(*args, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")

        os.link = no_links
    _hook(kill_at)
    sort.sort_files(_predictions(source), out, CLASSES, move=move)


def _sort_killed(source: Path, out: Path, move: bool, kill_at: str) -> int:
    # A forked child: the sort's code is already imported, so each kill costs milliseconds.
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(source, out, move, kill_at))
    process.start()
    process.join(60)
    return process.exitcode


def _placed(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")
            and not p.name.startswith("manifest")]


def _manifest_rows(out: Path) -> list[dict[str, str]]:
    rows = []
    for manifest in out.glob("manifest*.csv"):
        with manifest.open(newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def _check_nothing_lost(contents: dict[str, bytes], source: Path, out: Path) -> None:
    everything = Counter(p.read_bytes() for p in _placed(out) + list(source.iterdir()))
    assert set(everything) >= set(contents.values()), "a file was lost"
    assert set(everything) <= set(contents.values()), "a partial file under a final name"


def _check_exactly_once(contents: dict[str, bytes], out: Path) -> None:
    placed = _placed(out)
    assert sorted(p.read_bytes() for p in placed) == sorted(contents.values())
    rows = [r for r in _manifest_rows(out) if r["destination"]]
    assert sorted(r["destination"] for r in rows) == sorted(str(p) for p in placed)
    assert not list(out.rglob(".sorting-*")) and not list(out.glob(".sort-*.journal"))


def _tmpfs() -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(
            tempfile.gettempdir()).st_dev:
        return Path(tempfile.mkdtemp(dir=shm, prefix="vb-sort-"))
    return None


@pytest.mark.parametrize("kill_at", ["journal:1", "journal:2", "journal:3", "journal:4",
                                     "journal:6", "journal:11", "journal:23"])
def test_a_move_killed_anywhere_on_one_filesystem_loses_nothing(tmp_path, kill_at):
    source, out = tmp_path / "in", tmp_path / "sorted"
    contents = _files(source)
    assert _sort_killed(source, out, True, kill_at) == -signal.SIGKILL
    _check_nothing_lost(contents, source, out)
    sort.sort_files(_predictions(source), out, CLASSES, move=True)
    assert not list(source.iterdir())
    _check_exactly_once(contents, out)


@pytest.mark.parametrize("kill_at", ["copy:1", "copy:4", "journal:2", "journal:3",
                                     "journal:4", "journal:5", "journal:9", "journal:28"])
def test_a_move_killed_anywhere_across_filesystems_loses_nothing(tmp_path, kill_at):
    other = _tmpfs()
    if other is None:
        pytest.skip("no second filesystem (/dev/shm as tmpfs) on this machine")
    try:
        source, out = tmp_path / "in", other / "sorted"
        contents = _files(source)
        assert _sort_killed(source, out, True, kill_at) == -signal.SIGKILL
        _check_nothing_lost(contents, source, out)
        assert not [p for p in _placed(out) if p.stat().st_size == 0]
        sort.sort_files(_predictions(source), out, CLASSES, move=True)
        assert not list(source.iterdir())
        _check_exactly_once(contents, out)
    finally:
        shutil.rmtree(other)


@pytest.mark.parametrize("kill_at", ["copy:2", "journal:3", "journal:7"])
def test_a_copy_killed_midway_leaves_complete_files_and_their_record(tmp_path, kill_at):
    source, out = tmp_path / "in", tmp_path / "sorted"
    contents = _files(source)
    assert _sort_killed(source, out, False, kill_at) == -signal.SIGKILL
    assert {p.read_bytes() for p in source.iterdir()} == set(contents.values())
    # The next sort into the folder (here of nothing) records or removes what was left.
    sort.sort_files([], out, CLASSES)
    placed = _placed(out)
    assert {p.read_bytes() for p in placed} <= set(contents.values())
    rows = [r for r in _manifest_rows(out) if r["destination"]]
    assert sorted(r["destination"] for r in rows) == sorted(str(p) for p in placed)
    assert not list(out.rglob(".sorting-*")) and not list(out.glob(".sort-*.journal"))


def test_a_full_disk_stops_the_sort_with_one_line_and_a_manifest(tmp_path, monkeypatch):
    source, out = tmp_path / "in", tmp_path / "sorted"
    contents = _files(source)
    copy, calls = shutil.copyfileobj, {"n": 0}

    def filling(source_file, target, length=0):
        calls["n"] += 1
        if calls["n"] == 3:
            target.write(source_file.read()[:1000])
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(source_file, target, length)

    monkeypatch.setattr(shutil, "copyfileobj", filling)
    with pytest.raises(UserError, match=r"no space left to copy .*files placed so far"):
        sort.sort_files(_predictions(source), out, CLASSES)
    placed = _placed(out)
    assert len(placed) == 2 and all(p.read_bytes() in contents.values() for p in placed)
    assert len(_manifest_rows(out)) == 2
    assert not list(out.rglob(".sorting-*"))


def test_a_real_full_tmpfs_ends_in_one_line_with_nothing_lost(tmp_path):
    with small_tmpfs(tmp_path / "small", "160k") as small:
        source, out = tmp_path / "in", small / "sorted"
        contents = _files(source)
        with pytest.raises(UserError, match="no space left to move"):
            sort.sort_files(_predictions(source), out, CLASSES, move=True)
        _check_nothing_lost(contents, source, out)
        placed = _placed(out)
        assert 0 < len(placed) < FILES
        rows = [r for r in _manifest_rows(out) if r["destination"]]
        assert sorted(r["destination"] for r in rows) == sorted(str(p) for p in placed)
        assert not list(out.rglob(".sorting-*"))


@pytest.mark.parametrize("move", [False, True])
def test_a_filesystem_without_hard_links_sorts_exclusively_too(tmp_path, monkeypatch, move):
    # FAT and exFAT (a USB stick a scanner writes to) refuse hard links.
    import errno as errors

    def no_links(*args, **kwargs):
        raise OSError(errors.EPERM, "Operation not permitted")

    source, out = tmp_path / "in", tmp_path / "sorted"
    contents = _files(source)
    (out / "even").mkdir(parents=True)
    (out / "even" / "scan 0.png").write_bytes(b"someone else's")
    monkeypatch.setattr(os, "link", no_links)
    sort.sort_files(_predictions(source), out, CLASSES, move=move)
    assert (out / "even" / "scan 0.png").read_bytes() == b"someone else's"
    placed = [p for p in _placed(out) if p.read_bytes() != b"someone else's"]
    assert sorted(p.read_bytes() for p in placed) == sorted(contents.values())
    assert bool(list(source.iterdir())) is not move
    assert not list(out.rglob(".sorting-*")) and not [p for p in placed if not p.stat().st_size]


@pytest.mark.parametrize("move", [False, True])
@pytest.mark.parametrize("kill_at", ["nolinks+journal:3", "nolinks+journal:4",
                                     "nolinks+journal:5", "nolinks+journal:9"])
def test_a_sort_killed_on_a_filesystem_without_hard_links_loses_nothing(tmp_path, kill_at,
                                                                         move, monkeypatch):
    source, out = tmp_path / "in", tmp_path / "sorted"
    contents = _files(source)
    assert _sort_killed(source, out, move, kill_at) == -signal.SIGKILL
    _check_nothing_lost(contents, source, out)

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    if move:
        sort.sort_files(_predictions(source), out, CLASSES, move=True)
        assert not list(source.iterdir())
        _check_exactly_once(contents, out)
    else:
        sort.sort_files([], out, CLASSES)
        placed = _placed(out)
        assert {p.read_bytes() for p in placed} <= set(contents.values())
        assert not [p for p in placed if not p.stat().st_size], "an empty reserved name"
        rows = [r for r in _manifest_rows(out) if r["destination"]]
        assert sorted(r["destination"] for r in rows) == sorted(str(p) for p in placed)
