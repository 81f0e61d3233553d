"""One contract every importer keeps, checked on each format."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import ImageDataset, load_dataset, load_demo


def _folder(tmp_path: Path, build) -> Callable[[], ImageDataset]:
    root = build.class_folder(tmp_path / "folder", classes=("a", "b", "c"))
    return lambda: load_dataset(root, min_records=1)


def _csv(tmp_path: Path, build) -> Callable[[], ImageDataset]:
    rows = [(f"i{k}.png", "yes" if k % 2 else "no", f"P{k // 3}") for k in range(7)]
    csv_path = build.manifest(tmp_path / "csv", rows)
    return lambda: load_dataset(csv_path, min_records=1)


def _idx(tmp_path: Path, build) -> Callable[[], ImageDataset]:
    root = build.idx_folder(tmp_path / "idx", count=15)
    return lambda: load_dataset(root, split="test", min_records=1)


def _npz(tmp_path: Path, build) -> Callable[[], ImageDataset]:
    path = build.npz(tmp_path / "npz" / "bloodmnist.npz", colour=True)
    return lambda: load_dataset(path, min_records=1)


def _dicom(tmp_path: Path, build) -> Callable[[], ImageDataset]:
    root = build.dicom_folder(tmp_path / "dicom")
    return lambda: load_dataset(root, min_records=1)


def _demo(tmp_path: Path, build) -> Callable[[], ImageDataset]:
    return lambda: load_demo(split="test")


FORMATS = {"folder": _folder, "csv": _csv, "idx": _idx, "npz": _npz, "dicom": _dicom,
           "demo": _demo}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_importer_contract(kind: str, tmp_path: Path, build) -> None:
    load = FORMATS[kind](tmp_path, build)
    dataset = load()

    images, labels = dataset.images, dataset.labels
    assert images.dtype == np.float32 and images.flags.c_contiguous
    assert images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[2] == images.shape[3]
    assert np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0
    assert labels.dtype == np.int64 and labels.shape == (dataset.num_records,)
    assert labels.min() >= 0 and labels.max() < dataset.num_classes
    assert sum(dataset.class_counts.values()) == dataset.num_records
    assert dataset.num_records > 0 and dataset.name and dataset.source
    units = dataset.privacy_units()
    assert units.shape == (dataset.num_records,) and units.dtype == np.int64
    assert len(np.unique(units)) == dataset.num_privacy_units
    if dataset.patient_ids is not None:
        assert dataset.patient_ids.dtype.kind == "U"

    assert load().fingerprint() == dataset.fingerprint()
    changed = images.copy()
    changed[-1, 0, 0, 0] = 0.25 if changed[-1, 0, 0, 0] != 0.25 else 0.75
    assert dataclasses.replace(dataset, images=changed).fingerprint() != dataset.fingerprint()
