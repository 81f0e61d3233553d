"""MNIST IDX files (MNIST, Fashion-MNIST and anything saved in their layout), gzipped or not.

A folder holds ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and the same for
``t10k`` (the test split). One images file may also be passed directly; its labels file must sit
beside it. IDX format: two zero bytes, a type byte (0x08 = unsigned byte), the number of
dimensions, then each dimension as a big-endian uint32, then the values in C order.

The dimensions are checked against the caps (records, pixels per image, data bytes; see
:mod:`.limits`) before the values are read, and a gzipped file is decompressed as a stream that
stops one byte after what the header declared, so a gzip bomb costs no more than an honest file.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dpsad_core.data import limits
from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.imaging import batch_to_chw
from dpsad_core.data.regular_files import open_regular
from dpsad_core.errors import ConfigError, DataImportError

SPLIT_PREFIXES = {"train": "train", "test": "t10k"}
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
_UNSIGNED_BYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def _existing(folder: Path, stem: str) -> Path | None:
    # Anything by that name that is not a folder: a FIFO or a broken link is then refused by name
    # when read, instead of being overlooked with a misleading "missing" message.
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if os.path.lexists(candidate) and not candidate.is_dir():
            return candidate
    return None


def is_idx_folder(folder: Path) -> bool:
    """Whether ``folder`` holds MNIST-style images files for at least one split."""
    return any(_existing(folder, f"{prefix}-images-idx3-ubyte")
               for prefix in SPLIT_PREFIXES.values())


def is_idx_file(path: Path) -> bool:
    return _stem(path).endswith(("idx3-ubyte", "idx1-ubyte"))


def _stem(path: Path) -> str:
    name = path.name.lower()
    return name[:-3] if name.endswith(".gz") else name


def class_names_for(folder: Path) -> tuple[str, ...]:
    """Fashion-MNIST's names when the folder's name says "fashion", else the digits."""
    return FASHION_CLASSES if "fashion" in folder.name.lower() else DIGIT_CLASSES


def idx_folder_files(folder: Path, split: str) -> tuple[Path, Path]:
    """The (images, labels) files of ``split`` in an IDX folder."""
    available = [s for s, prefix in SPLIT_PREFIXES.items()
                 if _existing(folder, f"{prefix}-images-idx3-ubyte")]
    if split not in SPLIT_PREFIXES or split not in available:
        raise ConfigError(f"{folder}: no split {split!r} in this MNIST IDX folder; valid splits: "
                          f"{', '.join(available)}", field="split", value=split,
                          remedy=f"pass split={available[0]!r}")
    prefix = SPLIT_PREFIXES[split]
    images = _existing(folder, f"{prefix}-images-idx3-ubyte")
    labels = _existing(folder, f"{prefix}-labels-idx1-ubyte")
    if labels is None:
        raise DataImportError(f"labels file {prefix}-labels-idx1-ubyte[.gz] is missing beside "
                              f"{images.name}", path=folder,  # type: ignore[union-attr]
                              remedy="add the labels file that belongs to the images")
    return images, labels  # type: ignore[return-value]


def labels_beside(images_path: Path) -> Path:
    """The labels file that belongs to an images file passed directly."""
    stem = _stem(images_path)
    if stem.endswith("idx1-ubyte"):
        raise DataImportError("this is an IDX labels file", path=images_path,
                              remedy="pass the images file (…-images-idx3-ubyte) or its folder")
    labels_stem = stem[: -len("idx3-ubyte")].replace("images", "labels") + "idx1-ubyte"
    labels = _existing(images_path.parent, labels_stem)
    if labels is None:
        raise DataImportError(f"no labels file {labels_stem}[.gz] beside the images file",
                              path=images_path, remedy="put the labels file in the same folder")
    return labels


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX array with ``ndim`` dimensions, checking magic, size and caps."""
    with open_regular(path) as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw  # type: ignore
        try:
            dims = _read_header(stream, path, ndim=ndim)
            size = math.prod(dims)  # a Python int: no overflow whatever the header says
            _check_dims(dims, size, path)
            data = stream.read(size + 1)  # one byte more tells "too long" without reading it all
        except (OSError, EOFError, zlib.error) as exc:
            raise DataImportError(f"truncated or damaged gzip file ({exc})", path=path,
                                  remedy="download or copy the file again") from None
    header_size = 4 + 4 * ndim
    if len(data) != size:
        state = "truncated" if len(data) < size else "too long"
        found = f"{header_size + len(data)}" if len(data) <= size else "more"
        raise DataImportError(f"{state}: dimensions {dims} need {header_size + size} bytes, the "
                              f"{'decompressed ' if gzipped else ''}file has {found}", path=path,
                              remedy="download or copy the file again")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _read_header(stream: BinaryIO, path: Path, *, ndim: int) -> tuple[int, ...]:
    magic = stream.read(4)
    if len(magic) < 4 or magic[0:2] != b"\x00\x00":
        raise DataImportError(f"not an IDX file (magic number {magic.hex() or 'missing'})",
                              path=path, remedy="pass MNIST-format IDX files")
    if magic[2] != _UNSIGNED_BYTE or magic[3] != ndim:
        raise DataImportError(f"IDX magic number {magic.hex()} is not 0000080{ndim} (unsigned "
                              f"bytes, {ndim} dimensions)", path=path,
                              remedy="pass the images (idx3) and labels (idx1) files of MNIST")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataImportError(f"truncated IDX header: {4 + len(raw_dims)} bytes", path=path,
                              remedy="download or copy the file again")
    return tuple(int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim))


def _check_dims(dims: tuple[int, ...], size: int, path: Path) -> None:
    """Refuse dimensions over the caps before a byte of the values is read."""
    limits.MAX_RECORDS.check(dims[0], what=f"dimensions {dims}", path=path)
    if len(dims) == 3:
        limits.MAX_PIXELS.check(dims[1] * dims[2], what=f"dimensions {dims} declare images of "
                                                        f"{dims[2]}x{dims[1]}", path=path)
        limits.check_float_images(dims[0], 1, dims[1], dims[2], path=path)
    limits.MAX_DATA_BYTES.check(size, what=f"values declared by dimensions {dims}", path=path)


def load_idx(images_path: Path, labels_path: Path, *, class_names: tuple[str, ...], name: str,
             resolution: int | None, channels: int | None) -> ImageDataset:
    """Import one IDX images file and its labels file."""
    raw_images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if len(labels) != len(raw_images):
        raise DataImportError(f"{len(labels)} labels for {len(raw_images)} images in "
                              f"{images_path.name}", path=labels_path,
                              remedy="pair each images file with its own labels file")
    if labels.size and int(labels.max()) >= len(class_names):
        raise DataImportError(f"label {int(labels.max())} is outside 0..{len(class_names) - 1}",
                              path=labels_path, remedy="IDX labels must be class numbers 0..9")
    unit = np.divide(raw_images, np.float32(255), dtype=np.float32)
    images = batch_to_chw(unit, resolution=resolution, channels=channels, source=images_path)
    return ImageDataset(images=images, labels=labels.astype(np.int64), class_names=class_names,
                        patient_ids=None, name=name, source=str(images_path))
