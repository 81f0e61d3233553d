"""DICOM images through pydicom: modality rescale, MONOCHROME1 inversion, per-image normalisation.

Only uncompressed pixel data (or compressed data for which a pydicom decoder plugin is installed)
can be read. Each image is normalised to [0, 1] by its own minimum and maximum, because DICOM
values are in scanner units (Hounsfield units, raw detector counts) with no fixed display range.

The file must be a regular file (a ``.dcm`` link to ``/dev/zero`` is refused before reading), its
declared size (rows x columns) is checked against ``DPSAD_MAX_PIXELS`` before the pixels are
decoded, and a modality rescale that makes no sense (values beyond the float range, or every pixel
collapsed to one value) is refused naming the tag, instead of being normalised into a blank image.
pydicom's and numpy's warnings are kept off stderr: what they warn about is checked here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from dpsad_core.data import limits
from dpsad_core.data.imaging import UnreadableImageError, captured_warnings
from dpsad_core.data.regular_files import open_regular
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
    with open_regular(path) as handle, captured_warnings():
        dataset = _read(handle, path)
        pixels = _pixels(dataset, path)
        photometric = str(_tag(dataset, "PhotometricInterpretation", path) or "MONOCHROME2")
        photometric = photometric.strip().upper()
        if pixels.ndim == 2 and photometric in _GREY:
            pixels = _rescale(pixels, dataset, path)
            if photometric == "MONOCHROME1":
                # MONOCHROME1 displays low values bright; negate so high means bright.
                pixels = -pixels
        elif not (pixels.ndim == 3 and pixels.shape[-1] == 3):
            raise DataImportError(f"unsupported DICOM pixel layout: {photometric}, array shape "
                                  f"{pixels.shape}", path=path,
                                  remedy="export the image as MONOCHROME2 or RGB")
        return _normalise(pixels), _patient_id(dataset, path)


def _read(handle: BinaryIO, path: Path) -> object:
    import pydicom  # imported here: only DICOM imports pay for it

    try:
        return pydicom.dcmread(handle, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        raise UnreadableImageError(f"not a readable DICOM file ({exc})", path=path) from None


def _pixels(dataset: object, path: Path) -> np.ndarray:
    """The stored pixel values as float64, after checking the header's size and layout."""
    if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):  # type: ignore[operator]
        raise UnreadableImageError("DICOM file has no pixel data", path=path)
    if "PixelData" not in dataset:  # type: ignore[operator]
        raise DataImportError("floating-point DICOM pixel data is not supported", path=path,
                              remedy="export the image with 8- to 16-bit integer pixels")
    bits = _whole(dataset, "BitsAllocated", 0, path)
    if bits not in (8, 16):
        raise DataImportError(f"DICOM with {bits} bits allocated per pixel is not supported",
                              path=path, remedy="export the image with 8- to 16-bit pixels")
    frames = _whole(dataset, "NumberOfFrames", 1, path)
    if frames > 1:
        raise DataImportError(f"multi-frame DICOM ({frames} frames) is not supported", path=path,
                              remedy="export one frame per file")
    rows, columns = _whole(dataset, "Rows", 0, path), _whole(dataset, "Columns", 0, path)
    limits.MAX_PIXELS.check(rows * columns, what=f"DICOM image is {columns}x{rows}", path=path)
    try:
        return np.asarray(dataset.pixel_array, dtype=np.float64)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - missing decoder plugin, truncated data, bad tags
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise UnreadableImageError(f"cannot decode DICOM pixel data (transfer syntax {syntax}: "
                                   f"{exc})", path=path) from None


def _rescale(pixels: np.ndarray, dataset: object, path: Path) -> np.ndarray:
    """Apply RescaleSlope and RescaleIntercept, refusing a result that cannot be an image.

    A slope of 1e308 overflows to infinity and a slope of 0 makes every pixel equal: normalised,
    either would be a blank image written as if it were data.
    """
    slope = _number(dataset, "RescaleSlope", 1.0, path)
    intercept = _number(dataset, "RescaleIntercept", 0.0, path)
    with np.errstate(all="ignore"):
        rescaled = pixels * slope + intercept
        span = float(rescaled.max() - rescaled.min()) if rescaled.size else 0.0
    tags = f"RescaleSlope {slope:g} and RescaleIntercept {intercept:g}"
    if not np.isfinite(rescaled).all() or not np.isfinite(span):
        raise DataImportError(f"DICOM {tags} take the pixel values beyond the floating-point "
                              "range", path=path,
                              remedy="fix the RescaleSlope/RescaleIntercept tags (a slope is "
                                     "usually 1)")
    if span == 0.0 and rescaled.size and pixels.max() > pixels.min():
        raise DataImportError(f"DICOM {tags} make every pixel the same value", path=path,
                              remedy="fix the RescaleSlope tag (a slope is usually 1)")
    return rescaled


def _whole(dataset: object, keyword: str, default: int, path: Path) -> int:
    """A whole-number tag (Rows, BitsAllocated, ...); a value that is not one is refused."""
    value = _tag(dataset, keyword, path)
    try:
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError, OverflowError):
        raise DataImportError(f"DICOM tag {keyword} is not a whole number", path=path,
                              remedy="fix or remove the tag") from None


def _number(dataset: object, keyword: str, default: float, path: Path) -> float:
    value = _tag(dataset, keyword, path)
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
    with np.errstate(under="ignore"):  # tiny values flush to 0, which is right here
        return np.clip((pixels - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _tag(dataset: object, keyword: str, path: Path) -> Any:
    """A tag's value or None; a value pydicom fails to convert makes the file unreadable.

    Any: pydicom's value for the tag's VR (str, int, float, a MultiValue, ...); the callers convert it.
    """
    try:
        return dataset.get(keyword, None)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily, on first access
        raise UnreadableImageError(f"DICOM tag {keyword} cannot be read ({exc})",
                                   path=path) from None


def _patient_id(dataset: object, path: Path) -> str | None:
    value = _tag(dataset, "PatientID", path)
    if value is None:
        return None
    text = str(value).strip()
    return text or None
