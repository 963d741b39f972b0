"""The one way a file becomes a Pillow image: raster formats only, and a pixel limit.

Pillow picks its decoder from a file's content, not its name, and some of its plugins run
other programs (its EPS plugin runs Ghostscript on a `scan.png` that holds PostScript).
Every reader in visionbench (the decode cache, predict, the app, the report's pictures)
opens files here, with `formats=` restricted to the raster formats below, so no content can
reach a plugin that runs anything. The same table gives the file extensions visionbench
accepts, so the two never disagree.

The pixel limit bounds what one decode may allocate: a small file can declare a huge
image (a 13,000² PNG of 493 kB decodes to 1.35 GB), so the declared size is checked
before any pixel is decoded, against the memory the decoding threads may use between them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from PIL import (  # noqa: F401 - registering the plugins of the formats below
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    PpmImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from visionbench.errors import UserError

# Pillow format names and the extensions visionbench reads them under. Pillow's JPEG
# reader also opens the multi-picture JPEGs of many phones (as MPO: the first picture).
RASTER_FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg"),
    "PNG": (".png",),
    "BMP": (".bmp",),
    "GIF": (".gif",),
    "TIFF": (".tif", ".tiff"),
    "WEBP": (".webp",),
    "PPM": (".ppm", ".pgm", ".pbm"),
}
EXTENSIONS: frozenset[str] = frozenset(
    suffix for suffixes in RASTER_FORMATS.values() for suffix in suffixes)

# Bytes one decoded pixel may take at its widest while a reader converts it (RGBA or a
# 32-bit integer/float image, plus the converted copy).
BYTES_PER_PIXEL = 8
# The share of physical memory the decoding threads of one process may use between them,
# and never more than this many bytes.
MEMORY_SHARE = 0.125
MEMORY_CEILING = 2 * 1024**3
# Whatever the memory, an image up to this many pixels is always read (a 24-megapixel
# camera photo, an 8k x 4k scan), and threads are cut before the limit would fall below it.
PIXEL_FLOOR = 40_000_000


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def decode_budget() -> int:
    """Bytes the decoding threads of one process may hold between them."""
    return int(min(_physical_memory() * MEMORY_SHARE, MEMORY_CEILING))


def decode_threads(wanted: int) -> int:
    """At most `wanted` threads, and no more than the memory lets each decode an image of
    `PIXEL_FLOOR` pixels at once.

    Example:
        >>> decode_threads(1)
        1
    """
    by_memory = max(1, decode_budget() // (PIXEL_FLOOR * BYTES_PER_PIXEL))
    return max(1, min(wanted, by_memory))


def pixel_limit(threads: int = 1) -> int:
    """The largest image (in pixels) one of `threads` concurrent decodes may read: its
    share of the decoding budget, never below `PIXEL_FLOOR`."""
    share = decode_budget() // max(1, threads) // BYTES_PER_PIXEL
    return max(PIXEL_FLOOR, share)


def regular_file_problem(path: Path, *, follow_links: bool) -> str | None:
    """Why `path` must not be read as an image file, or None: only regular files are (a
    FIFO would hang the reader, `/dev/zero` never ends), and links only when
    `follow_links` (data a config names may be a folder of links; files a user drops or
    lists are not followed)."""
    return _examined(path, follow_links)[0]


def _examined(path: Path, follow_links: bool) -> tuple[str | None, int]:
    """`regular_file_problem` and the file's size (one stat)."""
    try:
        facts = path.stat() if follow_links else path.lstat()
    except FileNotFoundError:
        return ("no such file" if not path.is_symlink() else "a broken or looping link"), 0
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}", 0
    if stat.S_ISLNK(facts.st_mode):
        if not path.exists():
            return "a broken or looping link", 0
        return "a symbolic link, not followed: name the file it points to", 0
    if stat.S_ISDIR(facts.st_mode):
        return "a folder, not an image file", 0
    if not stat.S_ISREG(facts.st_mode):
        return "not a regular file (a device, FIFO or socket)", 0
    return None, facts.st_size


def open_raster(source: str | os.PathLike[str] | IO[bytes], *, threads: int = 1,
                formats: tuple[str, ...] | None = None,
                follow_links: bool = True) -> Image.Image:
    """Open an image file (a path or a binary file) for decoding: only a regular file (a
    link only with `follow_links`), only the raster formats visionbench reads (or the
    narrower `formats`), and only if its declared size fits the pixel limit for `threads`
    concurrent decodes. Nothing is decoded yet; the caller loads.

    Raises `UserError` for anything else, with the reason; Pillow's own errors (damaged
    files) pass through for the caller to describe.
    """
    if isinstance(source, str | os.PathLike):
        problem, size = _examined(Path(source), follow_links)
        if problem is not None:
            raise UserError(problem)
        if size == 0:
            raise UserError("empty file")
    allowed = formats or tuple(RASTER_FORMATS)
    try:
        image = Image.open(source, formats=allowed)
    except Image.UnidentifiedImageError:
        raise UserError("not an image in a format visionbench reads "
                        f"({', '.join(f for f in allowed if RASTER_FORMATS.get(f))})") from None
    except Image.DecompressionBombError as exc:
        raise UserError(f"image is over the limit for decoding ({str(exc).rstrip('.')}): "
                        "downscale it first") from None
    limit = pixel_limit(threads)
    if image.width * image.height > limit:
        width, height = image.size
        image.close()
        raise UserError(f"image of {width}x{height} pixels is over the limit of "
                        f"{limit:,} pixels for decoding: downscale it first")
    return image
