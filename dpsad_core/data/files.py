"""What the file-based importers (class folders, CSV manifests) share: reading one file, collecting
records, skipping unreadable files, and turning the collection into an :class:`ImageDataset`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpsad_core.data import limits
from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.dicom import read_dicom
from dpsad_core.data.imaging import DICOM_SUFFIXES, UnreadableImageError, read_pil_image, stack_images
from dpsad_core.errors import DataImportError

PATIENT_ID_REMEDY = ("give every record a patient id (a patient_id column in a CSV manifest, or "
                     "the DICOM PatientID tag), or none at all")


def read_image_file(path: Path) -> tuple[np.ndarray, str | None]:
    """Decode one image or DICOM file: (``H x W`` or ``H x W x 3`` float32 in [0, 1], patient id).

    Only DICOM files carry a patient id. Raises :class:`UnreadableImageError` for damaged files.
    """
    if path.suffix.lower() in DICOM_SUFFIXES:
        return read_dicom(path)
    return read_pil_image(path), None


@dataclass
class RecordCollector:
    """Mutable accumulator used while an importer walks its files; see :meth:`add_file`."""

    skip_corrupt: bool
    images: list[np.ndarray] = field(default_factory=list)
    label_names: list[str] = field(default_factory=list)
    patient_ids: list[str | None] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    decoded_bytes: int = 0

    def add_file(self, path: Path, label: str, *, patient_id: str | None = None,
                 row: int | None = None, error_path: Path | None = None) -> bool:
        """Read ``path`` and record it under ``label``; False if it was skipped as unreadable.

        ``patient_id`` (from a manifest) wins over the DICOM tag. ``error_path`` and ``row`` say
        where to point an error (the manifest and its row) instead of at the image file.
        """
        try:
            image, tag_patient_id = read_image_file(path)
        except UnreadableImageError as exc:
            if self.skip_corrupt:
                self.skipped.append(str(path))
                return False
            if error_path is None:
                raise
            raise UnreadableImageError(f"{path}: {exc.message}", path=error_path,
                                       row=row) from None
        # Images are held at their own size until stacking: bound the sum, not only each one.
        self.decoded_bytes += image.nbytes
        if self.decoded_bytes > limits.MAX_DATA_BYTES.value():
            raise limits.MAX_DATA_BYTES.exceeded(
                f"the {len(self.images) + 1:,} images read so far decode to "
                f"{self.decoded_bytes:,} bytes", path=error_path or path, row=row)
        self.images.append(image)
        self.label_names.append(label)
        self.patient_ids.append(patient_id if patient_id is not None else tag_patient_id)
        self.origins.append(str(path) if row is None else f"row {row} ({path})")
        return True

    def build(self, *, name: str, source: Path, resolution: int | None,
              channels: int | None) -> ImageDataset:
        """Stack what was collected into a dataset; class names are the sorted label names."""
        if not self.images:
            raise DataImportError("no readable images found", path=source,
                                  remedy="check the folder or manifest, or stop skipping files")
        class_names = tuple(sorted(set(self.label_names)))
        index = {class_name: i for i, class_name in enumerate(class_names)}
        labels = np.array([index[label] for label in self.label_names], dtype=np.int64)
        patient_ids = self._patient_id_array(source)
        images = stack_images(self.images, origins=self.origins, source=source,
                              resolution=resolution, channels=channels)
        return ImageDataset(images=images, labels=labels, class_names=class_names,
                            patient_ids=patient_ids, name=name, source=str(source),
                            skipped=tuple(self.skipped))

    def _patient_id_array(self, source: Path) -> np.ndarray | None:
        missing = [i for i, patient_id in enumerate(self.patient_ids) if patient_id is None]
        if len(missing) == len(self.patient_ids):
            return None
        if missing:
            # Half-grouped data has no clear privacy unit: counting the ungrouped records as
            # separate people could under-count a patient who appears in both groups.
            raise DataImportError(
                f"{len(missing)} records have no patient id while "
                f"{len(self.patient_ids) - len(missing)} do, e.g. {self.origins[missing[0]]}",
                path=source, remedy=PATIENT_ID_REMEDY)
        for i, patient_id in enumerate(self.patient_ids):
            if "\n" in patient_id or "\r" in patient_id:  # type: ignore[operator]
                raise DataImportError(f"patient id {patient_id!r} of {self.origins[i]} contains a "
                                      "line break", path=source, remedy="fix the patient id")
        return np.array(self.patient_ids, dtype=str)
