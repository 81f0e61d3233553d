"""DICOM images through pydicom: modality rescale, MONOCHROME1 inversion, per-image normalisation.

Only uncompressed pixel data (or compressed data for which a pydicom decoder plugin is installed)
can be read. Each image is normalised to [0, 1] by its own minimum and maximum, because DICOM
values are in scanner units (Hounsfield units, raw detector counts) with no fixed display range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dpsad_core.data.imaging import UnreadableImageError
from dpsad_core.errors import DataImportError

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_GREY = ("MONOCHROME1", "MONOCHROME2")


def read_dicom(path: Path) -> tuple[np.ndarray, str | None]:
    """Read one DICOM file.

    Returns
    -------
    image
        float32 ``H x W`` (grey) or ``H x W x 3`` (colour) in [0, 1]; high values are bright.
    patient_id
        The PatientID tag, stripped, or None when absent or empty.

    Raises
    ------
    UnreadableImageError
        Not DICOM, no pixel data, or pixel data that cannot be decoded (skippable).
    DataImportError
        A valid DICOM this importer does not support (multi-frame, more than 16 bits).
    """
    import pydicom  # imported here: only DICOM imports pay for it

    try:
        dataset = pydicom.dcmread(path, force=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise UnreadableImageError(f"not a readable DICOM file ({exc})", path=path) from None
    if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
        raise UnreadableImageError("DICOM file has no pixel data", path=path)
    if "PixelData" not in dataset:
        raise DataImportError("floating-point DICOM pixel data is not supported", path=path,
                              remedy="export the image with 8- to 16-bit integer pixels")
    bits = int(dataset.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16):
        raise DataImportError(f"DICOM with {bits} bits allocated per pixel is not supported",
                              path=path, remedy="export the image with 8- to 16-bit pixels")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataImportError(f"multi-frame DICOM ({frames} frames) is not supported", path=path,
                              remedy="export one frame per file")
    try:
        pixels = np.asarray(dataset.pixel_array, dtype=np.float64)
    except Exception as exc:  # missing decoder plugin, truncated pixel data, bad tags
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise UnreadableImageError(f"cannot decode DICOM pixel data (transfer syntax {syntax}: "
                                   f"{exc})", path=path) from None

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if pixels.ndim == 2 and photometric in _GREY:
        slope = _number(dataset, "RescaleSlope", 1.0, path)
        intercept = _number(dataset, "RescaleIntercept", 0.0, path)
        pixels = pixels * slope + intercept
        if photometric == "MONOCHROME1":
            # MONOCHROME1 displays low values bright; negate so high means bright in the result.
            pixels = -pixels
    elif not (pixels.ndim == 3 and pixels.shape[-1] == 3):
        raise DataImportError(f"unsupported DICOM pixel layout: {photometric}, array shape "
                              f"{pixels.shape}", path=path,
                              remedy="export the image as MONOCHROME2 or RGB")
    return _normalise(pixels), _patient_id(dataset)


def _number(dataset: object, keyword: str, default: float, path: Path) -> float:
    value = dataset.get(keyword, None)  # type: ignore[attr-defined]
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataImportError(f"DICOM tag {keyword} is {value!r}, not a number", path=path,
                              remedy="fix or remove the tag") from None
    if not np.isfinite(number):
        raise DataImportError(f"DICOM tag {keyword} is {value!r}", path=path,
                              remedy="fix or remove the tag")
    return number


def _normalise(pixels: np.ndarray) -> np.ndarray:
    low, high = float(pixels.min()), float(pixels.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.float32)
    return ((pixels - low) / (high - low)).astype(np.float32)


def _patient_id(dataset: object) -> str | None:
    value = dataset.get("PatientID", None)  # type: ignore[attr-defined]
    if value is None:
        return None
    text = str(value).strip()
    return text or None
