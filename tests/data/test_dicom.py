"""DICOM import: rescale, MONOCHROME1, per-image normalisation, patient ids, damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import load_dataset
from dpsad_core.data.dicom import read_dicom
from dpsad_core.errors import DataImportError

RAMP = np.arange(16, dtype=np.uint16).reshape(4, 4) * 100 + 50  # 50 .. 1550, 12-bit range


def test_monochrome2_normalised_by_own_min_max(tmp_path: Path, dicom) -> None:
    image, patient = read_dicom(dicom(tmp_path / "a.dcm", RAMP, patient_id="  P7 "))
    np.testing.assert_allclose(image, (RAMP - 50) / 1500, atol=1e-6)
    assert image.dtype == np.float32 and patient == "P7"


def test_eight_bit(tmp_path: Path, dicom) -> None:
    pixels = np.array([[0, 10], [20, 40]], dtype=np.uint8)
    image, patient = read_dicom(dicom(tmp_path / "b.dcm", pixels))
    np.testing.assert_allclose(image, [[0, 0.25], [0.5, 1]])
    assert patient is None


def test_monochrome1_is_inverted(tmp_path: Path, dicom) -> None:
    normal, _ = read_dicom(dicom(tmp_path / "m2.dcm", RAMP))
    inverted, _ = read_dicom(dicom(tmp_path / "m1.dcm", RAMP, photometric="MONOCHROME1"))
    np.testing.assert_allclose(inverted, 1 - normal, atol=1e-6)
    assert inverted[0, 0] == 1.0  # the lowest stored value displays brightest


def test_rescale_slope_and_intercept_applied(tmp_path: Path, dicom) -> None:
    plain, _ = read_dicom(dicom(tmp_path / "p.dcm", RAMP))
    # A positive slope is invisible after min/max normalisation; a negative one flips the image.
    ct, _ = read_dicom(dicom(tmp_path / "ct.dcm", RAMP, slope=2.5, intercept=-1024))
    flipped, _ = read_dicom(dicom(tmp_path / "f.dcm", RAMP, slope=-1, intercept=4095))
    np.testing.assert_allclose(ct, plain, atol=1e-6)
    np.testing.assert_allclose(flipped, 1 - plain, atol=1e-6)


def test_constant_image_gives_zeros(tmp_path: Path, dicom) -> None:
    image, _ = read_dicom(dicom(tmp_path / "c.dcm", np.full((4, 4), 700, dtype=np.uint16),
                                photometric="MONOCHROME1"))
    assert not image.any()


def test_dicom_class_folder_groups_patients(tmp_path: Path, build) -> None:
    root = build.dicom_folder(tmp_path / "xray", per_class=3)
    dataset = load_dataset(root, min_records=1)
    assert dataset.class_names == ("normal", "sick") and dataset.images.shape == (6, 1, 8, 8)
    assert dataset.patient_ids.tolist() == ["P0", "P0", "P1", "P1", "P2", "P2"]
    assert dataset.num_privacy_units == 3 and dataset.summary()["unit"] == "patient"


def test_manifest_patient_id_wins_over_tag(tmp_path: Path, dicom) -> None:
    dicom(tmp_path / "a.dcm", RAMP, patient_id="TAG-A")
    dicom(tmp_path / "b.dcm", RAMP, patient_id="TAG-B")
    (tmp_path / "m.csv").write_text("path,label,patient_id\na.dcm,x,CSV-A\nb.dcm,y,\n")
    dataset = load_dataset(tmp_path / "m.csv", min_records=1, duplicates="keep")  # both hold RAMP
    assert dataset.patient_ids.tolist() == ["CSV-A", "TAG-B"]


def test_half_the_records_without_patient_id_is_an_error(tmp_path: Path, build, dicom) -> None:
    root = build.dicom_folder(tmp_path / "xray")
    dicom(root / "sick" / "anonymous.dcm", RAMP)
    with pytest.raises(DataImportError) as info:
        load_dataset(root, min_records=1)
    assert "anonymous.dcm" in str(info.value) and "patient id" in str(info.value)


def test_dicom_without_pixel_data_is_corrupt(tmp_path: Path, build, dicom) -> None:
    root = build.dicom_folder(tmp_path / "xray", patients=False)
    empty = dicom(root / "normal" / "empty.dcm", RAMP, with_pixels=False)
    with pytest.raises(DataImportError) as info:
        load_dataset(root, min_records=1)
    assert info.value.path == empty and "no pixel data" in str(info.value)
    dataset = load_dataset(root, skip_corrupt=True, min_records=1)
    assert dataset.skipped == (str(empty),) and dataset.num_records == 6


def test_random_bytes_dcm_is_corrupt(tmp_path: Path, build) -> None:
    root = build.dicom_folder(tmp_path / "xray", patients=False)
    (root / "sick" / "noise.dcm").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DataImportError, match="noise.dcm"):
        load_dataset(root, min_records=1)
