"""Hostile MedMNIST archives and MNIST IDX files: declared sizes are checked before anything is
allocated, decompression stops at what the header declared, and huge labels are refused by row.

Every case runs ``dpsad-core import`` in a child process and expects exit 3 with one line naming
the file. The files are a few kilobytes; the sizes they declare are terabytes.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.data.conftest import Builders, assert_refused, run_import

pytestmark = pytest.mark.timeout(120)


def npy_header_only(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    """A .npy header declaring ``shape`` with no values after it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def labels_member(count: int, *, top: int | float | None = None) -> bytes:
    """``count`` labels 0, 1, 2, 0, ... as ``N x 1``; ``top`` replaces the one at row count // 2."""
    labels = (np.arange(count) % 3).astype(np.float64 if isinstance(top, float) else np.uint64)
    if top is not None:
        labels[count // 2] = top
    return npy_bytes(labels[:, None])


def images_member(count: int, size: int = 8) -> bytes:
    return npy_bytes(np.random.default_rng(0).integers(0, 256, (count, size, size), np.uint8))


def test_npz_header_declaring_58_tib_is_refused_before_allocating(tmp_path):
    path = write_npz(tmp_path / "bomb.npz", {
        "train_images.npy": npy_header_only((60_000_000, 1024, 1024)),  # 58.2 TiB of uint8
        "train_labels.npy": labels_member(20)})
    assert_refused(run_import(path), 3, "bomb.npz", "train_images", "records")


def test_npz_header_within_records_but_too_many_bytes_is_refused(tmp_path):
    path = write_npz(tmp_path / "wide.npz", {
        "train_images.npy": npy_header_only((100, 4096, 4096)),  # 6.3 GiB as float32
        "train_labels.npy": labels_member(20)})
    assert_refused(run_import(path), 3, "wide.npz", "train_images", "bytes",
                   "DPSAD_MAX_DATA_BYTES")


def test_single_npy_with_a_huge_header_renamed_npz_is_refused(tmp_path):
    path = tmp_path / "single.npz"
    path.write_bytes(npy_header_only((2 ** 40, 2 ** 10)))
    assert_refused(run_import(path), 3, "single.npz", "single array")


def test_npz_member_that_is_not_an_array_is_never_read_whole(tmp_path):
    # A deflate bomb stored as "train_images" without .npy framing: 256 MB of zeros in 250 KB.
    path = tmp_path / "notnpy.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("train_images", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(256):
                member.write(block)
        archive.writestr("train_labels.npy", labels_member(20))
    assert_refused(run_import(path), 3, "notnpy.npz", "train_images")


@pytest.mark.parametrize("top, shown", [
    (2 ** 40, "label 1099511627776"),
    (999_999, "label 999999"),
    (2 ** 63 + 5, "label 9223372036854775813"),
    (1e300, "label 1e+300"),
])
def test_npz_label_making_too_many_classes_is_refused_with_its_row(tmp_path, top, shown):
    path = write_npz(tmp_path / "labels.npz", {"train_images.npy": images_member(20),
                                               "train_labels.npy": labels_member(20, top=top)})
    assert_refused(run_import(path), 3, "labels.npz", "train_labels[10]", shown, "1,000 classes")


def test_raising_the_class_limit_lets_many_classes_in(tmp_path):
    path = write_npz(tmp_path / "many.npz", {"train_images.npy": images_member(20),
                                             "train_labels.npy": labels_member(20, top=1500)})
    assert_refused(run_import(path), 3, "label 1500")
    proc = run_import(path, "--json", env={"DPSAD_MAX_CLASSES": "1501"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["num_classes"] == 1501


def idx_header(dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", n) for n in dims)


def idx_folder(root: Path, images: bytes, *, count: int = 20, gz: bool = False) -> Path:
    root.mkdir(parents=True)
    labels = Builders.idx_bytes((np.arange(count) % 10).astype(np.uint8))
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    (root / name).write_bytes(images)
    (root / "train-labels-idx1-ubyte").write_bytes(labels)
    return root


def test_idx_dimension_product_that_overflows_is_refused_not_a_crash(tmp_path):
    # 2**22 * 2**21 * 2**21 = 2**64: zero in 64-bit arithmetic, so a header-only file "fits".
    root = idx_folder(tmp_path / "mnist", idx_header((2 ** 22, 2 ** 21, 2 ** 21)))
    assert_refused(run_import(root), 3, "train-images-idx3-ubyte", "records")


def test_idx_images_over_the_pixel_limit_are_refused_from_the_header(tmp_path):
    root = idx_folder(tmp_path / "mnist", idx_header((20, 65535, 65535)))
    assert_refused(run_import(root), 3, "train-images-idx3-ubyte", "65535x65535", "pixels")


def test_idx_header_within_caps_is_refused_by_a_lowered_byte_limit(tmp_path):
    count, size = 20, 64
    images = np.zeros((count, size, size), np.uint8)
    images[:, 0, 0] = np.arange(count)  # distinct records: exact duplicates are refused at import
    root = idx_folder(tmp_path / "mnist", Builders.idx_bytes(images))
    assert run_import(root).returncode == 0
    assert_refused(run_import(root, env={"DPSAD_MAX_DATA_BYTES": "100000"}), 3,
                   "train-images-idx3-ubyte", "bytes", "100,000")


def gzip_bomb(header: bytes, zero_megabytes: int) -> bytes:
    """``header`` then ``zero_megabytes`` MB of zeros, as concatenated gzip members (a few KB)."""
    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    return gzip.compress(header) + member * zero_megabytes


# The child's own peak (VmHWM, in kB): ru_maxrss would be wrong here, because Linux carries it across
# fork and exec, so a child of a large pytest process starts with the parent's size.
PEAK_MEMORY_SCRIPT = """
import sys
from dpsad_core.cli import main
code = main(sys.argv[1:])
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
with open({out!r}, "w") as handle:
    handle.write(peak)
sys.exit(code)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak from /proc/self/status")
def test_idx_gzip_bomb_is_refused_in_bounded_memory(tmp_path):
    # The header declares 20 images of 8x8 (1,280 bytes); the stream inflates to 512 MB.
    root = idx_folder(tmp_path / "mnist", gzip_bomb(idx_header((20, 8, 8)), 512), gz=True)
    assert (root / "train-images-idx3-ubyte.gz").stat().st_size < 1_000_000
    out = tmp_path / "peak.txt"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DPSAD_MAX_")}
    proc = subprocess.run([sys.executable, "-c", PEAK_MEMORY_SCRIPT.format(out=str(out)), "import",
                           str(root), "--min-records", "1"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert_refused(proc, 3, "train-images-idx3-ubyte.gz", "too long")
    peak_megabytes = int(out.read_text()) / 1024
    assert peak_megabytes < 300, f"peak memory {peak_megabytes:.0f} MB for a 1 KB dataset"


def test_idx_gzip_bomb_behind_a_huge_header_is_refused_before_inflating(tmp_path):
    root = idx_folder(tmp_path / "mnist", gzip_bomb(idx_header((2 ** 32 - 1, 28, 28)), 64),
                      gz=True)
    assert_refused(run_import(root), 3, "train-images-idx3-ubyte.gz", "4,294,967,295 records")


def test_idx_damaged_gzip_is_one_line(tmp_path):
    good = gzip.compress(Builders.idx_bytes(np.zeros((20, 8, 8), np.uint8)))
    damaged = good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:]
    root = idx_folder(tmp_path / "mnist", damaged, gz=True)
    assert_refused(run_import(root), 3, "train-images-idx3-ubyte.gz", "gzip")
