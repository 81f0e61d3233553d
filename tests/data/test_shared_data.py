"""The importers on the real benchmark files in ../shared/data (skipped where absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import load_dataset
from dpsad_core.data.idx import FASHION_CLASSES
from dpsad_core.errors import ConfigError, DataImportError

pytestmark = pytest.mark.shared_data


def test_mnist_train(shared_data: Path) -> None:
    dataset = load_dataset(shared_data / "mnist")
    assert dataset.images.shape == (60_000, 1, 28, 28)
    assert dataset.name == "mnist-train" and dataset.class_names == tuple("0123456789")
    counts = dataset.class_counts
    assert sum(counts.values()) == 60_000 and counts["1"] == 6742 and counts["5"] == 5421
    assert dataset.images.min() == 0.0 and dataset.images.max() == 1.0
    assert dataset.num_privacy_units == 60_000


def test_mnist_test_file_directly(shared_data: Path) -> None:
    dataset = load_dataset(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert dataset.num_records == 10_000 and dataset.name == "mnist-test"
    with pytest.raises(ConfigError, match="train, test"):
        load_dataset(shared_data / "mnist", split="val")


def test_fashion_mnist_class_names(shared_data: Path) -> None:
    dataset = load_dataset(shared_data / "fashion-mnist", split="test")
    assert dataset.class_names == FASHION_CLASSES
    assert set(dataset.class_counts.values()) == {1000}


def test_pneumoniamnist(shared_data: Path) -> None:
    path = shared_data / "medmnist" / "pneumoniamnist.npz"
    # Its train split holds 18 exact copies of other records' pixels: refused by default,
    # as each copy would count as another privacy unit.
    with pytest.raises(DataImportError, match=r"18 record\(s\) repeat the pixels of another record.*rows 38, 2569"):
        load_dataset(path)
    train = load_dataset(path, duplicates="merge")
    assert train.num_records == 4708 and train.class_names == ("normal", "pneumonia")
    assert train.images.shape == (4708, 1, 28, 28)
    assert train.merged_duplicates == 18 and train.num_privacy_units == 4708 - 18
    assert load_dataset(path, duplicates="drop").num_records == 4708 - 18
    assert load_dataset(path, split="val").num_records == 524
    assert load_dataset(path, split="test", duplicates="keep").num_records == 624  # 3 copies: as test data, kept


def test_breastmnist_flat_labels(shared_data: Path) -> None:
    path = shared_data / "medmnist" / "breastmnist.npz"
    with np.load(path) as archive:
        assert archive["train_labels"].ndim == 1
    train = load_dataset(path)
    assert train.num_records == 546 and train.class_names == ("malignant", "normal/benign")
    assert sum(train.class_counts.values()) == 546
    assert load_dataset(path, split="val", min_records=50).num_records == 78
