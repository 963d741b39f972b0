"""Which dropped files the app reads: at most so many at a time, each under a size limit,
with an image file's extension; every refused file gets its own sentence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from visionbench import display
from visionbench.readers import EXTENSIONS


@dataclass(frozen=True)
class UploadLimits:
    """How much one drop may hold: `files` images of at most `megabytes` each, with one of
    the image extensions visionbench reads."""

    files: int = 50
    megabytes: int = 20
    extensions: frozenset[str] = EXTENSIONS

    @property
    def formats(self) -> list[str]:
        """The accepted extensions without their dot, as the upload widget takes them."""
        return sorted(e.lstrip(".") for e in self.extensions)


def screen_uploads(uploads: Sequence[tuple[str, int]], limits: UploadLimits
                   ) -> tuple[list[int], list[str]]:
    """The positions of the uploads (name, size in bytes) to read, and one message per
    refused upload saying why and what to do.

    Example:
        >>> accepted, refused = screen_uploads(
        ...     [("a.png", 10), ("notes.txt", 10), ("b.png", 10**8)], UploadLimits())
        >>> accepted
        [0]
        >>> refused[1]
        'b.png: not read: 100.0 MB is over the 20 MB limit per image (shrink or crop it)'
    """
    accepted, refused = [], []
    for position, (name, size) in enumerate(uploads):
        suffix = PurePath(name).suffix.lower()
        if suffix not in limits.extensions:
            kind = suffix or "a file without an extension"
            refused.append(f"{name}: not read: {kind} is not an image format the app reads "
                           f"({', '.join(limits.formats)})")
        elif size > limits.megabytes * 1_000_000:
            refused.append(f"{name}: not read: {display.megabytes(size)} is over the "
                           f"{limits.megabytes} MB limit per image (shrink or crop it)")
        elif len(accepted) >= limits.files:
            refused.append(f"{name}: not read: at most {limits.files} images at a time "
                           "(drop the rest next, or use `visionbench predict` for a folder)")
        else:
            accepted.append(position)
    return accepted, refused
