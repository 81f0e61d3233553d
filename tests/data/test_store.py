"""Saved datasets: round trip, idempotent save, refusal to overwrite, crash safety, listing."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import ImageDataset, list_saved_datasets, load_saved_dataset, save_dataset
from dpsad_core.errors import ConfigError, DataImportError


def toy(name: str = "toy", patients: bool = True, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    return ImageDataset(images=rng.random((6, 1, 4, 4), dtype=np.float32),
                        labels=np.array([0, 1, 2, 0, 1, 2], dtype=np.int64),
                        class_names=("a", "b", "c"),
                        patient_ids=np.array(list("xxyyzz")) if patients else None,
                        name=name, source="/some/where", skipped=("/some/where/bad.png",))


@pytest.mark.parametrize("patients", [True, False])
def test_round_trip(tmp_path: Path, patients: bool) -> None:
    dataset = toy(patients=patients)
    folder = save_dataset(dataset, tmp_path)
    assert folder == tmp_path / "datasets" / "toy"
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "dataset.npz"]
    loaded = load_saved_dataset(folder)
    np.testing.assert_array_equal(loaded.images, dataset.images)
    np.testing.assert_array_equal(loaded.labels, dataset.labels)
    assert loaded.fingerprint() == dataset.fingerprint()
    assert (loaded.name, loaded.source, loaded.class_names, loaded.skipped) == \
        (dataset.name, dataset.source, dataset.class_names, dataset.skipped)
    if patients:
        assert loaded.patient_ids.tolist() == dataset.patient_ids.tolist()
    else:
        assert loaded.patient_ids is None
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["class_names"] == ["a", "b", "c"] and meta["fingerprint"] == dataset.fingerprint(tmp_path)
    assert datetime.fromisoformat(meta["created"]).utcoffset().total_seconds() == 0


def test_saving_identical_again_is_a_no_op(tmp_path: Path) -> None:
    folder = save_dataset(toy(), tmp_path)
    before = (folder / "dataset.json").read_bytes()
    assert save_dataset(toy(), tmp_path) == folder
    assert (folder / "dataset.json").read_bytes() == before


def test_refuses_to_overwrite_a_different_dataset(tmp_path: Path) -> None:
    folder = save_dataset(toy(), tmp_path)
    with pytest.raises(DataImportError) as info:
        save_dataset(toy(seed=1), tmp_path)
    assert info.value.path == folder and "another name" in str(info.value)


def test_unsafe_name_refused(tmp_path: Path) -> None:
    for name in ("../escape", "a b", ".hidden", ""):
        with pytest.raises(ConfigError):
            save_dataset(dataclasses.replace(toy(), name=name), tmp_path)
    assert not (tmp_path / "escape").exists()


def test_kill_during_save_leaves_nothing_under_the_name(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("dpsad_core.data.store.atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        save_dataset(toy(), tmp_path)
    assert list((tmp_path / "datasets").iterdir()) == []
    monkeypatch.undo()
    assert save_dataset(toy(), tmp_path).is_dir()


def test_list_saved_datasets(tmp_path: Path) -> None:
    assert list_saved_datasets(tmp_path) == []
    save_dataset(toy("beta"), tmp_path)
    save_dataset(toy("alpha", seed=3), tmp_path)
    (tmp_path / "datasets" / "junk").mkdir()
    (tmp_path / "datasets" / ".alpha.tmp.partial").mkdir()
    listed = list_saved_datasets(tmp_path)
    assert [entry["name"] for entry in listed] == ["alpha", "beta"]
    assert listed[0]["num_privacy_units"] == 3 and listed[0]["unit"] == "patient"
    assert listed[0]["path"] == str(tmp_path / "datasets" / "alpha")


def test_loading_a_broken_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataImportError, match="no dataset.json"):
        load_saved_dataset(tmp_path)
    folder = save_dataset(toy(), tmp_path)
    (folder / "dataset.npz").write_bytes(b"garbage")
    with pytest.raises(DataImportError, match="dataset.npz"):
        load_saved_dataset(folder)
