"""Hostile and careless image files: sizes are checked from headers before decoding, values that
make no sense are refused, and every refusal is one line on stderr naming the file.

The files are built small on disk (a 12000x12000 PNG of zeros is 140 KB) but would decode to over
a gigabyte; each case runs ``dpsad-core import`` in a child process, so a hang or a flood of
memory shows as a failed test rather than a stuck or killed run.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.conftest import assert_refused, run_import, write_dicom

pytestmark = pytest.mark.timeout(120)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zeros_png(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit grey PNG of zeros, compressed row by row (never held decoded in memory)."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data)
                     + _chunk(b"IEND", b""))
    return path


def small_pngs(folder: Path, count: int = 3, size: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12000x12000 zeros: 140 KB on disk, 144 megapixels (576 MB as float32) decoded."""
    return zeros_png(tmp_path_factory.mktemp("huge") / "zeros.png", 12000, 12000)


def test_png_that_decodes_to_a_gigabyte_is_refused_from_its_header(tmp_path, huge_png):
    root = tmp_path / "data"
    small_pngs(root / "a")
    (root / "b").mkdir()
    (root / "b" / "bomb.png").write_bytes(huge_png.read_bytes())
    line = assert_refused(run_import(root), 3, "bomb.png", "pixels", "DPSAD_MAX_PIXELS")
    assert "50,000,000" in line


def test_png_over_the_limit_but_under_pils_error_names_its_size(tmp_path):
    root = tmp_path / "data"
    small_pngs(root / "a")
    zeros_png(root / "b" / "wide.png", 100, 60)
    line = assert_refused(run_import(root, env={"DPSAD_MAX_PIXELS": "5000"}), 3, "wide.png",
                          "100x60", "6,000 pixels")
    assert "5,000 pixels" in line


def test_raising_the_pixel_limit_lets_a_large_image_in(tmp_path):
    root = tmp_path / "data"
    small_pngs(root / "a", size=80)
    small_pngs(root / "b", size=80)
    assert_refused(run_import(root, "--classes", "a,b", env={"DPSAD_MAX_PIXELS": "6399"}), 3, "6,400 pixels")
    proc = run_import(root, "--classes", "a,b", env={"DPSAD_MAX_PIXELS": "6400"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_limit_that_is_not_a_number_is_a_config_error(tmp_path):
    root = tmp_path / "data"
    small_pngs(root / "a")
    assert_refused(run_import(root, env={"DPSAD_MAX_PIXELS": "lots"}), 2, "DPSAD_MAX_PIXELS",
                   "'lots'")
    assert_refused(run_import(root, env={"DPSAD_MAX_PIXELS": "-5"}), 2, "DPSAD_MAX_PIXELS")


def test_dicom_declaring_huge_rows_and_columns_is_refused_before_decoding(tmp_path):
    root = tmp_path / "data"
    small_pngs(root / "a")
    path = write_dicom(root / "b" / "huge.dcm", np.zeros((8, 8), dtype=np.uint16))
    _patch_dicom_size(path, rows=40000, columns=40000)
    assert_refused(run_import(root), 3, "huge.dcm", "40000x40000", "pixels")


def _patch_dicom_size(path: Path, *, rows: int, columns: int) -> None:
    """Rewrite the Rows and Columns values in place (explicit VR little endian, US)."""
    data = bytearray(path.read_bytes())
    for element, value in ((0x0010, rows), (0x0011, columns)):
        tag = struct.pack("<HH", 0x0028, element) + b"US" + struct.pack("<H", 2)
        at = data.index(tag) + len(tag)
        data[at:at + 2] = struct.pack("<H", value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("slope, intercept, says", [
    ("1e308", None, "floating-point range"),
    ("-1e308", None, "floating-point range"),
    ("0", None, "same value"),
    ("1e-300", "1e10", "same value"),
])
def test_dicom_rescale_that_blanks_the_image_is_refused_naming_the_tag(tmp_path, slope, intercept,
                                                                       says):
    root = tmp_path / "data"
    for label in ("normal", "sick"):
        for i in range(2):
            write_dicom(root / label / f"s{i}.dcm",
                        np.arange(64, dtype=np.uint16).reshape(8, 8) * (i + 1))
    write_dicom(root / "sick" / "bad.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8),
                slope=slope, intercept=intercept)
    assert_refused(run_import(root), 3, "bad.dcm", "RescaleSlope", says)


def test_ordinary_dicom_rescale_still_imports(tmp_path):
    root = tmp_path / "data"
    for label in ("normal", "sick"):
        write_dicom(root / label / "s.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8),
                    slope="0.5", intercept="-1024")
    proc = run_import(root, "--classes", "normal,sick")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_pil_warnings_do_not_reach_stderr_beside_the_error(tmp_path):
    # A palette PNG with byte transparency makes PIL warn when it is converted. The file is fine;
    # the import is refused for too few records, and that one line must be all of stderr.
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    palette = Image.new("P", (8, 8))
    palette.putpalette([0, 0, 0, 255, 255, 255, 9, 9, 9])
    palette.save(root / "a" / "palette.png", transparency=b"\x80\x40\x20")
    small_pngs(root / "b", count=1)
    line = assert_refused(run_import(root, "--grey", "--min-records", "100"), 3, "at least 100")
    assert "Warning" not in line


def test_pydicom_warnings_do_not_reach_stderr_beside_the_error(tmp_path):
    # A PatientID longer than DICOM allows makes pydicom warn when it is read.
    from pydicom import config

    root = tmp_path / "data"
    mode = config.settings.writing_validation_mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config.settings.writing_validation_mode = config.IGNORE
        try:
            for label in ("normal", "sick"):
                write_dicom(root / label / "long-id.dcm",
                            np.arange(64, dtype=np.uint16).reshape(8, 8), patient_id=label * 20)
        finally:
            config.settings.writing_validation_mode = mode
    line = assert_refused(run_import(root, "--min-records", "100"), 3, "at least 100")
    assert "Warning" not in line


def test_error_text_with_line_breaks_is_printed_as_one_line(tmp_path):
    root = tmp_path / "data"
    small_pngs(root / "a")
    (root / "b").mkdir()
    (root / "b" / "two\nlines.png").write_bytes(b"not a png at all\nsecond line\n")
    assert_refused(run_import(root), 3, "two lines.png", "not a readable image")
