"""MedMNIST .npz importer: layouts, known class names, and arrays that are not usable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import load_dataset
from dpsad_core.errors import ConfigError, DataImportError


@pytest.mark.parametrize("flat", [True, False])
def test_grey_npz_splits(tmp_path: Path, build, flat: bool) -> None:
    path = build.npz(tmp_path / "organmnist.npz", count=15, flat_labels=flat)
    dataset = load_dataset(path, split="val", min_records=1)
    assert dataset.images.shape == (15, 1, 8, 8) and dataset.name == "organmnist-val"
    assert dataset.class_names == ("0", "1", "2")
    assert dataset.labels.tolist() == [i % 3 for i in range(15)]
    with np.load(path) as archive:
        np.testing.assert_allclose(dataset.images[:, 0], archive["val_images"] / 255, atol=1e-6)


def test_colour_npz(tmp_path: Path, build) -> None:
    path = build.npz(tmp_path / "dermamnist.npz", colour=True)
    assert load_dataset(path, min_records=1).images.shape == (20, 3, 8, 8)
    assert load_dataset(path, channels=1, min_records=1).images.shape == (20, 1, 8, 8)


def test_known_class_names(tmp_path: Path, build) -> None:
    binary = (np.arange(20) % 2).astype(np.uint8)[:, None]
    overrides = {f"{s}_labels": binary for s in ("train", "val", "test")}
    pneumonia = build.npz(tmp_path / "pneumoniamnist_28.npz", **overrides)
    breast = build.npz(tmp_path / "breastmnist.npz", **overrides)
    assert load_dataset(pneumonia, min_records=1).class_names == ("normal", "pneumonia")
    assert load_dataset(breast, min_records=1).class_names == ("malignant", "normal/benign")


def test_class_names_agree_across_splits(tmp_path: Path, build) -> None:
    labels = np.zeros((20, 1), dtype=np.uint8)
    path = build.npz(tmp_path / "x.npz", test_labels=labels)
    assert load_dataset(path, split="test", min_records=1).class_names == ("0", "1", "2")


def test_float_images_in_unit_range_accepted(tmp_path: Path, build) -> None:
    images = np.random.default_rng(0).random((20, 8, 8)).astype(np.float32)
    path = build.npz(tmp_path / "f.npz", train_images=images)
    np.testing.assert_allclose(load_dataset(path, min_records=1).images[:, 0], images)


def test_nan_names_file_and_key(tmp_path: Path, build) -> None:
    images = np.random.default_rng(0).random((20, 8, 8))
    images[3, 2, 2] = np.nan
    path = build.npz(tmp_path / "n.npz", train_images=images)
    with pytest.raises(DataImportError) as info:
        load_dataset(path, min_records=1)
    assert "n.npz" in str(info.value) and "train_images" in str(info.value)
    assert "1 NaN" in str(info.value)


@pytest.mark.parametrize("key, value, fragment", [
    ("train_images", np.full((20, 8, 8), 300.0), "[0, 255]"),
    ("train_images", np.full((20, 8, 8), 300, dtype=np.int32), "0..255"),
    ("train_images", np.zeros((20, 8), dtype=np.uint8), "shape"),
    ("train_labels", np.full(20, 0.5), "non-integer"),
    ("train_labels", np.zeros((20, 14), dtype=np.uint8), "multi-label"),
    ("train_labels", np.full(20, -1), "negative"),
    ("train_labels", np.zeros(19, dtype=np.uint8), "19 labels for 20"),
])
def test_unusable_arrays_name_the_key(tmp_path: Path, build, key: str, value: np.ndarray,
                                      fragment: str) -> None:
    path = build.npz(tmp_path / "bad.npz", **{key: value})
    with pytest.raises(DataImportError) as info:
        load_dataset(path, min_records=1)
    message = str(info.value)
    assert "bad.npz" in message and key in message and fragment in message


def test_not_medmnist_layout(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", x=np.zeros(3), y=np.ones(3))
    with pytest.raises(DataImportError) as info:
        load_dataset(tmp_path / "other.npz", min_records=1)
    assert "other.npz" in str(info.value) and "'x'" in str(info.value)
    (tmp_path / "junk.npz").write_bytes(b"nonsense")
    with pytest.raises(DataImportError, match="junk.npz"):
        load_dataset(tmp_path / "junk.npz", min_records=1)


def test_missing_split_lists_valid_ones(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", train_images=np.zeros((3, 4, 4), np.uint8),
             train_labels=np.zeros(3, np.uint8))
    with pytest.raises(ConfigError, match="valid splits: train"):
        load_dataset(tmp_path / "t.npz", split="test", min_records=1)
