"""Record identities at import: duplicated rows and linked folders are refused in one line, or merged/dropped."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpsad_core.cli import main
from dpsad_core.data import load_dataset, load_demo
from dpsad_core.data.identity import RESIZED_SHARE, find_overlaps, register
from dpsad_core.errors import DataImportError


def digits_folder(root: Path, *, start: int = 0, count: int = 120, size: int = 32) -> Path:
    """``count`` demo digits as PNG class folders at ``size`` pixels (smooth images, like real scans)."""
    demo = load_demo(resolution=size)
    for row in range(start, start + count):
        folder = root / demo.class_names[int(demo.labels[row])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(demo.images[row, 0] * 255).astype(np.uint8)).save(folder / f"r{row}.png")
    return root


def manifest_twice(root: Path, count: int = 100) -> Path:
    rng = np.random.default_rng(3)
    lines = ["path,label"]
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / f"img{i}.png")
        lines.append(f"img{i}.png,{'ab'[i % 2]}")
    (root / "list.csv").write_text("\n".join(lines + lines[1:]) + "\n")
    return root / "list.csv"


def test_a_manifest_listing_every_row_twice_is_refused_in_one_line(tmp_path, capsys):
    manifest = manifest_twice(tmp_path)
    code = main(["import", str(manifest), "--name", "twice"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1
    assert "100 record(s) repeat the pixels of another record exactly" in err
    assert "rows 1, 101" in err and "--duplicates merge" in err and str(manifest) in err


def test_merge_makes_each_copy_group_one_privacy_unit_and_drop_keeps_one(tmp_path):
    manifest = manifest_twice(tmp_path)
    merged = load_dataset(manifest, duplicates="merge")
    assert merged.num_records == 200 and merged.num_privacy_units == 100 and merged.merged_duplicates == 100
    assert merged.summary()["merged_duplicates"] == 100 and merged.unit == "image (exact copies merged)"
    units = merged.privacy_units()
    assert (units[:100] == units[100:]).all()  # row i and its copy i + 100 share a unit
    dropped = load_dataset(manifest, duplicates="drop")
    assert dropped.num_records == dropped.num_privacy_units == 100


def test_merge_with_patient_ids_joins_the_patients_that_share_an_image(tmp_path):
    rng = np.random.default_rng(4)
    lines = ["path,label,patient_id"]
    for i in range(101):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
        lines.append(f"img{i}.png,a,p{i}")
    lines.append("img0.png,a,p7")  # patient p7 has a copy of p0's image: p0 and p7 are one unit
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    merged = load_dataset(tmp_path / "list.csv", duplicates="merge")
    assert merged.num_privacy_units == 100 and merged.unit == "patient"
    units = merged.privacy_units()
    assert units[0] == units[7] == units[101]


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_a_class_folder_linked_to_another_is_refused(tmp_path, capsys):
    root = digits_folder(tmp_path / "data", count=120)
    os.symlink(root / "0", root / "zero-again")
    code = main(["import", str(root), "--name", "linked"])
    err = capsys.readouterr().err
    # Refused when the folder is listed (it is reached twice), before its records could be counted twice.
    assert code == 3 and err.count("\n") == 1 and "each folder is read once" in err


def test_reordered_subset_and_resized_reimport_overlap_distinct_data_does_not(tmp_path, workspace):
    root = digits_folder(tmp_path / "a", count=120)
    first = load_dataset(root, resolution=16, min_records=0)
    register(workspace, first.fingerprint(), "first", first.identities())
    reordered = first.subset(np.arange(first.num_records)[::-1])
    assert reordered.fingerprint() == first.fingerprint()
    subset = first.subset(np.arange(40))
    (found,) = find_overlaps(workspace, subset.fingerprint(), subset.identities())
    assert found.name == "first" and found.exact == 40
    for size in (8, 24, 28):
        again = load_dataset(root, resolution=size, min_records=0)
        (found,) = find_overlaps(workspace, again.fingerprint(), again.identities())
        assert found.name == "first" and found.exact == 0 and found.resized >= RESIZED_SHARE, size
    other = load_dataset(digits_folder(tmp_path / "b", start=600, count=120), resolution=16, min_records=0)
    assert find_overlaps(workspace, other.fingerprint(), other.identities()) == []


def test_a_partial_reimport_at_another_size_overlaps(tmp_path, workspace):
    # A quarter of a registered dataset's records, re-imported at another size among other records: before
    # the ratio test, resized copies were found only when 80 % of a sample had twins, so this opened a fresh
    # budget for those 30 people.
    root = digits_folder(tmp_path / "a", count=120)
    first = load_dataset(root, resolution=16, min_records=0)
    register(workspace, first.fingerprint(), "first", first.identities())
    mixed = digits_folder(tmp_path / "b", start=0, count=30)
    digits_folder(mixed, start=600, count=90)
    again = load_dataset(mixed, resolution=24, min_records=0)
    (found,) = find_overlaps(workspace, again.fingerprint(), again.identities())
    assert found.name == "first" and found.exact == 0
    assert RESIZED_SHARE <= found.resized <= 0.3  # about the quarter of its records that are copies


def test_duplicates_policy_is_checked():
    with pytest.raises(Exception, match="unknown duplicates policy"):
        load_dataset(Path(__file__).parent, duplicates="ignore")


def test_rows_are_named_even_when_many_groups_repeat(tmp_path):
    manifest = manifest_twice(tmp_path, count=20)
    with pytest.raises(DataImportError, match=r"in 20 group\(s\).*rows 1, 21.*and 14 more group\(s\)"):
        load_dataset(manifest, min_records=0)
