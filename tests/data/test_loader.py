"""load_dataset dispatch and common rules, the demo, conform_dataset, resolve_data_source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpsad_core.data import conform_dataset, load_dataset, load_demo, resolve_data_source, save_dataset
from dpsad_core.errors import ConfigError, DataImportError, TooFewRecordsError


def test_demo_splits_are_fixed() -> None:
    train, test = load_demo(), load_demo(split="test")
    assert train.images.shape == (1500, 1, 8, 8) and test.num_records == 297
    assert train.name == "demo-digits-train" and test.name == "demo-digits-test"
    assert train.source == "demo" and train.class_names == tuple("0123456789")
    assert train.images.max() == 1.0 and train.images.min() == 0.0
    assert load_demo().fingerprint() == train.fingerprint()
    from sklearn.datasets import load_digits

    digits = load_digits()
    first = np.random.default_rng(0).permutation(1797)[0]
    np.testing.assert_array_equal(train.images[0, 0], digits.images[first] / 16)
    assert train.labels[0] == digits.target[first]


def test_demo_resolution_and_bad_split() -> None:
    assert load_demo(split="test", resolution=16).images.shape == (297, 1, 16, 16)
    with pytest.raises(ConfigError, match="train, test"):
        load_demo(split="val")


def test_nonexistent_path_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataImportError) as info:
        load_dataset(missing)
    assert info.value.path == missing and "nowhere" in str(info.value)


def test_too_few_records(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "d", per_class=3)
    with pytest.raises(TooFewRecordsError) as info:
        load_dataset(root)
    message = str(info.value)
    assert "only 6 images" in message and "at least 100" in message
    assert "min_records=6" in message and "weak" in message
    assert load_dataset(root, min_records=6).num_records == 6


def test_too_few_patients_counts_patients(tmp_path: Path, build) -> None:
    root = build.dicom_folder(tmp_path / "x", per_class=3)
    with pytest.raises(TooFewRecordsError, match=r"only 3 patients \(6 images\)"):
        load_dataset(root, min_records=4)


@pytest.mark.parametrize("kwargs", [{"resolution": 0}, {"resolution": 2.5}, {"channels": 2},
                                    {"min_records": -1}, {"split": "dev"}, {"name": "a b"}])
def test_bad_options_are_config_errors(tmp_path: Path, build, kwargs: dict) -> None:
    root = build.class_folder(tmp_path / "d")
    with pytest.raises(ConfigError):
        load_dataset(root, **{"min_records": 1, **kwargs})


def test_unrecognised_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataImportError, match="notes.txt"):
        load_dataset(tmp_path / "notes.txt")
    Image.new("L", (4, 4)).save(tmp_path / "one.png")
    with pytest.raises(DataImportError, match="single image"):
        load_dataset(tmp_path / "one.png")


def test_explicit_and_sanitised_names(tmp_path: Path, build) -> None:
    root = build.class_folder(tmp_path / "my scans (2024)")
    assert load_dataset(root, min_records=1).name == "my-scans-2024"
    assert load_dataset(root, min_records=1, name="scans.v2").name == "scans.v2"


def test_conform_dataset() -> None:
    demo = load_demo(split="test")
    assert conform_dataset(demo) is demo
    colour = conform_dataset(demo, resolution=4, channels=3)
    assert colour.images.shape == (297, 3, 4, 4)
    back = conform_dataset(colour, channels=1)
    np.testing.assert_allclose(back.images[:, 0], colour.images[:, 0], atol=1e-6)


def test_resolve_data_source(tmp_path: Path, build) -> None:
    workspace = tmp_path / "ws"
    demo = resolve_data_source("demo", workspace=workspace, split="test", resolution=12,
                               channels=3)
    assert demo.images.shape == (297, 3, 12, 12)
    saved = load_demo(split="test")
    save_dataset(saved, workspace)
    again = resolve_data_source("demo-digits-test", workspace=workspace)
    assert again.fingerprint() == saved.fingerprint()
    root = build.class_folder(tmp_path / "folder")
    assert resolve_data_source(str(root), workspace=workspace, min_records=1).num_records == 6
    with pytest.raises(TooFewRecordsError):
        resolve_data_source("demo-digits-test", workspace=workspace, min_records=1000)
    with pytest.raises(DataImportError) as info:
        resolve_data_source("mystery", workspace=workspace)
    message = str(info.value)
    assert "'mystery'" in message and "demo-digits-test" in message and "'demo'" in message
