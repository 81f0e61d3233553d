"""Entry points: detect a source's format and import it, or resolve a user's data spec.

Formats :func:`load_dataset` recognises:

1. a folder of class subfolders (PNG/JPEG/BMP/TIFF and DICOM), see :mod:`.folder`;
2. a CSV manifest (``path,label[,patient_id]``), see :mod:`.manifest`;
3. MNIST IDX files, a folder or one images file, see :mod:`.idx`;
4. a MedMNIST ``.npz``, see :mod:`.medmnist`;
5. DICOM files, inside class folders or listed in a manifest, see :mod:`.dicom`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.data import idx
from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.demo import DEMO_SOURCE, load_demo
from dpsad_core.data.duplicates import apply_duplicate_policy, check_policy
from dpsad_core.data.folder import load_class_folder
from dpsad_core.data.imaging import IMAGE_SUFFIXES, batch_to_chw, chw_to_hwc, validate_options
from dpsad_core.data.manifest import load_manifest
from dpsad_core.data.medmnist import load_medmnist
from dpsad_core.data.public_metadata import declare_classes
from dpsad_core.data.regular_files import path_kind
from dpsad_core.data.store import (
    META_FILE,
    check_name,
    datasets_dir,
    is_safe_name,
    load_saved_dataset,
    sanitise_name,
    saved_dataset_names,
)
from dpsad_core.data.synthetic import RENDERED_DIGITS_SOURCE, cached_render_digits
from dpsad_core.errors import ConfigError, DataImportError, TooFewRecordsError

KNOWN_SPLITS = ("train", "val", "test")
# The built-in sources are public data sets: their name, classes and size are public.
BUILT_IN_METADATA: dict[str, Any] = {"name_declared": True, "class_names_from": "source", "count_declared": True}
ACCEPTED = ("a folder with one subfolder per class (PNG/JPEG/BMP/TIFF/DICOM images), a CSV "
            "manifest (path,label[,patient_id]), an MNIST IDX folder or images file, or a MedMNIST "
            ".npz")


def load_dataset(source: str | os.PathLike[str], *, split: str = "train",
                 resolution: int | None = None, channels: int | None = None,
                 skip_corrupt: bool = False, min_records: int = 100,
                 name: str | None = None, duplicates: str = "refuse", classes: Sequence[str] | None = None,
                 public_count: bool = False) -> ImageDataset:
    """Import images from ``source``, detecting its format.

    Parameters
    ----------
    source
        A class folder, a ``.csv`` manifest, an MNIST IDX folder or images file, or a MedMNIST
        ``.npz``.
    split
        For sources with splits: "train" or "test" (IDX folder), "train", "val" or "test"
        (MedMNIST). A class folder, a manifest or a single IDX file is one set: the split is
        ignored there (but must still be one of "train", "val", "test").
    resolution
        Resize every image to ``resolution x resolution`` (PIL bilinear). Non-square images are
        resized to square, changing their aspect ratio. None keeps the images' own size, which
        they must then share and which must be square.
    channels
        1 (grey) or 3 (colour); None keeps the images' own, which must then not mix. Grey becomes
        colour by repetition, colour becomes grey by PIL's luma ("L") weights.
    skip_corrupt
        Skip unreadable image files (listed in ``ImageDataset.skipped``) instead of failing.
    min_records
        The fewest privacy units (patients if patient ids exist, else images) to accept.
    name
        The dataset's name (a safe folder name); by default one derived from the source.
    duplicates
        Exact duplicate records: ``"refuse"`` them (default), ``"merge"`` each group into one privacy
        unit, or ``"drop"`` all but the first copy (:mod:`.duplicates`); ``"keep"`` them for data that
        is not private (test data, public data).
    classes
        The class list the analyst declares public, in label order; records with another label are
        refused (:mod:`.public_metadata`). None: the source's own (IDX and MedMNIST: their public
        names; folders, manifests and DICOM: names read from the data, marked as such).
    public_count
        The analyst declares the number of records public (else releases state it rounded).

    Raises
    ------
    DataImportError
        The source is missing, unreadable or unusable, is not a regular file or folder, or passes
        a cap of :mod:`dpsad_core.data.limits` (pixels, records, classes, data bytes); the message
        names the file (and row).
    TooFewRecordsError
        Fewer than ``min_records`` privacy units.
    ConfigError
        An invalid option, or a split the source does not have.
    """
    _check_split(split)
    validate_options(resolution=resolution, channels=channels)
    _check_min_records(min_records)
    check_policy(duplicates)
    if name is not None:
        check_name(name)
    path = Path(source).expanduser()
    if not path.exists() and not path.is_symlink():
        raise DataImportError("no such file or folder", path=path, remedy=f"pass {ACCEPTED}")
    path_kind(path)  # a FIFO, a device or a symbolic link loop is refused by name, never opened
    path = path.resolve()
    options = {"resolution": resolution, "channels": channels}
    suffix = path.suffix.lower()
    format_classes = suffix == ".npz" or (path.is_dir() and idx.is_idx_folder(path))

    if path.is_dir() and idx.is_idx_folder(path):
        images_path, labels_path = idx.idx_folder_files(path, split)
        dataset = idx.load_idx(images_path, labels_path, class_names=idx.class_names_for(path),
                               name=name or sanitise_name(f"{path.name}-{split}"), **options)
    elif path.is_dir():
        dataset = load_class_folder(path, name=name or sanitise_name(path.name),
                                    skip_corrupt=skip_corrupt, **options)
    elif suffix == ".csv":
        dataset = load_manifest(path, name=name or sanitise_name(path.stem),
                                skip_corrupt=skip_corrupt, **options)
    elif suffix == ".npz":
        dataset = load_medmnist(path, split=split,
                                name=name or sanitise_name(f"{path.stem}-{split}"), **options)
    elif idx.is_idx_file(path):
        format_classes = True
        labels_path = idx.labels_beside(path)
        file_split = "test" if path.name.lower().startswith("t10k") else "train"
        dataset = idx.load_idx(path, labels_path, class_names=idx.class_names_for(path.parent),
                               name=name or sanitise_name(f"{path.parent.name}-{file_split}"),
                               **options)
    elif suffix in IMAGE_SUFFIXES:
        raise DataImportError("a single image is not a dataset", path=path,
                              remedy="pass the folder of class subfolders it belongs to, or a CSV "
                                     "manifest listing it")
    else:
        raise DataImportError(f"unrecognised data format {suffix or '(no extension)'!r}",
                              path=path, remedy=f"pass {ACCEPTED}")
    dataset = apply_duplicate_policy(dataset, duplicates)
    if name is not None:  # the analyst's choice: the one name a bundle may carry
        dataset = dataclasses.replace(dataset, name_declared=True)
    if format_classes:  # IDX and MedMNIST name their classes from the format's public list
        dataset = dataclasses.replace(dataset, class_names_from="source")
    if classes is not None:
        dataset = declare_classes(dataset, classes)
    if public_count:
        dataset = dataclasses.replace(dataset, count_declared=True)
    check_min_units(dataset, min_records)
    return dataset


def resolve_data_source(spec: str, *, workspace: Path, split: str = "train",
                        resolution: int | None = None, channels: int | None = None,
                        skip_corrupt: bool = False, min_records: int = 100,
                        duplicates: str = "refuse") -> ImageDataset:
    """Turn what a user typed into a dataset.

    ``"demo"`` is the bundled demo digits; ``"rendered-digits"`` generated public font digits
    (:mod:`dpsad_core.data.synthetic`); the name of a dataset saved in
    ``workspace/datasets`` loads it (the split is ignored: a saved dataset is one set); anything
    else is a path for :func:`load_dataset`. A spec that looks like a path (it has a separator or
    starts with "." or "~") is always treated as one. ``resolution`` and ``channels`` convert demo
    and saved data too; ``min_records`` applies to all three. ``duplicates`` applies to a path (saved
    datasets were checked at import): pass ``"keep"`` for data that is not private (test or public data).
    """
    _check_split(split)
    validate_options(resolution=resolution, channels=channels)
    _check_min_records(min_records)
    text = str(spec).strip()
    looks_like_path = any(sep in text for sep in ("/", "\\", os.sep)) or text.startswith((".", "~"))
    if text == DEMO_SOURCE:  # built-in sources: their names are public
        dataset = dataclasses.replace(conform_dataset(load_demo(split=split, resolution=resolution),
                                                      resolution=resolution, channels=channels),
                                      **BUILT_IN_METADATA)
    elif text == RENDERED_DIGITS_SOURCE:
        dataset = conform_dataset(cached_render_digits(resolution=resolution or 28, seed=0 if split == "train" else 1),
                                  channels=channels)
        dataset = dataclasses.replace(dataset, **BUILT_IN_METADATA)
    elif not looks_like_path and is_safe_name(text) \
            and (datasets_dir(workspace) / text / META_FILE).is_file():
        dataset = conform_dataset(load_saved_dataset(datasets_dir(workspace) / text),
                                  resolution=resolution, channels=channels)
    elif text and os.path.lexists(Path(text).expanduser()):
        return load_dataset(text, split=split, resolution=resolution, channels=channels,
                            skip_corrupt=skip_corrupt, min_records=min_records, duplicates=duplicates)
    else:
        saved = saved_dataset_names(workspace)
        listed = ", ".join(saved) if saved else "none"
        raise DataImportError(
            f"data source {text!r} is not 'demo' or 'rendered-digits', not a dataset saved in "
            f"{datasets_dir(workspace)} (saved: {listed}), and no such file or folder exists",
            remedy=f"pass 'demo', a saved dataset's name, or the path of {ACCEPTED}")
    check_min_units(dataset, min_records)
    return dataset


def conform_dataset(dataset: ImageDataset, *, resolution: int | None = None,
                    channels: int | None = None) -> ImageDataset:
    """``dataset`` resized to ``resolution`` and converted to ``channels`` (unchanged if None)."""
    validate_options(resolution=resolution, channels=channels)
    if (resolution is None or resolution == dataset.resolution) \
            and (channels is None or channels == dataset.channels):
        return dataset
    images = batch_to_chw(chw_to_hwc(dataset.images), resolution=resolution,
                          channels=channels or dataset.channels, source=dataset.source)
    return ImageDataset(images=images, labels=dataset.labels, class_names=dataset.class_names,
                        patient_ids=dataset.patient_ids, name=dataset.name, source=dataset.source,
                        skipped=dataset.skipped, merged_duplicates=dataset.merged_duplicates,
                        name_declared=dataset.name_declared, class_names_from=dataset.class_names_from,
                        count_declared=dataset.count_declared)


def check_min_units(dataset: ImageDataset, min_records: int) -> None:
    """Raise :class:`TooFewRecordsError` if ``dataset`` has fewer than ``min_records`` units."""
    units = dataset.num_privacy_units
    if units >= min_records:
        return
    kind = "patients" if dataset.patient_ids is not None else "images"
    detail = (f" ({dataset.num_records} images)" if dataset.patient_ids is not None else "")
    raise TooFewRecordsError(
        f"only {units} {kind}{detail} in dataset {dataset.name!r}; at least {min_records} are "
        "required", path=None if dataset.source == DEMO_SOURCE else dataset.source,
        remedy=f"a differential-privacy guarantee over so few {kind} is weak: add more data, or "
               f"lower the threshold with min_records={units} (--min-records {units}) if you "
               "accept that")


def _check_split(split: str) -> None:
    if split not in KNOWN_SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid splits: {', '.join(KNOWN_SPLITS)}",
                          field="split", value=split, remedy="pass split='train'")


def _check_min_records(min_records: int) -> None:
    if isinstance(min_records, bool) or not isinstance(min_records, (int, np.integer)) \
            or min_records < 0:
        raise ConfigError(f"min_records must be a whole number >= 0, got {min_records!r}",
                          field="min_records", value=min_records, remedy="e.g. min_records=100")
