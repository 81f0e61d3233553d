"""MedMNIST ``.npz`` archives: ``{split}_images`` and ``{split}_labels`` for train, val and test.

Images are uint8 ``N x H x W`` (grey) or ``N x H x W x 3`` (colour); float images in [0, 1] or
[0, 255] are accepted too. Labels are ``N`` or ``N x 1`` whole numbers (multi-label MedMNIST sets
such as ChestMNIST, with ``N x 14`` labels, are not supported).

The archive is read with :mod:`zipfile` and each array's ``.npy`` header is checked (shape, dtype,
bytes; see :mod:`.limits`) before the array is read, so a header declaring a 58 TiB array is
refused in a millisecond. Members that are not ``.npy`` arrays are never read.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from dpsad_core.data import limits
from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.imaging import batch_to_chw, captured_warnings, to_unit_float
from dpsad_core.data.regular_files import open_regular
from dpsad_core.errors import ConfigError, DataImportError

SPLITS = ("train", "val", "test")
# Class names of the MedMNIST sets whose label meaning is known, by file-name prefix.
KNOWN_CLASS_NAMES = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal/benign"),
}
LAYOUT_REMEDY = ("save the arrays as {split}_images (uint8, N x H x W or N x H x W x 3) and "
                 "{split}_labels (N or N x 1) for split train, val or test")


def load_medmnist(path: Path, *, split: str, name: str, resolution: int | None,
                  channels: int | None) -> ImageDataset:
    """Import one split of a MedMNIST-layout ``.npz``. Non-square images are resized to square."""
    with open_regular(path) as handle:
        if handle.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX:
            raise DataImportError("holds a single array, not a MedMNIST archive", path=path,
                                  remedy=LAYOUT_REMEDY)
        handle.seek(0)
        try:
            archive = zipfile.ZipFile(handle)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataImportError(f"not a readable .npz archive ({exc})", path=path,
                                  remedy="save it again with numpy.savez") from None
        with archive, captured_warnings():
            members = _members(archive, path)
            splits = [s for s in SPLITS if f"{s}_images" in members and f"{s}_labels" in members]
            if not splits:
                raise DataImportError(f"not MedMNIST layout: found keys {sorted(members)}, "
                                      "expected train_images and train_labels (or val_/test_)",
                                      path=path, remedy=LAYOUT_REMEDY)
            if split not in splits:
                raise ConfigError(f"{path}: no split {split!r} in this archive; valid splits: "
                                  f"{', '.join(splits)}", field="split", value=split,
                                  remedy=f"pass split={splits[0]!r}")
            raw_images = _array(archive, members, f"{split}_images", path, images=True)
            all_labels = {s: _labels(_array(archive, members, f"{s}_labels", path),
                                     f"{s}_labels", path) for s in splits}
    labels = all_labels[split]
    raw_images = _check_image_shape(raw_images, f"{split}_images", path)
    if len(labels) != len(raw_images):
        raise DataImportError(f"{split}_labels has {len(labels)} labels for {len(raw_images)} "
                              f"images in {split}_images", path=path, remedy=LAYOUT_REMEDY)
    class_names = _class_names(path, all_labels)
    unit = to_unit_float(raw_images, path=path, what=f"{split}_images")
    images = batch_to_chw(unit, resolution=resolution, channels=channels, source=path)
    return ImageDataset(images=images, labels=labels, class_names=class_names, patient_ids=None,
                        name=name, source=str(path))


def _members(archive: zipfile.ZipFile, path: Path) -> dict[str, str]:
    """Array key (the member name without ``.npy``) to member name; a repeated key is refused."""
    members: dict[str, str] = {}
    for member in archive.namelist():
        key = member.removesuffix(".npy")
        if key in members:
            raise DataImportError(f"the archive holds two members for key {key!r}", path=path,
                                  remedy="save it again with numpy.savez")
        members[key] = member
    return members


def _array(archive: zipfile.ZipFile, members: dict[str, str], key: str, path: Path, *,
           images: bool = False) -> np.ndarray:
    """Read one array after checking its ``.npy`` header against the caps."""
    try:
        with archive.open(members[key]) as stream:
            _check_header(stream, key, path, images=images)
            stream.seek(0)
            return np.lib.format.read_array(stream, allow_pickle=False)
    except ValueError as exc:  # not .npy, object arrays refused without pickle, short data
        raise DataImportError(f"key {key!r} cannot be read ({exc})", path=path,
                              remedy=LAYOUT_REMEDY) from None
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError) as exc:
        raise DataImportError(f"key {key!r} is damaged ({exc})", path=path,
                              remedy="save the archive again") from None


def _check_header(stream: IO[bytes], key: str, path: Path, *, images: bool) -> None:
    """Refuse an array whose declared shape passes a cap, before reading its values."""
    version = np.lib.format.read_magic(stream)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(stream)
    if dtype.hasobject:
        raise DataImportError(f"key {key!r} holds Python objects, not numbers", path=path,
                              remedy=LAYOUT_REMEDY)
    declared = f"{key} declares shape {shape}"
    if shape:
        limits.MAX_RECORDS.check(shape[0], what=declared, path=path)
    if images and len(shape) >= 3:
        limits.MAX_PIXELS.check(shape[1] * shape[2], what=f"{declared}, images of "
                                                          f"{shape[2]}x{shape[1]}", path=path)
        channels = shape[3] if len(shape) == 4 else 1
        limits.check_float_images(shape[0], channels, shape[1], shape[2], path=path, key=key)
    limits.MAX_DATA_BYTES.check(math.prod(shape) * dtype.itemsize, what=declared, path=path)


def _check_image_shape(images: np.ndarray, key: str, path: Path) -> np.ndarray:
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3):
        if images.shape[1] > 0 and images.shape[2] > 0:
            return images
    raise DataImportError(f"{key} has shape {images.shape}; expected N x H x W or N x H x W x 3",
                          path=path, remedy=LAYOUT_REMEDY)


def _labels(labels: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Flatten ``N x 1`` labels and check they are non-negative whole numbers; int64."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataImportError(f"{key} has shape {labels.shape}; expected N or N x 1 (multi-label "
                              "datasets are not supported)", path=path, remedy=LAYOUT_REMEDY)
    if np.issubdtype(labels.dtype, np.floating):
        finite = np.isfinite(labels)
        whole = finite & (labels == np.round(np.where(finite, labels, 0)))
        if not whole.all():
            bad = labels[~whole][0]
            raise DataImportError(f"{key} holds non-integer label {bad!r} ({labels.dtype})",
                                  path=path, remedy="labels must be class numbers 0, 1, 2, ...")
    elif not np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
        raise DataImportError(f"{key} has dtype {labels.dtype}; labels must be integers",
                              path=path, remedy="labels must be class numbers 0, 1, 2, ...")
    if labels.size and labels.min() < 0:
        raise DataImportError(f"{key} holds negative label {labels.min()}", path=path,
                              remedy="labels must be class numbers 0, 1, 2, ...")
    if labels.size:
        # Before the cast to int64: a label of 2**40 would make 10**12 class names, and one of
        # 2**63 or 1e300 does not even fit.
        index = int(np.argmax(labels))
        limits.check_label_range(labels[index], what=f"{key}[{index}]", path=path)
    return labels.astype(np.int64)


def _class_names(path: Path, all_labels: dict[str, np.ndarray]) -> tuple[str, ...]:
    """Known names for known sets; else "0".."K-1" with K from all splits, so splits agree."""
    largest = max((int(labels.max()) for labels in all_labels.values() if labels.size), default=0)
    stem = path.name.lower()
    for prefix, names in KNOWN_CLASS_NAMES.items():
        if stem.startswith(prefix):
            if largest >= len(names):
                raise DataImportError(f"label {largest} is outside 0..{len(names) - 1} for "
                                      f"{prefix} ({', '.join(names)})", path=path,
                                      remedy="check that the file is the MedMNIST set its "
                                             "name says")
            return names
    return tuple(str(label) for label in range(largest + 1))
