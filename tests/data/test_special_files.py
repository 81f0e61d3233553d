"""Special files and symbolic links: only regular files are read, each folder once, and whatever is
refused is named with what it is (a FIFO, a device, a loop), never as a missing or damaged image.

A FIFO or ``/dev/zero`` would hang a reader that opened it; each case runs ``dpsad-core import`` in
a child process with a timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.conftest import Builders, assert_refused, run_import

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs and symbolic links"),
]


def class_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
                root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("skip_corrupt", [False, True])
def test_fifo_named_like_an_image_is_refused_without_opening_it(tmp_path, skip_corrupt):
    root = class_folder(tmp_path / "data")
    os.mkfifo(root / "cat" / "x.png")
    extra = ("--skip-corrupt",) if skip_corrupt else ()
    assert_refused(run_import(root, *extra, timeout=30), 3, "x.png", "FIFO", "regular file")


def test_dicom_symlink_to_dev_zero_is_refused(tmp_path):
    root = class_folder(tmp_path / "data")
    (root / "dog" / "scan.dcm").symlink_to("/dev/zero")
    assert_refused(run_import(root, timeout=30), 3, "scan.dcm", "character device")


def test_symlink_loop_is_reported_as_a_loop(tmp_path):
    root = class_folder(tmp_path / "data")
    (root / "cat" / "loop.png").symlink_to(root / "cat" / "loop.png")
    assert_refused(run_import(root, "--skip-corrupt", timeout=30), 3, "loop.png",
                   "symbolic link loop")


def test_broken_symlink_is_reported_as_broken(tmp_path):
    root = class_folder(tmp_path / "data")
    (root / "cat" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert_refused(run_import(root, timeout=30), 3, "gone.png", "broken symbolic link",
                   "nowhere.png")


def test_class_folder_linked_into_another_class_is_refused_naming_both(tmp_path):
    root = class_folder(tmp_path / "data")
    (root / "kitten").symlink_to(root / "cat", target_is_directory=True)
    line = assert_refused(run_import(root, timeout=30), 3, "reached twice")
    assert str(root / "cat") in line and str(root / "kitten") in line


def test_link_back_to_a_parent_folder_ends_the_walk_at_once(tmp_path):
    root = class_folder(tmp_path / "data")
    (root / "cat" / "again").symlink_to(root, target_is_directory=True)
    line = assert_refused(run_import(root, timeout=30), 3, "reached twice")
    assert str(root / "cat" / "again") in line


def test_class_folder_linked_from_outside_the_dataset_is_read(tmp_path):
    root = class_folder(tmp_path / "data", classes=("cat",))
    elsewhere = class_folder(tmp_path / "elsewhere", classes=("dog",))
    (root / "dog").symlink_to(elsewhere / "dog", target_is_directory=True)
    proc = run_import(root, "--classes", "cat,dog", timeout=30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_manifest_row_naming_a_fifo_says_so(tmp_path):
    csv_path = Builders(np.random.default_rng(0)).manifest(
        tmp_path / "data", [("a.png", "cat", None), ("b.png", "dog", None)], header="path,label")
    os.mkfifo(tmp_path / "data" / "pipe.png")
    with open(csv_path, "a", encoding="utf-8") as handle:
        handle.write("pipe.png,dog\n")
    assert_refused(run_import(csv_path, timeout=30), 3, "manifest.csv", "row 4", "pipe.png", "FIFO")


def test_manifest_that_is_a_fifo_is_refused_without_opening_it(tmp_path):
    source = tmp_path / "data.csv"
    os.mkfifo(source)
    assert_refused(run_import(source, timeout=30), 3, "data.csv", "FIFO")


def test_idx_file_that_is_a_fifo_is_named(tmp_path):
    root = Builders(np.random.default_rng(0)).idx_folder(tmp_path / "mnist", gz=False,
                                                        splits=("train",))
    (root / "train-images-idx3-ubyte").unlink()
    os.mkfifo(root / "train-images-idx3-ubyte")
    assert_refused(run_import(root, timeout=30), 3, "train-images-idx3-ubyte", "FIFO")


def test_source_that_is_a_symlink_loop_is_named(tmp_path):
    source = tmp_path / "looped.npz"
    source.symlink_to(source)
    assert_refused(run_import(source, timeout=30), 3, "looped.npz", "symbolic link loop")
