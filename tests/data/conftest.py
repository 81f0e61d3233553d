"""Fixtures for the data tests: a private config dir, and builders for small datasets on disk."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep fingerprint keys out of the real config folder."""
    folder = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("DPSAD_CONFIG_DIR", str(folder))
    return folder


def random_grey(rng: np.random.Generator, size: int | tuple[int, int] = 8) -> np.ndarray:
    shape = (size, size) if isinstance(size, int) else size
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


class Builders:
    """Write small datasets of every supported format into a folder."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def class_folder(self, root: Path, *, classes: tuple[str, ...] = ("cat", "dog"),
                     per_class: int = 3, size: int = 8, colour: bool = False,
                     suffix: str = ".png") -> Path:
        for class_name in classes:
            (root / class_name).mkdir(parents=True)
            for i in range(per_class):
                shape = (size, size, 3) if colour else (size, size)
                pixels = self.rng.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(pixels).save(root / class_name / f"img{i}{suffix}")
        return root

    def manifest(self, root: Path, rows: list[tuple[str, str, str | None]], *,
                 size: int = 8, header: str = "path,label,patient_id",
                 create: bool = True) -> Path:
        """rows: (relative path, label, patient id or None); images are created unless told not."""
        root.mkdir(parents=True, exist_ok=True)
        lines = [header]
        for path, label, patient in rows:
            if create and not (root / path).exists():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(random_grey(self.rng, size)).save(root / path)
            lines.append(",".join([path, label] + ([patient or ""] if "patient_id" in header
                                                     else [])))
        csv_path = root / "manifest.csv"
        csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return csv_path

    @staticmethod
    def idx_bytes(array: np.ndarray) -> bytes:
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n)
                                                             for n in array.shape)
        return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()

    def idx_folder(self, root: Path, *, count: int = 20, size: int = 8, gz: bool = True,
                   splits: tuple[str, ...] = ("train", "t10k")) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for prefix in splits:
            images = self.rng.integers(0, 256, size=(count, size, size), dtype=np.uint8)
            labels = (np.arange(count) % 10).astype(np.uint8)
            for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
                data = self.idx_bytes(array)
                name = f"{prefix}-{kind}-ubyte"
                if gz:
                    (root / f"{name}.gz").write_bytes(gzip.compress(data))
                else:
                    (root / name).write_bytes(data)
        return root

    def npz(self, path: Path, *, count: int = 20, size: int = 8, colour: bool = False,
            flat_labels: bool = False, **overrides: np.ndarray) -> Path:
        arrays: dict[str, np.ndarray] = {}
        for split in ("train", "val", "test"):
            shape = (count, size, size, 3) if colour else (count, size, size)
            arrays[f"{split}_images"] = self.rng.integers(0, 256, size=shape, dtype=np.uint8)
            labels = (np.arange(count) % 3).astype(np.uint8)
            arrays[f"{split}_labels"] = labels if flat_labels else labels[:, None]
        arrays.update(overrides)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        return path

    def dicom_folder(self, root: Path, *, per_class: int = 3, size: int = 8,
                     patients: bool = True) -> Path:
        for c, class_name in enumerate(("normal", "sick")):
            (root / class_name).mkdir(parents=True)
            for i in range(per_class):
                pixels = self.rng.integers(0, 4096, size=(size, size), dtype=np.uint16)
                write_dicom(root / class_name / f"s{i}.dcm", pixels,
                            patient_id=f"P{(c * per_class + i) // 2}" if patients else None)
        return root


def write_dicom(path: Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2",
                patient_id: str | None = None, slope: float | None = None,
                intercept: float | None = None, with_pixels: bool = True) -> Path:
    """A minimal single-frame DICOM (Secondary Capture, explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    if patient_id is not None:
        ds.PatientID = patient_id
    if with_pixels:
        bits = 8 if pixels.dtype == np.uint8 else 16
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = bits
        ds.BitsStored = bits if bits == 8 else 12
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if slope is not None:
        ds.RescaleSlope = str(slope)
    if intercept is not None:
        ds.RescaleIntercept = str(intercept)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def build() -> Builders:
    return Builders(np.random.default_rng(1234))


@pytest.fixture
def shared_data() -> Path:
    """The read-only benchmark data beside the project; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def dicom():
    """The :func:`write_dicom` helper, for tests that build their own DICOM files."""
    return write_dicom


def run_import(source: Path, *extra: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """``dpsad-core import SOURCE --min-records 1 ...`` in a child process, as a user runs it.

    A child process, so that what reaches stderr (warnings included) is what a user sees, and so
    that a hang ends in ``TimeoutExpired`` instead of a stuck test. Limits the caller does not set
    are the defaults, whatever the environment running the tests says.
    """
    child_env = {key: value for key, value in os.environ.items()
                 if not key.startswith("DPSAD_MAX_") and key != "DPSAD_DEBUG"}
    child_env.update(env or {})
    # The hostile-input tests build small sets of identical images: merging the copies keeps the
    # duplicate refusal (tested in test_identity.py) out of what they test.
    return subprocess.run([sys.executable, "-m", "dpsad_core.cli", "import", str(source),
                           "--min-records", "1", "--duplicates", "merge", *extra], capture_output=True, text=True,
                          env=child_env, timeout=timeout)


def assert_refused(proc: subprocess.CompletedProcess, exit_code: int, *mentions: str) -> str:
    """The import was refused with ``exit_code`` and exactly one line on stderr naming each of
    ``mentions`` (a file name, a tag, a limit); returns that line."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == exit_code, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    for mention in mentions:
        assert mention in lines[0], (mention, lines[0])
    return lines[0]
