"""Decode every image once into a uint8 array cached on disk.

The cache entry is keyed by the images' content (file bytes or array bytes), their ids and
the decode-time preprocessing, so a second run decodes nothing and any change to a file or
a setting gives a new entry. Entries are written into a temporary folder and renamed into
place when complete: an interrupted run leaves nothing a later run would trust.

File content hashes are remembered by (path, size, mtime) so a warm run does not re-read
the files either.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from visionbench.data.decode import ImageFacts, describe_failure, preprocess, read_item
from visionbench.data.sources import EncodedImages, SourceData
from visionbench.data.streamed import StreamedImages
from visionbench.errors import UserError
from visionbench.fileio import atomic_dir, write_json
from visionbench.rasters import decode_threads
from visionbench.readers import reader_for
from visionbench.schemas.data import PreprocessConfig

CACHE_FORMAT = 1
# The share of the free disk the decoded images may take by default (`data.cache.max_gb`),
# and the suffix of an entry that holds only facts, its images decoded as they are read.
DISK_SHARE = 0.5
STREAMED = "-streamed"
# Below this many images a process pool costs more to start than it saves.
POOL_THRESHOLD = 256
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
STALE_TMP_SECONDS = 3600


def default_cache_root() -> Path:
    """`$VISIONBENCH_CACHE`, else `$XDG_CACHE_HOME/visionbench`, else `~/.cache/visionbench`."""
    if os.environ.get("VISIONBENCH_CACHE"):
        return Path(os.environ["VISIONBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "visionbench"


@dataclass(frozen=True)
class CacheUsage:
    """What the decode cache holds: where, how many decoded datasets, how many bytes."""

    root: Path
    entries: int
    bytes: int


def _entries(root: Path) -> list[Path]:
    folder = root / "decoded"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def cache_usage(root: Path | None = None) -> CacheUsage:
    """The size of the decode cache at `root` (default: `default_cache_root()`)."""
    root = Path(root) if root else default_cache_root()
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0
    return CacheUsage(root, len(_entries(root)), size)


def clear_cache(root: Path | None = None) -> CacheUsage:
    """Delete every decoded dataset and the file-hash index; returns what was freed. The
    next run decodes its images again."""
    before = cache_usage(root)
    for entry in _entries(before.root):
        shutil.rmtree(entry, ignore_errors=True)
    for leftover in (before.root / "decoded").glob(".*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    (before.root / "file-hashes.json").unlink(missing_ok=True)
    # A local Ray's session files and logs (`runtime.executors.ray_folder`), and the Arrow
    # copies of Parquet datasets (`data.hf_dataset`).
    for folder in ("ray", "hf"):
        shutil.rmtree(before.root / folder, ignore_errors=True)
    return before


@dataclass
class Decoded:
    """The decoded images of one source (rows of failed images are zeros; streamed, rows
    decoded as they are read) and their facts."""

    images: np.ndarray | StreamedImages
    ok: np.ndarray
    failures: dict[str, str]
    width: np.ndarray
    height: np.ndarray
    modes: list[str]
    formats: list[str]
    exact: list[str]
    phash: np.ndarray
    key: str
    path: Path
    from_cache: bool
    seconds: float


def _decode_params(config: PreprocessConfig) -> dict[str, object]:
    return {
        "format": CACHE_FORMAT,
        "size": list(config.size) if config.size else None,
        "resize": config.resize,
        "mode": config.decode_mode,
        "exif": config.exif,
        "crop_margins": config.crop_margins,
        "margin_threshold": config.margin_threshold if config.crop_margins else None,
        # Named only when on, so entries made before the option existed stay valid.
        **({"equalize": True} if config.equalize else {}),
        **({"window": config.model_dump(mode="json")["window"]}
           if config.window != "auto" else {}),
        **({"invert_monochrome1": False} if not config.invert_monochrome1 else {}),
        **({"frame": config.frame} if config.frame is not None else {}),
    }


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(paths: list[Path], cache_root: Path) -> list[str]:
    """Content hashes of `paths`, reusing remembered ones whose size and mtime are unchanged."""
    index_path = cache_root / "file-hashes.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    hashes, changed = [], False
    for path in paths:
        try:
            stat = path.stat()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
        name = os.path.abspath(path)
        known = index.get(name)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            hashes.append(known[2])
            continue
        try:
            digest = _file_digest(path)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
        index[name] = [stat.st_size, stat.st_mtime_ns, digest]
        hashes.append(digest)
        changed = True
    if changed:
        write_json(index_path, index)
    return hashes


def cache_key(source: SourceData, config: PreprocessConfig, cache_root: Path) -> str:
    """The key of the cache entry for `source` decoded with `config`."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(json.dumps(_decode_params(config), sort_keys=True).encode())
    digest.update("\n".join(source.ids).encode())
    if source.paths is not None:
        digest.update("\n".join(file_hashes(source.paths, cache_root)).encode())
    elif source.encoded is not None:
        # The dataset's own files (its ids name the rows): a changed file is a new entry.
        digest.update("\n".join(file_hashes(source.encoded.content_files(),
                                             cache_root)).encode())
    else:
        assert source.arrays is not None
        digest.update(f"{source.arrays.shape}{source.arrays.dtype}".encode())
        digest.update(np.ascontiguousarray(source.arrays).data)
    return digest.hexdigest()


