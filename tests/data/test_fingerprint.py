"""Fingerprints: keyed with the workspace's key, sensitive to every 8-bit pixel level and label, not to the order."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import ImageDataset, installation_key
from dpsad_core.data.fingerprint import KEY_FILE_NAME, load_or_create_key
from dpsad_core.data.identity import KEY_FILE_NAME as IDENTITY_KEY_FILE
from dpsad_core.errors import ConfigError


def toy(patients: bool = False) -> ImageDataset:
    rng = np.random.default_rng(5)
    return ImageDataset(images=rng.random((5, 1, 4, 4), dtype=np.float32),
                        labels=np.array([0, 1, 0, 1, 1], dtype=np.int64), class_names=("x", "y"),
                        patient_ids=np.array(list("abcab")) if patients else None,
                        name="toy", source="memory")


def test_key_file_created_once_private(_private_config_dir: Path) -> None:
    key = installation_key()
    path = _private_config_dir / KEY_FILE_NAME
    assert len(key) == 32 and path.read_bytes() == key
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    assert [p.name for p in _private_config_dir.iterdir()] == [KEY_FILE_NAME]  # no temp left


def test_racing_creators_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        results.append(load_or_create_key(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert path.read_bytes() == results[0]
    assert sorted(os.listdir(tmp_path)) == [KEY_FILE_NAME]


def test_damaged_key_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="fingerprint.key"):
        load_or_create_key(path)


def test_same_data_same_fingerprint_and_name_does_not_matter() -> None:
    first, second = toy(), toy()
    assert first.fingerprint() == second.fingerprint()
    renamed = dataclasses.replace(first, name="other", source="elsewhere")
    assert renamed.fingerprint() == first.fingerprint()
    assert first.fingerprint().startswith("hmac-sha256:") and len(first.fingerprint()) == 12 + 64


@pytest.mark.parametrize("change", ["pixel", "label", "class_name", "patients"])
def test_any_change_changes_fingerprint(change: str) -> None:
    base = toy(patients=True)
    if change == "pixel":
        images = base.images.copy()
        images[3, 0, 2, 1] = 1.0 if images[3, 0, 2, 1] < 0.5 else 0.0
        other = dataclasses.replace(base, images=images)
    elif change == "label":
        labels = base.labels.copy()
        labels[0] = 1
        other = dataclasses.replace(base, labels=labels)
    elif change == "class_name":
        other = dataclasses.replace(base, class_names=("x", "z"))
    else:
        other = dataclasses.replace(base, patient_ids=None)
    assert other.fingerprint() != base.fingerprint()


def test_reordered_records_keep_the_fingerprint() -> None:
    base = toy(patients=True)
    assert base.subset([4, 2, 0, 3, 1]).fingerprint() == base.fingerprint()
    assert base.subset([0, 1, 2, 3]).fingerprint() != base.fingerprint()


def test_the_key_lives_in_the_workspace_and_moves_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workspace: Path) -> None:
    here = toy().fingerprint()
    key_file = workspace / IDENTITY_KEY_FILE
    assert key_file.stat().st_size == 32
    if sys.platform != "win32":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    monkeypatch.setenv("DPSAD_CONFIG_DIR", str(tmp_path / "another-config"))
    assert toy().fingerprint() == here  # the config folder plays no part
    moved = tmp_path / "moved-workspace"
    shutil.copytree(workspace, moved)
    assert toy().fingerprint(moved) == here  # the ledger and its identities move together
    assert toy().fingerprint(tmp_path / "another-workspace") != here
