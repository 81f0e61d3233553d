"""Class-folder importer: layouts, conversions, and every way a folder can be wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpsad_core.data import load_dataset
from dpsad_core.errors import DataImportError


def test_grey_folder(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "pets", classes=("dog", "cat"), per_class=3)
    dataset = load_dataset(root, min_records=1)
    assert dataset.class_names == ("cat", "dog")
    assert dataset.images.shape == (6, 1, 8, 8)
    assert dataset.class_counts == {"cat": 3, "dog": 3}
    assert dataset.name == "pets" and dataset.source == str(root.resolve())
    assert dataset.patient_ids is None
    expected = np.asarray(Image.open(root / "cat" / "img0.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(dataset.images[0, 0], expected, atol=1e-6)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".tiff"])
def test_other_formats_and_colour(tmp_path: Path, build, suffix: str) -> None:
    root = build.class_folder(tmp_path / "c", colour=True, suffix=suffix)
    dataset = load_dataset(root, min_records=1)
    assert dataset.images.shape == (6, 3, 8, 8)


def test_colour_to_grey_and_grey_to_colour(tmp_path: Path, build) -> None:
    colour = build.class_folder(tmp_path / "colour", colour=True)
    grey = load_dataset(colour, channels=1, min_records=1)
    assert grey.channels == 1
    rgb = np.asarray(Image.open(colour / "cat" / "img0.png"))
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32) / 255
    np.testing.assert_allclose(grey.images[0, 0], expected, atol=1 / 255 + 1e-6)
    as_rgb = load_dataset(build.class_folder(tmp_path / "grey"), channels=3, min_records=1)
    assert as_rgb.channels == 3
    np.testing.assert_array_equal(as_rgb.images[:, 0], as_rgb.images[:, 2])


def test_rgba_palette_and_16_bit(tmp_path: Path) -> None:
    (tmp_path / "d" / "a").mkdir(parents=True)
    Image.new("RGBA", (6, 6), (255, 0, 0, 10)).save(tmp_path / "d" / "a" / "rgba.png")
    Image.new("P", (6, 6), 3).save(tmp_path / "d" / "a" / "palette.png")
    dataset = load_dataset(tmp_path / "d", min_records=1)
    assert dataset.channels == 3
    np.testing.assert_allclose(dataset.images[1, :, 0, 0], [1, 0, 0])  # sorted: rgba after palette
    (tmp_path / "w" / "a").mkdir(parents=True)
    Image.fromarray(np.full((6, 6), 65535, dtype=np.uint16)).save(tmp_path / "w" / "a" / "x.png")
    assert load_dataset(tmp_path / "w", min_records=1).images.max() == pytest.approx(1.0)


def test_hidden_files_ignored_and_nested_folders_read(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "d")
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / ".thumbs").write_bytes(b"junk")
    (root / ".cache").mkdir()
    (root / "dog" / "series").mkdir()
    Image.new("L", (8, 8)).save(root / "dog" / "series" / "deep.png")
    dataset = load_dataset(root, min_records=1)
    assert dataset.class_counts == {"cat": 3, "dog": 4}


def test_sizes_differ_needs_resolution(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "d", size=8)
    Image.new("L", (12, 10)).save(root / "cat" / "big.png")
    with pytest.raises(DataImportError) as info:
        load_dataset(root, min_records=1)
    message = str(info.value)
    assert "8x8 (6 images)" in message and "12x10 (1 images)" in message
    assert "--resolution" in message
    resized = load_dataset(root, resolution=5, min_records=1)
    assert resized.images.shape == (7, 1, 5, 5)
    assert 0.0 <= resized.images.min() and resized.images.max() <= 1.0


def test_non_square_single_size_needs_resolution(tmp_path: Path) -> None:
    (tmp_path / "d" / "a").mkdir(parents=True)
    Image.new("L", (10, 6), 200).save(tmp_path / "d" / "a" / "x.png")
    with pytest.raises(DataImportError, match="not square"):
        load_dataset(tmp_path / "d", min_records=1)
    square = load_dataset(tmp_path / "d", resolution=4, min_records=1)
    np.testing.assert_allclose(square.images, 200 / 255, atol=1e-5)


def test_mixed_channels_error_counts_each_kind(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "d")
    Image.new("RGB", (8, 8)).save(root / "cat" / "colour.png")
    with pytest.raises(DataImportError) as info:
        load_dataset(root, min_records=1)
    message = str(info.value)
    assert "grey (6" in message and "colour (1" in message and "colour.png" in message
    assert "channels=1" in message
    assert load_dataset(root, channels=1, min_records=1).num_records == 7


def test_corrupt_png_named_and_skippable(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "d")
    bad = root / "dog" / "broken.png"
    bad.write_bytes(np.random.default_rng(3).bytes(200))
    with pytest.raises(DataImportError) as info:
        load_dataset(root, min_records=1)
    assert info.value.path == bad and "broken.png" in str(info.value)
    assert "skip_corrupt=True" in str(info.value)
    dataset = load_dataset(root, skip_corrupt=True, min_records=1)
    assert dataset.num_records == 6 and dataset.skipped == (str(bad),)
    assert dataset.summary()["skipped"] == 1


def test_truncated_png_is_corrupt(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "d", size=32)
    target = root / "cat" / "img1.png"
    target.write_bytes(target.read_bytes()[:60])
    with pytest.raises(DataImportError, match="img1.png"):
        load_dataset(root, min_records=1)


def test_empty_class_folder_named(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "d")
    (root / "zebra").mkdir()
    with pytest.raises(DataImportError) as info:
        load_dataset(root, min_records=1)
    assert info.value.path == root / "zebra" and "zebra" in str(info.value)


def test_unknown_extension_named(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "d")
    (root / "cat" / "notes.txt").write_text("hello")
    with pytest.raises(DataImportError) as info:
        load_dataset(root, min_records=1)
    assert "notes.txt" in str(info.value) and "remove" in str(info.value)


def test_stray_top_level_file_named(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "d")
    (root / "README.md").write_text("x")
    with pytest.raises(DataImportError, match="README.md"):
        load_dataset(root, min_records=1)


def test_folder_without_classes(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DataImportError, match="class subfolders"):
        load_dataset(tmp_path / "flat", min_records=1)
