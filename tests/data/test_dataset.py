"""ImageDataset: validation, properties, privacy units, subsets, summaries."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dpsad_core.data import ImageDataset
from dpsad_core.errors import DataImportError


def make(n: int = 6, *, channels: int = 1, size: int = 4, patients: list[str] | None = None,
         **overrides: object) -> ImageDataset:
    rng = np.random.default_rng(0)
    fields: dict[str, object] = {
        "images": rng.random((n, channels, size, size), dtype=np.float32),
        "labels": (np.arange(n) % 2).astype(np.int64),
        "class_names": ("a", "b"),
        "patient_ids": None if patients is None else np.array(patients, dtype=str),
        "name": "toy",
        "source": "memory",
    }
    fields.update(overrides)
    return ImageDataset(**fields)  # type: ignore[arg-type]


def test_properties() -> None:
    dataset = make(6, channels=3, size=5)
    assert (dataset.num_records, dataset.num_classes, dataset.channels, dataset.resolution) == \
        (6, 2, 3, 5)
    assert dataset.class_counts == {"a": 3, "b": 3}
    assert dataset.num_privacy_units == 6
    assert dataset.privacy_units().tolist() == list(range(6))
    assert dataset.privacy_units().dtype == np.int64


def test_class_counts_list_absent_classes() -> None:
    dataset = make(4, labels=np.zeros(4, dtype=np.int64), class_names=("a", "b", "c"))
    assert dataset.class_counts == {"a": 4, "b": 0, "c": 0}


def test_patient_ids_group_records_into_units() -> None:
    dataset = make(6, patients=["p2", "p1", "p2", "p3", "p1", "p2"])
    units = dataset.privacy_units()
    assert dataset.num_privacy_units == 3
    assert dataset.unit == "patient"
    assert units.dtype == np.int64 and units.shape == (6,)
    assert units[0] == units[2] == units[5]
    assert units[1] == units[4]
    assert len({units[0], units[1], units[3]}) == 3
    assert set(units.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("overrides, fragment", [
    ({"images": np.zeros((2, 1, 4, 4), dtype=np.float64)}, "float32"),
    ({"images": np.zeros((2, 1, 4, 5), dtype=np.float32)}, "H == W"),
    ({"images": np.zeros((2, 2, 4, 4), dtype=np.float32)}, "C in (1, 3)"),
    ({"images": np.full((2, 1, 4, 4), 1.5, dtype=np.float32)}, "[0, 1]"),
    ({"images": np.full((2, 1, 4, 4), np.nan, dtype=np.float32)}, "[0, 1]"),
    ({"labels": np.array([0, 2], dtype=np.int64)}, "labels span"),
    ({"labels": np.array([0, 1], dtype=np.int32)}, "int64"),
    ({"labels": np.array([0], dtype=np.int64)}, "shape"),
    ({"class_names": ("a", "a")}, "repeat"),
    ({"patient_ids": np.array(["x", ""], dtype=str)}, "non-empty"),
    ({"patient_ids": np.array(["x\ny", "z"], dtype=str)}, "line breaks"),
    ({"patient_ids": np.array([1, 2])}, "unicode"),
])
def test_validation_raises_data_import_error(overrides: dict, fragment: str) -> None:
    base = {"images": np.zeros((2, 1, 4, 4), dtype=np.float32),
            "labels": np.array([0, 1], dtype=np.int64)}
    base.update(overrides)
    with pytest.raises(DataImportError) as info:
        make(2, **base)
    assert fragment in str(info.value)
    assert "toy" in str(info.value)


def test_subset_by_indices_and_mask() -> None:
    dataset = make(6, patients=["a", "b", "c", "a", "b", "c"])
    part = dataset.subset([4, 0])
    assert part.num_records == 2
    np.testing.assert_array_equal(part.images[0], dataset.images[4])
    assert part.patient_ids.tolist() == ["b", "a"]
    assert part.class_names == dataset.class_names and part.name == dataset.name
    masked = dataset.subset(dataset.labels == 1)
    assert masked.labels.tolist() == [1, 1, 1]
    assert dataset.subset([]).num_records == 0
    with pytest.raises(IndexError):
        dataset.subset([6])
    with pytest.raises(IndexError):
        dataset.subset(np.ones(3, dtype=bool))


def test_summary_is_json_and_reveals_no_pixels() -> None:
    dataset = make(6, patients=["a", "a", "b", "b", "c", "c"])
    summary = dataset.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["unit"] == "patient" and summary["num_privacy_units"] == 3
    assert summary["num_records"] == 6 and summary["skipped"] == 0
    assert summary["fingerprint"].startswith("hmac-sha256:")
    assert set(summary) == {"name", "source", "num_records", "num_privacy_units", "unit",
                            "num_classes", "class_counts", "channels", "resolution",
                            "fingerprint", "skipped", "merged_duplicates", "name_declared",
                            "class_names_from", "count_declared"}


def test_frozen() -> None:
    dataset = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.name = "other"  # type: ignore[misc]
