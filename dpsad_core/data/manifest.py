"""CSV manifests: one row per image with its class label and, optionally, its patient.

::

    path,label,patient_id
    scans/a.png,normal,P001
    scans/b.dcm,pneumonia,P002

Paths are relative to the CSV's folder (absolute paths are allowed). Labels are class names; the
classes are the sorted unique labels. Rows are numbered as a spreadsheet shows them: the header is
row 1, the first data row is row 2. Blank lines are ignored; other columns are ignored.

The manifest and every image it lists must be regular files (see :mod:`.regular_files`); lines,
rows and distinct labels are capped (see :mod:`.limits`) while the CSV is read, before any image
is decoded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from dpsad_core.data import limits
from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.files import PATIENT_ID_REMEDY, RecordCollector
from dpsad_core.data.imaging import IMAGE_SUFFIXES
from dpsad_core.data.regular_files import open_regular, path_kind
from dpsad_core.errors import DataImportError

REQUIRED_COLUMNS = ("path", "label")
PATIENT_COLUMN = "patient_id"
# One line of a manifest is a path, a label and a patient id: far below this. The cap keeps a file
# with no line breaks from being read into memory whole.
MAX_LINE_CHARS = 1_000_000

# (row number, path as written, label, patient id or None)
_Row = tuple[int, str, str, str | None]


def load_manifest(csv_path: Path, *, name: str, resolution: int | None, channels: int | None,
                  skip_corrupt: bool) -> ImageDataset:
    """Import the images a CSV manifest lists.

    A manifest's ``patient_id`` wins over a DICOM file's PatientID tag; an empty ``patient_id`` cell
    falls back to the tag. Non-square images are resized to square.
    """
    try:
        with open_regular(csv_path) as binary, \
                io.TextIOWrapper(binary, newline="", encoding="utf-8-sig") as handle:
            rows, has_patient_column = _read_rows(csv_path, handle)
    except UnicodeDecodeError as exc:
        raise DataImportError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=csv_path,
                              remedy="save the manifest as UTF-8 CSV") from None
    except OSError as exc:
        raise DataImportError(f"cannot read the manifest ({exc.strerror or exc})",
                              path=csv_path) from None

    collector = RecordCollector(skip_corrupt=skip_corrupt)
    base = csv_path.parent
    for row_number, path_text, label, patient_id in rows:
        image_path = Path(path_text).expanduser()
        if not image_path.is_absolute():
            image_path = base / image_path
        if not image_path.exists() and not image_path.is_symlink():
            raise DataImportError(f"image {path_text!r} does not exist (looked for {image_path})",
                                  path=csv_path, row=row_number,
                                  remedy="fix the path; relative paths start at the CSV's folder")
        if path_kind(image_path, row=row_number, error_path=csv_path) != "file":
            raise DataImportError(f"{path_text!r} is a folder, not an image file", path=csv_path,
                                  row=row_number, remedy="list each image file on its own row")
        if image_path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataImportError(f"unknown file type {image_path.suffix!r} for {path_text!r}; "
                                  f"known: {', '.join(sorted(IMAGE_SUFFIXES))}", path=csv_path,
                                  row=row_number, remedy="convert the image to PNG")
        added = collector.add_file(image_path, label, patient_id=patient_id, row=row_number,
                                   error_path=csv_path)
        if added and has_patient_column and collector.patient_ids[-1] is None:
            raise DataImportError("empty patient_id (and the file has no DICOM PatientID)",
                                  path=csv_path, row=row_number, remedy=PATIENT_ID_REMEDY)
    return collector.build(name=name, source=csv_path, resolution=resolution, channels=channels)


def _read_rows(csv_path: Path, handle: TextIO) -> tuple[list[_Row], bool]:
    """Parse and check the rows; also say whether there is a patient_id column."""
    reader = csv.reader(_bounded_lines(csv_path, handle))
    try:
        header = next(reader)
    except StopIteration:
        raise DataImportError("the manifest is empty", path=csv_path, row=1,
                              remedy="add a header row 'path,label' and one row per image"
                              ) from None
    except csv.Error as exc:
        raise DataImportError(f"not valid CSV ({exc})", path=csv_path, row=1) from None
    columns = [column.strip().lower() for column in header]
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise DataImportError(
            f"missing column {', '.join(map(repr, missing))}; the header has {header!r}",
            path=csv_path, row=1, remedy="the header row must name the columns path,label "
                                         "(and optionally patient_id)")
    path_at, label_at = columns.index("path"), columns.index("label")
    patient_at = columns.index(PATIENT_COLUMN) if PATIENT_COLUMN in columns else None

    rows: list[_Row] = []
    labels: set[str] = set()
    try:
        for cells in reader:
            row_number = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            limits.MAX_RECORDS.check(len(rows) + 1, what="the manifest lists too many images",
                                     path=csv_path, row=row_number)
            path_text = _cell(cells, path_at)
            label = _cell(cells, label_at)
            if not path_text:
                raise DataImportError("empty path", path=csv_path, row=row_number,
                                      remedy="give the image's path in the 'path' column")
            if not label:
                raise DataImportError("empty label", path=csv_path, row=row_number,
                                      remedy="give the image's class name in the 'label' column")
            if label not in labels:
                labels.add(label)
                limits.MAX_CLASSES.check(len(labels), what=f"label {label!r} is one more class",
                                         path=csv_path, row=row_number)
            patient_id = _cell(cells, patient_at) if patient_at is not None else ""
            if "\n" in patient_id or "\r" in patient_id:
                raise DataImportError(f"patient id {patient_id!r} contains a line break",
                                      path=csv_path, row=row_number, remedy="fix the patient id")
            rows.append((row_number, path_text, label, patient_id or None))
    except csv.Error as exc:
        raise DataImportError(f"not valid CSV ({exc})", path=csv_path,
                              row=reader.line_num) from None
    if not rows:
        raise DataImportError("the manifest lists no images", path=csv_path,
                              remedy="add one row per image below the header")
    return rows, patient_at is not None


def _bounded_lines(csv_path: Path, handle: TextIO) -> Iterator[str]:
    """The lines of ``handle``, refusing one longer than :data:`MAX_LINE_CHARS` before holding it."""
    number = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise DataImportError(f"line {number} is longer than {MAX_LINE_CHARS:,} characters",
                                  path=csv_path, remedy="a manifest holds one short row per image: "
                                                        "check that this is the right file")
        yield line


def _cell(cells: list[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index].strip()
