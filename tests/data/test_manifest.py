"""CSV manifest importer: relative paths, labels as class names, row numbers in errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpsad_core.data import load_dataset
from dpsad_core.errors import DataImportError

ROWS = [("img/a.png", "pneumonia", "P1"), ("img/b.png", "normal", "P1"),
        ("img/c.png", "normal", "P2"), ("img/d.png", "pneumonia", "P3")]


def test_manifest_with_patients(tmp_path: Path, build) -> None:
    csv_path = build.manifest(tmp_path / "m", ROWS)
    dataset = load_dataset(csv_path, min_records=1)
    assert dataset.class_names == ("normal", "pneumonia")
    assert dataset.labels.tolist() == [1, 0, 0, 1]
    assert dataset.patient_ids.tolist() == ["P1", "P1", "P2", "P3"]
    assert dataset.num_privacy_units == 3 and dataset.unit == "patient"
    units = dataset.privacy_units()
    assert units[0] == units[1] != units[2]
    assert dataset.name == "manifest" and dataset.source == str(csv_path.resolve())


def test_manifest_without_patient_column_absolute_path_blank_lines(tmp_path: Path, build) -> None:
    absolute = tmp_path / "elsewhere" / "x.png"
    absolute.parent.mkdir()
    Image.fromarray(np.full((8, 8), 9, dtype=np.uint8)).save(absolute)
    csv_path = build.manifest(tmp_path / "m", [("a.png", "yes", None), (str(absolute), "no", None)],
                              header="path,label")
    csv_path.write_text(csv_path.read_text() + "\n\n", encoding="utf-8")
    dataset = load_dataset(csv_path, min_records=1)
    assert dataset.patient_ids is None and dataset.num_records == 2
    np.testing.assert_allclose(dataset.images[1], 9 / 255, atol=1e-6)


def test_columns_in_any_order_with_extra_columns(tmp_path: Path, build) -> None:
    root = tmp_path / "m"
    build.manifest(root, ROWS[:2])
    (root / "other.csv").write_text("note,label,path\nhi,x,img/a.png\nho,y,img/b.png\n")
    dataset = load_dataset(root / "other.csv", min_records=1)
    assert dataset.class_names == ("x", "y")


def test_row_pointing_nowhere_names_csv_and_row(tmp_path: Path, build) -> None:
    csv_path = build.manifest(tmp_path / "m", ROWS)
    lines = csv_path.read_text().splitlines()
    lines.insert(3, "img/missing.png,normal,P9")  # becomes row 4 (header is row 1)
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataImportError) as info:
        load_dataset(csv_path, min_records=1)
    assert info.value.path == csv_path.resolve() and info.value.row == 4
    assert "manifest.csv, row 4" in str(info.value) and "missing.png" in str(info.value)


def test_missing_column_names_header_row(tmp_path: Path, build) -> None:
    csv_path = build.manifest(tmp_path / "m", [("a.png", "x", None)], header="path,class")
    with pytest.raises(DataImportError) as info:
        load_dataset(csv_path, min_records=1)
    assert info.value.row == 1 and "'label'" in str(info.value)


def test_empty_label_names_row(tmp_path: Path, build) -> None:
    csv_path = build.manifest(tmp_path / "m", [("a.png", "x", "P1"), ("b.png", "", "P2")])
    with pytest.raises(DataImportError) as info:
        load_dataset(csv_path, min_records=1)
    assert info.value.row == 3 and "empty label" in str(info.value)


def test_empty_patient_id_for_a_png_names_row(tmp_path: Path, build) -> None:
    csv_path = build.manifest(tmp_path / "m", [("a.png", "x", "P1"), ("b.png", "y", None)])
    with pytest.raises(DataImportError) as info:
        load_dataset(csv_path, min_records=1)
    assert info.value.row == 3 and "patient_id" in str(info.value)


def test_corrupt_image_names_csv_row_and_file(tmp_path: Path, build) -> None:
    csv_path = build.manifest(tmp_path / "m", ROWS)
    (tmp_path / "m" / "img" / "c.png").write_bytes(b"not a png at all")
    with pytest.raises(DataImportError) as info:
        load_dataset(csv_path, min_records=1)
    assert info.value.row == 4 and "c.png" in str(info.value)
    dataset = load_dataset(csv_path, skip_corrupt=True, min_records=1)
    assert dataset.num_records == 3 and dataset.skipped[0].endswith("c.png")


def test_empty_manifest(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataImportError, match="e.csv"):
        load_dataset(tmp_path / "e.csv", min_records=1)
    (tmp_path / "h.csv").write_text("path,label\n")
    with pytest.raises(DataImportError, match="no images"):
        load_dataset(tmp_path / "h.csv", min_records=1)
