"""The common raster formats (JPEG, PNG, BMP, GIF, TIFF, WebP, PPM) through Pillow, with
`rasters.open_raster`'s guards: regular files, these formats only, the pixel limit. A
16-bit PNG or TIFF stays at its full depth here; `data.decode.to_levels` maps it."""

from __future__ import annotations

from pathlib import Path

from visionbench.rasters import EXTENSIONS, open_raster
from visionbench.readers.base import READERS, Raster, Reader, Source


class PillowReader(Reader):
    """Pillow's readers of the raster formats in `rasters.RASTER_FORMATS`."""

    extensions = tuple(sorted(EXTENSIONS))

    def read(self, source: Source, *, threads: int = 1, follow_links: bool = True,
             frame: int | None = None) -> Raster:
        """The decoded first picture of the file (`frame` concerns multi-frame DICOM)."""
        image = open_raster(source, threads=threads, follow_links=follow_links)
        try:
            image.load()
        except BaseException:
            image.close()
            raise
        return Raster(image=image, format=image.format or "", mode=image.mode)

    def size(self, path: Path) -> tuple[int, int]:
        """(width, height) from the header alone."""
        with open_raster(path) as image:
            return image.size


READERS.register("pillow")(PillowReader())
