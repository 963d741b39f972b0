"""The one place a file becomes pixels: a registry of readers by format (`READERS`).

Pillow reads the common raster formats (16-bit PNG and TIFF kept at full depth), pydicom
DICOM (the `dicom` extra). The decode cache, `predict`, the app, `inspect` and the foreign
folders of the unfamiliar-image check all read through `read_raster`, and the extensions a
folder source lists, `predict` takes from a folder and the app accepts are `EXTENSIONS`,
so adding a format is one registered `Reader` here.

Which reader reads a file: the one whose `claims` recognises its first bytes (a DICOM file
named `IM0001` has no extension), else the one that owns its extension, else Pillow (which
says the content is not an image it reads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from visionbench.errors import UserError
from visionbench.readers import dicom as _dicom  # noqa: F401 - registers the DICOM reader
from visionbench.readers import pillow as _pillow  # noqa: F401 - registers the Pillow reader
from visionbench.readers.base import READERS, Raster, Reader, Source, require

__all__ = ["EXTENSIONS", "READERS", "Raster", "Reader", "extension_reader", "is_image",
           "read_raster", "reader_for", "refuse_missing"]

DEFAULT = "pillow"
EXTENSIONS: frozenset[str] = frozenset(
    suffix for _, reader in READERS.items() for suffix in reader.extensions)


def extension_reader(name: str) -> Reader | None:
    """The reader that owns the extension of file name `name`, or None."""
    suffix = os.path.splitext(str(name))[1].lower()
    for _, reader in READERS.items():
        if suffix in reader.extensions:
            return reader
    return None


def _head(source: Source) -> bytes:
    """The first bytes of a file (an open file is put back where it was)."""
    longest = max(reader.HEAD for _, reader in READERS.items())
    if isinstance(source, str | os.PathLike):
        try:
            with open(source, "rb") as handle:
                return handle.read(longest)
        except OSError:
            return b""  # the reader says why, with the file's own checks
    if not source.seekable():
        return b""
    where = source.tell()
    head = source.read(longest)
    source.seek(where)
    return head


def reader_for(source: Source, follow_links: bool = True) -> Reader:
    """The reader of `source` (a path or an open binary file): by content when a reader
    recognises it, else by extension, else Pillow. Only a regular file's content is looked
    at, through a link only with `follow_links`."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        readable = path.is_file() and (follow_links or not path.is_symlink())
        head = _head(source) if readable else b""
    else:
        head = _head(source)
    for _, reader in READERS.items():
        if reader.claims(head):
            return reader
    name = source if isinstance(source, str | os.PathLike) else getattr(source, "name", "")
    return extension_reader(str(name or "")) or READERS.get(DEFAULT)


def _listed_reader(path: Path) -> Reader | None:
    """The reader of a file found in a folder: by its extension, or, for a file without
    one, by its content; None for any other file."""
    if path.suffix:
        return extension_reader(path.name)
    if not path.is_file():
        return None  # a FIFO or a device would block or never end: never read here
    head = _head(path)
    return next((reader for _, reader in READERS.items() if reader.claims(head)), None)


def is_image(path: Path) -> bool:
    """Whether a file found in a folder is one visionbench reads: an image extension, or
    no extension and content a reader recognises (DICOM exports are often named
    `IM0001`)."""
    return _listed_reader(path) is not None


def read_raster(source: Source, *, threads: int = 1, follow_links: bool = True,
                frame: int | None = None) -> Raster:
    """The decoded picture of one file: regular files only (links only with
    `follow_links`), its format's guards, the pixel limit for `threads` concurrent decodes;
    `frame` picks one frame of a multi-frame DICOM. A `UserError` with the reason
    otherwise (a format whose extra is not installed names it)."""
    reader = require(reader_for(source, follow_links))
    return reader.read(source, threads=threads, follow_links=follow_links, frame=frame)


def refuse_missing(paths: Iterable[Path], where: str) -> None:
    """A one-line `UserError` when some of `paths` need a reader whose package is not
    installed (a folder of `.dcm` files without the `dicom` extra), before any is decoded."""
    counts: dict[str, int] = {}
    for path in paths:
        reader = _listed_reader(path)
        if reader is not None and not reader.available():
            counts[reader.missing()] = counts.get(reader.missing(), 0) + 1
    if counts:
        sentence, count = next(iter(counts.items()))
        raise UserError(f"{where} holds {count} file(s) of a format not installed: {sentence}")
