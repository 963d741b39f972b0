"""DICOM files through pydicom (the `dicom` extra): the stored values rescaled to the
modality's units (Rescale Slope/Intercept, or a Modality LUT), the file's own display window
kept beside them, MONOCHROME1 marked for inversion, colour converted to RGB; one frame of a
multi-frame file when `data.preprocess.frame` names it.

Compressed transfer syntaxes are decoded by the plugins pydicom finds: its own RLE decoder,
and with the `dicom` extra pylibjpeg's (JPEG, JPEG-LS, JPEG 2000). A syntax no installed
plugin decodes is refused in one line naming what to install. Nothing here runs another
program: pydicom's Pillow decoder, when pydicom picks it, opens only JPEG and JPEG 2000.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visionbench.errors import UserError
from visionbench.rasters import pixel_limit, regular_file_problem
from visionbench.readers.base import READERS, Raster, Reader, Source

# The bytes of a DICOM file's preamble, then its marker.
PREAMBLE = 128
MARKER = b"DICM"
# Pixel data elements: integer, float and double float pixels.
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Elements larger than this are read only when used (the pixel data, until the size check).
DEFER = "512 KB"
# Colour interpretations pydicom converts to RGB (YBR) or that are RGB already.
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")
GREY = ("MONOCHROME1", "MONOCHROME2")


def _pydicom() -> Any:
    """pydicom, or the one line that says how to install it."""
    try:
        import pydicom
    except ImportError:
        raise UserError(DicomReader().missing()) from None
    return pydicom


def _first(value: Any) -> float | None:
    """A number from a DICOM value that may hold several (Window Center often does)."""
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        number = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and np.isfinite(number) else None


def file_window(dataset: Any) -> tuple[float, float] | None:
    """The (center, width) the file gives for display, or None (absent, or a width < 1)."""
    center = _first(dataset.get("WindowCenter"))
    width = _first(dataset.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return None
    return center, width


def _open_dataset(source: Source, follow_links: bool, header_only: bool = False) -> Any:
    pydicom = _pydicom()
    if isinstance(source, str | os.PathLike):
        problem = regular_file_problem(Path(source), follow_links=follow_links)
        if problem is not None:
            raise UserError(problem)
        if Path(source).stat().st_size == 0:
            raise UserError("empty file")
    try:
        return pydicom.dcmread(source, defer_size=DEFER, stop_before_pixels=header_only)
    except pydicom.errors.InvalidDicomError:
        raise UserError("not a DICOM file (no DICM marker after the 128-byte preamble)"
                        ) from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"damaged DICOM file: {text}") from None


def _decoder_problem(dataset: Any) -> str | None:
    """Why the pixel data of `dataset` cannot be decoded here, or None."""
    from pydicom.pixels import get_decoder

    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None or not syntax.is_compressed:
        return None
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return f"compressed with {syntax.name}, which no DICOM decoder here reads"
    if not decoder.is_available:
        return (f"compressed with {syntax.name}: install a decoder, pip install "
                "'visionbench[dicom]' (pydicom with pylibjpeg, pylibjpeg-libjpeg and "
                "pylibjpeg-openjpeg)")
    return None


def _to_rgb8(values: np.ndarray, bits: int) -> np.ndarray:
    """Colour samples of `bits` bits as 8-bit RGB (16-bit colour is rare: scaled down)."""
    if values.dtype == np.uint8:
        return values
    top = float(2 ** max(bits, 1) - 1)
    return np.clip(np.rint(values.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


class DicomReader(Reader):
    """DICOM images (`.dcm`, `.dicom`, or any file with the DICM marker)."""

    extensions = (".dcm", ".dicom")
    package = "pydicom"
    extra = "dicom"

    def claims(self, head: bytes) -> bool:
        """The DICM marker after the 128-byte preamble (hospital exports often have no
        extension at all)."""
        return head[PREAMBLE:PREAMBLE + len(MARKER)] == MARKER

    def size(self, path: Path) -> tuple[int, int]:
        """(Columns, Rows) from the header alone."""
        dataset = _open_dataset(path, follow_links=True, header_only=True)
        return int(dataset.get("Columns", 0)), int(dataset.get("Rows", 0))

    def read(self, source: Source, *, threads: int = 1, follow_links: bool = True,
             frame: int | None = None) -> Raster:
        """The picture of one DICOM file (one frame of a multi-frame file)."""
        from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

        dataset = _open_dataset(source, follow_links)
        if not any(keyword in dataset for keyword in PIXEL_KEYWORDS):
            kind = dataset.get("Modality") or dataset.get("SOPClassUID", "")
            raise UserError(f"a DICOM file without pixel data ({kind or 'no image'}: a "
                            "report, a plan or a waveform)")
        interpretation = str(dataset.get("PhotometricInterpretation", "")).strip()
        if interpretation not in GREY + COLOUR + ("PALETTE COLOR",):
            raise UserError(f"DICOM photometric interpretation {interpretation or 'missing'} "
                            "is not read (grey MONOCHROME1/2, RGB, YBR and PALETTE COLOR are)")
        frames = int(_first(dataset.get("NumberOfFrames")) or 1)
        if frames > 1 and frame is None:
            raise UserError(f"a multi-frame DICOM ({frames} frames): set "
                            f"data.preprocess.frame to the one to read (0 to {frames - 1})")
        if frame is not None and frames > 1 and frame >= frames:
            raise UserError(f"data.preprocess.frame {frame} is past this file's {frames} "
                            f"frames (0 to {frames - 1})")
        rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
        limit = pixel_limit(threads)
        if rows * columns > limit:
            raise UserError(f"image of {columns}x{rows} pixels is over the limit of "
                            f"{limit:,} pixels for decoding: downscale it first")
        problem = _decoder_problem(dataset)
        if problem is not None:
            raise UserError(problem)
        try:
            values = pixel_array(dataset, index=frame if frames > 1 else None)
        except (ValueError, RuntimeError, NotImplementedError, KeyError, AttributeError,
                TypeError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot decode the DICOM pixel data: {text}") from None
        bits = int(dataset.get("BitsStored", 8) or 8)
        mode = f"{interpretation} {bits}-bit"
        if interpretation == "PALETTE COLOR":
            colours = apply_color_lut(values, dataset)
            return Raster(Image.fromarray(_to_rgb8(colours, 16 if colours.dtype != np.uint8
                                                   else 8)), "DICOM", mode)
        if interpretation in COLOUR:
            return Raster(Image.fromarray(_to_rgb8(values, bits)), "DICOM", mode)
        window = file_window(dataset)
        rescaled = apply_modality_lut(values, dataset)
        # 8-bit grey levels with no window: already the levels shown, kept as they are.
        plain = (window is None and bits <= 8 and rescaled.size > 0
                 and float(rescaled.min()) >= 0 and float(rescaled.max()) <= 255
                 and np.array_equal(rescaled, np.rint(rescaled)))
        image = (Image.fromarray(rescaled.astype(np.uint8)) if plain else
                 Image.fromarray(np.ascontiguousarray(rescaled, dtype=np.float32), "F"))
        return Raster(image, "DICOM", mode, window=window,
                      monochrome1=interpretation == "MONOCHROME1")


READERS.register("dicom")(DicomReader())


def read_tags(path: Path, keywords: list[str]) -> dict[str, str]:
    """The values of DICOM attributes `keywords` in the file at `path`, as text (several
    values joined by a backslash, as DICOM writes them), read from the header alone; a
    keyword the file lacks is left out. A `UserError` when the file is not DICOM."""
    dataset = _open_dataset(path, follow_links=True, header_only=True)
    found = {}
    for keyword in keywords:
        value = dataset.get(keyword)
        if value is None or value == "":
            continue
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            text = "\\".join(str(part) for part in value)
        else:
            text = str(value)
        if text.strip():
            found[keyword] = text.strip()
    return found


def known_keyword(keyword: str) -> bool:
    """Whether `keyword` names a DICOM attribute (PatientID, StudyInstanceUID, ...)."""
    from pydicom.datadict import tag_for_keyword

    return tag_for_keyword(keyword) is not None
