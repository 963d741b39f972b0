"""Contact sheets: images in a grid, a caption above each and a heading above all, drawn
with Pillow.

The run's picture grids (error examples, label issues, explanation overlays, duplicate
pairs, class samples) were matplotlib figures with one axes per image; laying out and
rendering 25 axes took about a second a sheet, as long as training the quickstart's small
CNN (`benchmarks/profile_run.py`). Pasting the images and drawing the captions takes a few
milliseconds and gives the same picture.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visionbench.fileio import atomic_path

# PNG at zlib level 1: pictures of photographs barely compress further, and level 6 takes
# several times longer.
PNG_OPTIONS = {"compress_level": 1}
GAP = 6
MARGIN = 8
INK = (34, 34, 34)


@cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at `size` pixels (matplotlib's own font file: it covers accented class
    names and '…'), else Pillow's default font."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def tile(image: np.ndarray, side: int) -> Image.Image:
    """A uint8 (H, W, 1 or 3) image as an RGB picture whose longer side is `side`: small
    images are enlarged by nearest neighbour (pixels stay crisp, as a model sees them),
    larger ones reduced smoothly."""
    shown = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    picture = Image.fromarray(np.ascontiguousarray(shown)).convert("RGB")
    height, width = shown.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    return picture.resize(size, resample)


def jet(values: np.ndarray) -> np.ndarray:
    """The jet colour map of values in [0, 1] as float RGB in [0, 1]: dark blue, blue,
    cyan, yellow, red, dark red, in straight segments (matplotlib's jet bends at nearly the
    same points)."""
    scaled = 4.0 * np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0])
    return np.clip(1.5 - np.abs(scaled - centres), 0.0, 1.0)


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A uint8 (H, W, 1 or 3) image with a heat map of the same height and width (values in
    [0, 1]) blended over it in jet colours, as uint8 RGB."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * 255.0 * jet(heat)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _fitted(line: str, width: int, typeface: ImageFont.ImageFont | ImageFont.FreeTypeFont,
            ) -> str:
    """`line` cut at the right with '…' until it is at most `width` pixels wide."""
    if typeface.getlength(line) <= width:
        return line
    while line and typeface.getlength(line + "…") > width:
        line = line[:-1]
    return line + "…"


def contact_sheet(pictures: list[Image.Image], captions: list[str], columns: int,
                  heading: str = "", caption_size: int = 10) -> Image.Image:
    """The pictures in rows of `columns` cells on white, each under its caption (lines
    split at newlines, each cut to the cell's width), under `heading`. Cells are as large as
    the largest picture; captions of one line count take the same height everywhere."""
    cell_width = max((picture.width for picture in pictures), default=1)
    cell_height = max((picture.height for picture in pictures), default=1)
    typeface = font(caption_size)
    line_height = caption_size + 3
    caption_height = max((caption.count("\n") + 1 for caption in captions if caption),
                         default=0) * line_height
    rows = max(1, -(-len(pictures) // columns))
    heading_face = font(caption_size + 3)
    heading_height = caption_size + 3 + GAP if heading else 0
    width = 2 * MARGIN + columns * cell_width + (columns - 1) * GAP
    height = (2 * MARGIN + heading_height
              + rows * (caption_height + cell_height) + (rows - 1) * GAP)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    if heading:
        draw.text((width // 2, MARGIN), _fitted(heading, width - 2 * MARGIN, heading_face),
                  fill=INK, font=heading_face, anchor="mt")
    for index, (picture, caption) in enumerate(zip(pictures, captions, strict=True)):
        row, column = divmod(index, columns)
        left = MARGIN + column * (cell_width + GAP)
        top = MARGIN + heading_height + row * (caption_height + cell_height + GAP)
        for number, line in enumerate(caption.split("\n") if caption else []):
            draw.text((left + cell_width // 2, top + number * line_height),
                      _fitted(line, cell_width, typeface), fill=INK, font=typeface,
                      anchor="mt")
        sheet.paste(picture, (left + (cell_width - picture.width) // 2,
                              top + caption_height + (cell_height - picture.height) // 2))
    return sheet


def save_png(picture: Image.Image, path: Path) -> Path:
    """Write `picture` to `path` as PNG, atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", **PNG_OPTIONS)
    return path
