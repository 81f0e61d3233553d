"""The caps on records, classes and data bytes for file-based imports, and their overrides.

Each cap is lowered through its environment variable so that a few tiny files cross it; the same
files import when the cap is left alone. Every refusal is exit 3 with one line naming the file or
manifest row and the variable that raises the cap.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.data.conftest import Builders, assert_refused, run_import

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def builders() -> Builders:
    return Builders(np.random.default_rng(7))


def test_class_folders_over_the_class_limit_are_refused_before_reading(tmp_path, builders):
    root = builders.class_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=1)
    (root / "c" / "img0.png").write_bytes(b"never decoded")  # refused before any decoding
    assert_refused(run_import(root, env={"DPSAD_MAX_CLASSES": "2"}), 3, "class subfolders",
                   "3 classes", "DPSAD_MAX_CLASSES")


def test_image_files_over_the_record_limit_are_refused_while_listing(tmp_path, builders):
    root = builders.class_folder(tmp_path / "data", per_class=3)
    assert_refused(run_import(root, env={"DPSAD_MAX_RECORDS": "5"}), 3, "image files found",
                   "6 records", "DPSAD_MAX_RECORDS")
    assert run_import(root, "--classes", "cat,dog", env={"DPSAD_MAX_RECORDS": "6"}).returncode == 0


def test_manifest_rows_over_the_record_limit_are_refused_at_the_row(tmp_path, builders):
    csv_path = builders.manifest(tmp_path / "data", [(f"{i}.png", "cat", None) for i in range(4)],
                                 header="path,label")
    assert_refused(run_import(csv_path, env={"DPSAD_MAX_RECORDS": "3"}), 3, "manifest.csv",
                   "row 5", "4 records")


def test_manifest_label_over_the_class_limit_is_refused_at_its_row(tmp_path, builders):
    rows = [("a.png", "cat", None), ("b.png", "dog", None), ("c.png", "cat", None),
            ("d.png", "=cmd|' /C calc'!A0", None)]
    csv_path = builders.manifest(tmp_path / "data", rows, header="path,label")
    assert_refused(run_import(csv_path, env={"DPSAD_MAX_CLASSES": "2"}), 3, "manifest.csv",
                   "row 5", "3 classes")


def test_manifest_without_line_breaks_is_refused_without_reading_it_whole(tmp_path):
    csv_path = tmp_path / "flat.csv"
    csv_path.write_text("path,label\n" + "x" * 1_200_000, encoding="utf-8")
    assert_refused(run_import(csv_path), 3, "flat.csv", "line 2", "longer than")


def test_images_decoded_so_far_are_bounded_by_the_data_byte_limit(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((100, 100), i, np.uint8)).save(root / name / f"{i}.png")
    # Each image is 40,000 bytes as float32; the third crosses 100,000.
    line = assert_refused(run_import(root, "--resolution", "8",
                                     env={"DPSAD_MAX_DATA_BYTES": "100000"}), 3,
                          "3 images read so far", "DPSAD_MAX_DATA_BYTES")
    assert "2.png" in line


def test_resizing_up_past_the_data_byte_limit_is_refused_before_allocating(tmp_path, builders):
    root = builders.idx_folder(tmp_path / "mnist", count=20, size=8)
    assert_refused(run_import(root, "--resolution", "1024",
                              env={"DPSAD_MAX_DATA_BYTES": "10000000"}), 3,
                   "20 images of 1x1024x1024", "83,886,080 bytes")
    assert run_import(root, "--resolution", "16").returncode == 0
