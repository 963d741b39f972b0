"""What a reader gives back (`Raster`), what a reader is (`Reader`), and the registry of
readers by format."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

from PIL import Image

from visionbench.errors import UserError
from visionbench.registry import Registry

# A path or an open binary file (an upload): what every reader reads.
Source = str | os.PathLike[str] | IO[bytes]


@dataclass
class Raster:
    """One picture as its file holds it, before the mapping to the 0-255 levels the cache
    stores.

    `image` is a Pillow image: 8-bit modes as they are, or grey values wider than 8 bits
    (a 16-bit PNG's `I;16`, a DICOM's values after its rescale as `F`), which
    `data.decode.to_levels` maps with `data.preprocess.window`. `window` is the (center,
    width) the file itself suggests (DICOM's Window Center/Width), `monochrome1` that the
    file stores its grey levels inverted (DICOM MONOCHROME1: the lowest value is white).
    """

    image: Image.Image
    format: str
    mode: str
    window: tuple[float, float] | None = None
    monochrome1: bool = False

    @classmethod
    def of(cls, image: Image.Image) -> Raster:
        """A picture already in memory (a Pillow image a caller made) as a raster."""
        return cls(image=image, format=image.format or "", mode=image.mode)

    def close(self) -> None:
        """Release the image's file, if it still holds one."""
        self.image.close()

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Reader:
    """A file format visionbench reads: its extensions, how to recognise its content, the
    optional extra that installs what it needs, and `read`."""

    extensions: ClassVar[tuple[str, ...]] = ()
    # The Python package the reader imports, and the extra of visionbench that installs it
    # (None: always installed).
    package: ClassVar[str | None] = None
    extra: ClassVar[str | None] = None
    # The bytes `claims` looks at, from the start of the file.
    HEAD: ClassVar[int] = 132

    def claims(self, head: bytes) -> bool:
        """Whether a file starting with `head` is in this format whatever its name."""
        return False

    def available(self) -> bool:
        """Whether the packages this reader needs are installed."""
        return self.package is None or importlib.util.find_spec(self.package) is not None

    def missing(self) -> str:
        """The sentence for a file of this format when its package is not installed."""
        return (f"reading {self.extensions[0]} files needs the {self.extra} extra: pip "
                f"install 'visionbench[{self.extra}]'")

    def read(self, source: Source, *, threads: int = 1, follow_links: bool = True,
             frame: int | None = None) -> Raster:
        """The picture of `source`, decoded; a `UserError` with the reason otherwise."""
        raise NotImplementedError

    def size(self, path: Path) -> tuple[int, int]:
        """(width, height) of the picture in `path`, reading as little as the format lets."""
        with self.read(path) as raster:
            return raster.image.size


READERS: Registry[Reader] = Registry("image reader")


def require(reader: Reader) -> Reader:
    """`reader` if its packages are installed; else a `UserError` naming the extra."""
    if not reader.available():
        raise UserError(reader.missing())
    return reader
