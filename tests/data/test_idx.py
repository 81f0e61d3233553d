"""MNIST IDX importer: folders and single files, gzip or not, splits, and damaged files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import load_dataset
from dpsad_core.data.idx import FASHION_CLASSES
from dpsad_core.errors import ConfigError, DataImportError


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_splits(tmp_path: Path, build, gz: bool) -> None:
    root = build.idx_folder(tmp_path / "digits", count=20, gz=gz)
    train = load_dataset(root, min_records=1)
    test = load_dataset(root, split="test", min_records=1)
    assert train.images.shape == (20, 1, 8, 8) and train.class_names == tuple("0123456789")
    assert train.labels.tolist() == [i % 10 for i in range(20)]
    assert train.name == "digits-train" and test.name == "digits-test"
    assert train.fingerprint() != test.fingerprint()
    suffix = ".gz" if gz else ""
    raw = (root / f"train-images-idx3-ubyte{suffix}").read_bytes()
    raw = gzip.decompress(raw) if gz else raw
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(20, 8, 8)
    np.testing.assert_allclose(train.images[:, 0], pixels / 255, atol=1e-6)


def test_single_images_file(tmp_path: Path, build) -> None:
    root = build.idx_folder(tmp_path / "digits", count=12)
    dataset = load_dataset(root / "t10k-images-idx3-ubyte.gz", min_records=1)
    assert dataset.num_records == 12 and dataset.name == "digits-test"
    with pytest.raises(DataImportError, match="labels file"):
        load_dataset(root / "t10k-labels-idx1-ubyte.gz", min_records=1)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataImportError, match="t10k-labels-idx1-ubyte"):
        load_dataset(root / "t10k-images-idx3-ubyte.gz", min_records=1)


def test_fashion_folder_gets_fashion_class_names(tmp_path: Path, build) -> None:
    root = build.idx_folder(tmp_path / "fashion-mnist", count=10)
    assert load_dataset(root, min_records=1).class_names == FASHION_CLASSES


def test_unknown_split_is_config_error(tmp_path: Path, build) -> None:
    root = build.idx_folder(tmp_path / "d", splits=("train",))
    with pytest.raises(ConfigError) as info:
        load_dataset(root, split="val", min_records=1)
    assert "train" in str(info.value)
    with pytest.raises(ConfigError, match="valid splits: train"):
        load_dataset(root, split="test", min_records=1)
    with pytest.raises(ConfigError, match="valid splits"):
        load_dataset(root, split="training", min_records=1)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_file_named(tmp_path: Path, build, gz: bool) -> None:
    root = build.idx_folder(tmp_path / "d", count=20, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    target = root / name
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataImportError) as info:
        load_dataset(root, min_records=1)
    assert info.value.path == target.resolve() and name in str(info.value)
    assert "truncated" in str(info.value)


def test_bad_magic_and_label_mismatch(tmp_path: Path, build) -> None:
    root = build.idx_folder(tmp_path / "d", count=20, gz=False)
    images = root / "train-images-idx3-ubyte"
    labels = root / "train-labels-idx1-ubyte"
    good = images.read_bytes()
    images.write_bytes(b"\x00\x00\x0d\x03" + good[4:])  # float type code
    with pytest.raises(DataImportError, match="magic number"):
        load_dataset(root, min_records=1)
    images.write_bytes(good)
    labels.write_bytes(build.idx_bytes(np.zeros(19, dtype=np.uint8)))
    with pytest.raises(DataImportError, match="19 labels for 20 images"):
        load_dataset(root, min_records=1)
    labels.write_bytes(build.idx_bytes(np.full(20, 10, dtype=np.uint8)))
    with pytest.raises(DataImportError, match="label 10"):
        load_dataset(root, min_records=1)


def test_resize_and_colour(tmp_path: Path, build) -> None:
    root = build.idx_folder(tmp_path / "d", count=10)
    dataset = load_dataset(root, resolution=12, channels=3, min_records=1)
    assert dataset.images.shape == (10, 3, 12, 12)
    assert dataset.images.dtype == np.float32
