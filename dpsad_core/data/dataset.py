"""The in-memory image dataset every importer returns and every trainer consumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.errors import DataImportError


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Labelled images with optional patient ids, validated on construction.

    Parameters
    ----------
    images
        float32, ``N x C x H x W`` with ``C`` in {1, 3} and ``H == W``, values in [0, 1].
    labels
        int64, shape ``N``, values in ``0 .. len(class_names) - 1``.
    class_names
        One unique, non-empty name per class, in label order.
    patient_ids
        Unicode-string array of shape ``N`` (no empty ids, no newlines), or None when records are
        not grouped by patient. Records of one patient form one privacy unit.
    name
        Human name, e.g. ``"mnist-train"``.
    source
        Where the data came from: a path, or ``"demo"``.
    skipped
        Paths of files skipped as unreadable (only with ``skip_corrupt=True``).
    merged_duplicates
        How many exact copies of other records the import merged into their record's privacy unit, or
        dropped (:mod:`dpsad_core.data.duplicates`); 0 when there were none.
    name_declared
        Whether the analyst chose ``name`` (``import --name``), or it is a built-in source's public name.
        A name derived from a local folder or file is never exported (bundles say "dataset" instead).
    class_names_from
        Where the class names come from: ``"declared"`` (the analyst's ``--classes``), ``"source"`` (a
        built-in format's public names) or ``"data"`` (folder or label names read off the private data).
    count_declared
        Whether the analyst declared the number of records public (``import --public-count``); if not,
        a release states it only rounded (:mod:`dpsad_core.data.public_metadata`).

    Notes
    -----
    The arrays are not copied. Do not modify them in place: the record identities and the
    fingerprint are computed once per key and cached. Equality is identity (``eq=False``); compare
    fingerprints to compare contents.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    patient_ids: np.ndarray | None
    name: str
    source: str
    skipped: tuple[str, ...] = ()
    merged_duplicates: int = 0
    name_declared: bool = False
    class_names_from: str = "data"
    count_declared: bool = False
    _identity_cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "skipped", tuple(str(path) for path in self.skipped))
        self._check_images()
        self._check_labels()
        self._check_patient_ids()

    def _fail(self, message: str) -> DataImportError:
        return DataImportError(f"dataset {self.name!r}: {message}",
                               remedy="this is a bug in the code that built the dataset")

    def _check_images(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray) or images.dtype != np.float32:
            raise self._fail(f"images must be a float32 array, got {_describe(images)}")
        if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[2] != images.shape[3]:
            raise self._fail(f"images must be N x C x H x W with C in (1, 3) and H == W, got shape "
                             f"{images.shape}")
        if images.shape[2] < 1:
            raise self._fail(f"images have zero size: shape {images.shape}")
        if images.size:
            low, high = images.min(), images.max()
            # NaN fails both comparisons, so this also rejects NaN and inf.
            if not (low >= 0.0 and high <= 1.0):
                raise self._fail(f"image values must lie in [0, 1], found [{low}, {high}]")

    def _check_labels(self) -> None:
        if not self.class_names or not all(isinstance(n, str) and n for n in self.class_names):
            raise self._fail(f"class names must be non-empty strings, got {self.class_names!r}")
        if len(set(self.class_names)) != len(self.class_names):
            raise self._fail(f"class names repeat: {self.class_names!r}")
        labels = self.labels
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64:
            raise self._fail(f"labels must be an int64 array, got {_describe(labels)}")
        if labels.shape != (self.images.shape[0],):
            raise self._fail(f"labels have shape {labels.shape}, expected "
                             f"({self.images.shape[0]},)")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise self._fail(f"labels span {labels.min()}..{labels.max()}, expected "
                             f"0..{len(self.class_names) - 1}")

    def _check_patient_ids(self) -> None:
        ids = self.patient_ids
        if ids is None:
            return
        if not isinstance(ids, np.ndarray) or ids.dtype.kind != "U":
            raise self._fail(f"patient ids must be a unicode string array, got {_describe(ids)}")
        if ids.shape != (self.images.shape[0],):
            raise self._fail(f"patient ids have shape {ids.shape}, expected "
                             f"({self.images.shape[0]},)")
        if ids.size and (np.char.str_len(ids).min() == 0
                         or np.char.find(ids, "\n").max() >= 0
                         or np.char.find(ids, "\r").max() >= 0):
            raise self._fail("patient ids must be non-empty and contain no line breaks")

    # ------------------------------------------------------------------ properties
    @property
    def num_records(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[2])

    @property
    def class_counts(self) -> dict[str, int]:
        """Records per class, every class listed (zero where absent), in label order."""
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(count) for name, count in zip(self.class_names, counts, strict=True)}

    @property
    def unit(self) -> str:
        """What one privacy unit is: ``"patient"`` with patient ids, else ``"image"`` (its exact copies merged)."""
        if self.patient_ids is None:
            return "image"
        if self.merged_duplicates and str(self.patient_ids[0]).startswith("unit-"):
            return "image (exact copies merged)"
        return "patient"

    @property
    def num_privacy_units(self) -> int:
        """Distinct patients, or the number of records when there are no patient ids."""
        if self.patient_ids is None:
            return self.num_records
        return int(np.unique(self.patient_ids).size)

    # ------------------------------------------------------------------ methods
    def privacy_units(self) -> np.ndarray:
        """int64 ``N``: each record's unit index in ``0 .. U-1`` (patients in sorted-id order).

        Without patient ids every record is its own unit: ``arange(N)``.
        """
        if self.patient_ids is None:
            return np.arange(self.num_records, dtype=np.int64)
        _, inverse = np.unique(self.patient_ids, return_inverse=True)
        return inverse.reshape(-1).astype(np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """A new dataset of the records at ``indices`` (integers, or a boolean mask of length N).

        Arrays are copied; name, source, class names and skipped files are kept.
        """
        index = np.asarray(indices)
        if index.dtype == np.bool_:
            if index.shape != (self.num_records,):
                raise IndexError(f"boolean mask has shape {index.shape}, expected "
                                 f"({self.num_records},)")
            index = np.flatnonzero(index)
        elif index.size == 0:
            index = index.astype(np.int64)
        elif not np.issubdtype(index.dtype, np.integer) or index.ndim != 1:
            raise IndexError(f"indices must be a 1-D integer array, got {_describe(index)}")
        elif index.min() < -self.num_records or index.max() >= self.num_records:
            raise IndexError(f"indices span {index.min()}..{index.max()}, outside the "
                             f"{self.num_records} records")
        return ImageDataset(
            images=self.images[index],
            labels=self.labels[index],
            class_names=self.class_names,
            patient_ids=None if self.patient_ids is None else self.patient_ids[index],
            name=self.name,
            source=self.source,
            skipped=self.skipped,
            merged_duplicates=self.merged_duplicates,
            name_declared=self.name_declared,
            class_names_from=self.class_names_from,
            count_declared=self.count_declared,
        )

    def record_hashes(self, workspace: str | Path | None = None) -> np.ndarray:
        """uint8 ``N x 32``: each record's keyed hash under the workspace's key (:mod:`.identity`)."""
        from dpsad_core.data.identity import canonical_pixels, keyed_record_hashes, workspace_key

        key = workspace_key(workspace)
        if ("exact", key) not in self._identity_cache:
            self._identity_cache["exact", key] = keyed_record_hashes(key, canonical_pixels(self.images), self.labels,
                                                                     self.class_names)
        return self._identity_cache["exact", key]

    def identities(self, workspace: str | Path | None = None):
        """The records' keyed hashes and size signatures (:class:`~dpsad_core.data.identity.RecordIdentities`)."""
        from dpsad_core.data.identity import RecordIdentities, size_signatures

        exact = self.record_hashes(workspace)
        if "signatures" not in self._identity_cache:
            self._identity_cache["signatures"] = size_signatures(self.images)
        return RecordIdentities(exact=exact, signatures=self._identity_cache["signatures"])

    def fingerprint(self, workspace: str | Path | None = None) -> str:
        """The dataset's identity: an HMAC over its sorted record hashes, the same in any record order.

        Keyed with ``<workspace>/identity.key`` (the default workspace when None); see :mod:`.identity`.
        """
        from dpsad_core.data.identity import dataset_identity, workspace_key

        key = workspace_key(workspace)
        if ("fingerprint", key) not in self._identity_cache:
            self._identity_cache["fingerprint", key] = dataset_identity(self.record_hashes(workspace),
                                                                        self.patient_ids, key)
        return self._identity_cache["fingerprint", key]

    def records_digest(self) -> str:
        """SHA-256 of the records in their order (pixels as stored, labels, patients), with no key.

        For the workers of one run to check that they read the same records in the same order: on
        several machines each workspace has its own identity key, so the keyed :meth:`fingerprint` of the
        same data differs. It travels only between the run's workers, never to a file or a bundle (an
        unkeyed hash of private records can be checked against a guess).
        """
        import hashlib

        from dpsad_core.data.identity import canonical_pixels

        if "digest" not in self._identity_cache:
            digest = hashlib.sha256(b"dpsad-records-in-order-v1")
            digest.update(np.ascontiguousarray(canonical_pixels(self.images)).tobytes())
            digest.update(np.asarray(self.labels, dtype=np.int64).tobytes())
            if self.patient_ids is not None:
                digest.update("\n".join(str(patient) for patient in self.patient_ids).encode())
            self._identity_cache["digest"] = digest.hexdigest()
        return self._identity_cache["digest"]

    def summary(self, workspace: str | Path | None = None) -> dict[str, Any]:
        """JSON-able description: counts, shape, fingerprint; never any record's content."""
        return {
            "name": self.name,
            "source": self.source,
            "num_records": self.num_records,
            "num_privacy_units": self.num_privacy_units,
            "unit": self.unit,
            "num_classes": self.num_classes,
            "class_counts": self.class_counts,
            "channels": self.channels,
            "resolution": self.resolution,
            "fingerprint": self.fingerprint(workspace),
            "skipped": len(self.skipped),
            "merged_duplicates": self.merged_duplicates,
            "name_declared": self.name_declared,
            "class_names_from": self.class_names_from,
            "count_declared": self.count_declared,
        }


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
