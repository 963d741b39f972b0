"""Pictures of a run folder inlined in the page."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from visionbench.errors import UserError
from visionbench.rasters import open_raster
from visionbench.report.markup import Html


def inline_picture(path: Path, alt: str) -> Html:
    """The picture inlined in the smaller of two encodings: PNG with a 256-colour palette
    (charts, grids and heat maps: flat colours) or JPEG at quality 80 (photo-like pictures).
    Both are deterministic, so the same folder gives the same bytes. The palette comes from
    the fast octree: median cut took half the report's time on the quickstart's pictures
    and gave larger files. Nothing when the picture is absent."""
    if not path.is_file():
        return Html()
    try:
        with open_raster(path, formats=("PNG", "JPEG")) as picture:
            rgb = picture.convert("RGB")
        palette = io.BytesIO()
        rgb.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            palette, "PNG", optimize=True)
        photo = io.BytesIO()
        rgb.save(photo, "JPEG", quality=80, optimize=True)
    except (OSError, ValueError, UserError) as exc:
        # A run folder from someone else may hold a damaged or hostile picture.
        return Html('<div class="warn">{} could not be shown: {}</div>').format(
            path.name, type(exc).__name__)
    kind, encoded = min((("png", palette.getvalue()), ("jpeg", photo.getvalue())),
                        key=lambda pair: len(pair[1]))
    return Html('<img alt="{}" src="data:image/{};base64,{}">').format(
        alt, kind, base64.b64encode(encoded).decode("ascii"))