def _output_shape(source: SourceData, config: PreprocessConfig) -> tuple[int, int, int]:
    channels = 3 if config.decode_mode == "RGB" else 1
    if config.size is not None:
        return (*config.size, channels)
    if source.arrays is not None and not config.crop_margins:
        return (*source.arrays.shape[1:3], channels)
    if config.crop_margins:
        raise UserError("data.preprocess.crop_margins needs data.preprocess.size (e.g. 256)")
    sizes: dict[tuple[int, int], str] = {}
    for position, item in enumerate(source.items):
        try:
            if isinstance(item, Path):
                size = reader_for(item).size(item)
            else:
                with read_item(item, config.frame) as raster:
                    size = raster.image.size
        except Exception:
            continue
        sizes.setdefault(size, source.ids[position])
    if len(sizes) > 1:
        examples = ", ".join(f"{w}x{h}" for w, h in list(sizes)[:3])
        raise UserError(
            f"images have {len(sizes)} different sizes ({examples}, ...); "
            "set data.preprocess.size (e.g. 256 or [224, 224])"
        )
    if not sizes:
        raise UserError("no image could be read; check data.path")
    width, height = next(iter(sizes))
    return (height, width, channels)


def _die_with_parent(parent: int) -> None:
    """In a decode worker, first thing: ask Linux to kill this process when its parent
    dies, so a crashed or killed run leaves no workers behind; a parent that died while
    the worker was still starting is noticed here too (elsewhere the pool's own shutdown
    on an error in the parent is what there is)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:
        os._exit(1)


def _decode_chunk(
    items: list[Path] | np.ndarray | EncodedImages,
    positions: list[int],
    images_path: str,
    config_json: str,
    shape: tuple[int, int, int],
) -> list[tuple[int, ImageFacts | str]]:
    """Decode `items` into rows `positions` of the memory-mapped `images_path`, or, for a
    streamed entry (`images_path` empty), only learn their facts."""
    config = PreprocessConfig.model_validate_json(config_json)
    out = np.load(images_path, mmap_mode="r+") if images_path else None
    results: list[tuple[int, ImageFacts | str]] = []
    for item, position in zip(items, positions, strict=True):
        try:
            with read_item(item, config.frame) as raster:
                pixels, facts = preprocess(raster, config)
        except Exception as exc:
            results.append((position, describe_failure(exc)))
            continue
        if pixels.shape != shape:
            results.append(
                (position, f"size {facts.width}x{facts.height} differs; set data.preprocess.size")
            )
            continue
        if out is not None:
            out[position] = pixels
        results.append((position, facts))
    if out is not None:
        out.flush()
    return results


def _clean_stale(cache_root: Path) -> None:
    """Remove temporary folders that interrupted runs left behind."""
    now = time.time()
    for tmp in (cache_root / "decoded").glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


def _run_decode(
    source: SourceData,
    config: PreprocessConfig,
    images_path: Path | None,
    workers: int,
    shape: tuple[int, int, int],
) -> list[tuple[int, ImageFacts | str]]:
    items = source.items
    count = len(source.ids)
    config_json = config.model_dump_json()
    target = str(images_path) if images_path is not None else ""
    if workers <= 1 or count < POOL_THRESHOLD:
        return _decode_chunk(items, list(range(count)), target, config_json, shape)
    chunk = max(16, min(256, count // (workers * 8)))
    starts = range(0, count, chunk)
    results: list[tuple[int, ImageFacts | str]] = []
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(workers, mp_context=context, initializer=_die_with_parent,
                            initargs=(os.getpid(),)) as pool,
        # On stderr: stdout carries results (`inspect --json`), and a transient bar still
        # leaves a newline behind on a stream that is not a terminal.
        Progress(console=Console(stderr=True), transient=True) as progress,
    ):
        task = progress.add_task(f"decoding {count} images", total=count)
        futures = [
            pool.submit(
                _decode_chunk,
                items[start : start + chunk],
                list(range(start, min(start + chunk, count))),
                target,
                config_json,
                shape,
            )
            for start in starts
        ]
        try:
            for future in futures:
                part = future.result()
                results += part
                progress.advance(task, len(part))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


def disk_budget(root: Path, max_gb: float | None) -> int:
    """Bytes the decoded images may take under `root`: `max_gb`, or by default
    `DISK_SHARE` of the space free there."""
    if max_gb is not None:
        return int(max_gb * 1e9)
    root.mkdir(parents=True, exist_ok=True)
    return int(shutil.disk_usage(root).free * DISK_SHARE)


def decode(
    source: SourceData,
    config: PreprocessConfig,
    cache_root: Path | None = None,
    workers: int | None = None,
    max_gb: float | None = None,
) -> Decoded:
    """Decode `source` with `config`, or load the cached result of a previous identical
    call. When the decoded images would take more than the disk budget (`disk_budget`),
    only their facts are cached and the images are decoded as they are read
    (`data.streamed.StreamedImages`): the same pixels."""
    started = time.perf_counter()
    root = Path(cache_root) if cache_root else default_cache_root()
    (root / "decoded").mkdir(parents=True, exist_ok=True)
    key = cache_key(source, config, root)
    # A decoded entry already made is used whatever the free space now (it takes some of
    # it); a budget said in the config is obeyed.
    decoded_entry = root / "decoded" / key
    shape = None
    if source.arrays is not None or (max_gb is None and (decoded_entry / "meta.json").is_file()):
        streamed = False  # arrays are in memory already
    else:
        shape = _output_shape(source, config)
        streamed = len(source.ids) * int(np.prod(shape)) > disk_budget(root, max_gb)
    if streamed:
        key += STREAMED
    entry = root / "decoded" / key
    from_cache = (entry / "meta.json").is_file()
    if from_cache:
        try:
            return _load(entry, key, from_cache, time.perf_counter() - started, source, config)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            # A damaged entry (a disk fault, a hand edit): decode again rather than fail.
            shutil.rmtree(entry, ignore_errors=True)
            from_cache = False
    if not from_cache:
        _clean_stale(root)
        shape = shape or _output_shape(source, config)
        threads = workers or decode_threads(os.cpu_count() or 1)
        with atomic_dir(entry) as tmp:
            images_path = None
            if not streamed:
                images_path = tmp / "images.npy"
                images = np.lib.format.open_memmap(
                    images_path, mode="w+", dtype=np.uint8, shape=(len(source.ids), *shape))
                del images  # workers write through their own maps
                _reserve(images_path, root)
            results = _run_decode(source, config, images_path, threads, shape)
            _write_facts(tmp, source, results, key, shape if streamed else None)
    return _load(entry, key, from_cache, time.perf_counter() - started, source, config)


def _reserve(path: Path, root: Path) -> None:
    """Allocate the whole memory-mapped file now: on a full disk, writing through a map
    kills the process (SIGBUS) instead of raising an error."""
    if not hasattr(os, "posix_fallocate"):
        return
    size = path.stat().st_size
    try:
        with path.open("r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise UserError(f"no space left for the decode cache in {root}: "
                        f"{size / 1e6:.0f} MB needed; free space, or point VISIONBENCH_CACHE "
                        "(or data.cache_dir) at a larger disk") from None


def _write_facts(
    folder: Path,
    source: SourceData,
    results: list[tuple[int, ImageFacts | str]],
    key: str,
    streamed_shape: tuple[int, int, int] | None,
) -> None:
    count = len(source.ids)
    width = np.zeros(count, np.int32)
    height = np.zeros(count, np.int32)
    phash = np.zeros(count, np.uint64)
    ok = np.zeros(count, bool)
    modes, formats, exact = [""] * count, [""] * count, [""] * count
    failures: dict[str, str] = {}
    for position, outcome in results:
        if isinstance(outcome, str):
            failures[source.ids[position]] = outcome
            continue
        ok[position] = True
        width[position], height[position] = outcome.width, outcome.height
        phash[position] = outcome.phash
        modes[position], formats[position] = outcome.mode, outcome.format
        exact[position] = outcome.exact_hash
    np.savez(folder / "facts.npz", width=width, height=height, phash=phash, ok=ok)
    meta = {
        "format": CACHE_FORMAT,
        "key": key,
        "source": source.description,
        "ids": source.ids,
        "modes": modes,
        "formats": formats,
        "exact": exact,
        "failures": failures,
        # Set for an entry that holds no images: their decoded shape.
        **({"streamed": list(streamed_shape)} if streamed_shape is not None else {}),
    }
    (folder / "meta.json").write_text(json.dumps(meta))


def _load(entry: Path, key: str, from_cache: bool, seconds: float, source: SourceData,
          config: PreprocessConfig) -> Decoded:
    """An entry read back and checked: every part present, one row per image."""
    count = len(source.ids)
    meta = json.loads((entry / "meta.json").read_text())
    with np.load(entry / "facts.npz") as facts:
        width, height, phash, ok = (facts[k] for k in ("width", "height", "phash", "ok"))
    images: np.ndarray | StreamedImages
    if "streamed" in meta:
        if source.arrays is not None:
            raise ValueError("arrays are never streamed")
        height_width_channels = tuple(int(side) for side in meta["streamed"])
        images = StreamedImages(source.items, config, height_width_channels)
    else:
        images = np.load(entry / "images.npy", mmap_mode="r")
    if meta.get("key") != key or len(images) != count or len(ok) != count:
        raise ValueError(f"cache entry {entry} does not match its key")
    return Decoded(
        images=images,
        ok=ok,
        failures=meta["failures"],
        width=width,
        height=height,
        modes=meta["modes"],
        formats=meta["formats"],
        exact=meta["exact"],
        phash=phash,
        key=key,
        path=entry,
        from_cache=from_cache,
        seconds=seconds,
    )
