"""Caps on what one import may read and decode, so that a hostile or mistaken dataset is refused
with one line instead of exhausting memory or time.

Sizes are checked from headers before anything is decoded (an image's width and height, an array's
declared shape, an IDX file's dimensions), and decompression never reads past what the header
declared. Each cap has a default that real datasets stay well under, and an environment variable
that changes it. Environment variables (rather than command-line options) reach every place that
imports data: ``dpsad-core import``, ``train --data PATH``, ``evaluate`` and the GUI.

=========================  ===============  ====================================================
variable                   default          what it bounds
=========================  ===============  ====================================================
``DPSAD_MAX_PIXELS``       50,000,000       width x height of one image (one DICOM frame)
``DPSAD_MAX_RECORDS``      1,000,000        images (records) in one dataset
``DPSAD_MAX_CLASSES``      1,000            classes in one dataset, so also the largest label + 1
``DPSAD_MAX_DATA_BYTES``   4 GiB            bytes held for the data: one file, one decompressed
                                            array, the images decoded so far, the float32 result
=========================  ===============  ====================================================

docs/limits.md ("Datasets") lists them for users.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dpsad_core.errors import ConfigError, DataImportError

LIMITS_DOC = "docs/limits.md"


@dataclass(frozen=True)
class Limit:
    """One cap: its environment variable, default and the unit it counts."""

    variable: str
    default: int
    unit: str

    def value(self) -> int:
        """The cap in force: the environment variable if set, else the default."""
        text = os.environ.get(self.variable, "").strip()
        if not text:
            return self.default
        try:
            number = int(text.replace("_", ""))
        except ValueError:
            number = 0
        if number < 1:
            raise ConfigError(f"environment variable {self.variable} is {text!r}, not a whole "
                              "number >= 1", field=self.variable, value=text,
                              remedy=f"unset it to use the default {self.default:,}, or see "
                                     f"{LIMITS_DOC}")
        return number

    def check(self, amount: int, *, what: str, path: str | Path | None,
              row: int | None = None) -> None:
        """Raise :class:`DataImportError` if ``amount`` (a Python int: no overflow) exceeds the cap.

        ``what`` says what was counted, e.g. "image is 12000x12000"; the message reads
        "<what>: <amount> <unit>, over the limit of <cap> <unit>".
        """
        limit = self.value()
        if amount > limit:
            raise self.exceeded(f"{what}: {amount:,} {self.unit}", path=path, row=row)

    def exceeded(self, what: str, *, path: str | Path | None,
                 row: int | None = None) -> DataImportError:
        """The error for ``what`` being over the cap (for callers that counted themselves)."""
        return DataImportError(f"{what}, over the limit of {self.value():,} {self.unit}",
                               path=path, row=row, remedy=self.remedy)

    @property
    def remedy(self) -> str:
        return (f"if the data is genuine and this machine has the memory, raise the limit with the "
                f"environment variable {self.variable}; see {LIMITS_DOC}")


MAX_PIXELS = Limit("DPSAD_MAX_PIXELS", 50_000_000, "pixels")
MAX_RECORDS = Limit("DPSAD_MAX_RECORDS", 1_000_000, "records")
MAX_CLASSES = Limit("DPSAD_MAX_CLASSES", 1_000, "classes")
MAX_DATA_BYTES = Limit("DPSAD_MAX_DATA_BYTES", 4 * 1024 ** 3, "bytes")

FLOAT32_BYTES = 4


def check_float_images(count: int, channels: int, height: int, width: int, *,
                       path: str | Path | None, key: str | None = None) -> None:
    """Refuse before allocating ``count x channels x height x width`` float32 images over the cap.

    ``key`` names the array inside the file (an npz key), when there is one.
    """
    size = int(count) * int(channels) * int(height) * int(width) * FLOAT32_BYTES
    what = f"{count:,} images of {channels}x{height}x{width} as float32"
    MAX_DATA_BYTES.check(size, what=f"{key}: {what}" if key else what, path=path)


def check_label_range(label: object, *, what: str, path: str | Path | None,
                      row: int | None = None) -> None:
    """Refuse a label that would make more classes than the cap (labels are 0 .. classes-1).

    ``label`` is a number of any numeric type (a numpy scalar is shown as numpy prints it, so a
    float label of 1e300 stays short); ``what`` names where it sits, e.g. "train_labels[3]".
    """
    limit = MAX_CLASSES.value()
    if label >= limit:  # type: ignore[operator]
        raise DataImportError(
            f"{what} is label {label}, over the limit of {limit:,} classes (labels 0..{limit - 1})",
            path=path, row=row,
            remedy=f"labels must be class numbers 0, 1, 2, ...; for more classes, raise the limit "
                   f"with the environment variable {MAX_CLASSES.variable}; see {LIMITS_DOC}")
