"""DICOM files for the tests: written here with pydicom, or copied from the test files the
pydicom wheel ships (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def shipped(name: str) -> Path:
    """One of the files the pydicom wheel ships (CT_small.dcm, MR_small.dcm, ...)."""
    return Path(get_testdata_file(name))


def write_dicom(path: Path, values: np.ndarray, *, photometric: str = "MONOCHROME2",
                window: tuple[float, float] | None = None, slope: float = 1.0,
                intercept: float = 0.0, patient: str = "P1", modality: str = "CT",
                manufacturer: str = "ACME", spacing: str = "0.5\\0.5") -> Path:
    """A DICOM file of grey `values` (uint16 (rows, columns) or (frames, rows, columns))
    with the given attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = CT_STORAGE
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientID = patient
    dataset.Modality = modality
    dataset.Manufacturer = manufacturer
    dataset.PixelSpacing = spacing.split("\\")
    values = np.asarray(values)
    if values.ndim == 3:
        dataset.NumberOfFrames = len(values)
    dataset.Rows, dataset.Columns = values.shape[-2:]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    dataset.RescaleSlope = slope
    dataset.RescaleIntercept = intercept
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    dataset.PixelData = values.astype("<u2").tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path
