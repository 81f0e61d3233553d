"""Fixtures for the export tests: a hand-made bundle (fast, no torch) and one real tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpsad_core.export.layout import CROISSANT, LABELS, REPORT_JSON
from dpsad_core.export.manifest import seal_folder
from dpsad_core.export.signing import load_or_create_signing_key, signer_info


def make_sealed_bundle(folder: Path) -> Path:
    """A minimal bundle with the real layout and signature, written without torch or sampling."""
    key = load_or_create_signing_key()
    (folder / "images" / "0").mkdir(parents=True)
    (folder / "images" / "1").mkdir(parents=True)
    (folder / "images" / "0" / "0-000001.png").write_bytes(b"\x89PNG fake image zero" * 4)
    (folder / "images" / "1" / "1-000002.png").write_bytes(b"\x89PNG fake image one" * 4)
    (folder / LABELS).write_text("file_name,label,class_name\nimages/0/0-000001.png,0,0\nimages/1/1-000002.png,1,1\n")
    (folder / CROISSANT).write_text(json.dumps({"name": "test"}))
    report = {"title": "test", "guarantee": {"differentially_private": True, "epsilon": 7.25, "delta": 1e-05,
                                             "unit_of_privacy": "image"},
              "run": {"recipe": "dpsad-split", "run_id": "run-1"}, "dataset": {"name": "digits"},
              "bundle": {"images": 2}, "signer": signer_info(key.public_key()).to_dict()}
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=2))
    seal_folder(folder, key)
    return folder


@pytest.fixture
def sealed_bundle(tmp_path) -> Path:
    return make_sealed_bundle(tmp_path / "bundle")


def _train_tiny(workspace: Path, config_dir: Path, recipe: str) -> Path:
    from dpsad_core.events import RunFinished
    from dpsad_core.training import TrainConfig, resolve_hyperparameters, start_training

    with pytest.MonkeyPatch.context() as patch:
        # module-scoped: set up before the per-test isolated_dirs, so isolate the HMAC key here too
        patch.setenv("DPSAD_CONFIG_DIR", str(config_dir))
        patch.setenv("DPSAD_WORKSPACE", str(workspace))
        config = TrainConfig(data="demo", recipe=recipe, epsilon=10.0, preset="tiny",
                             hyper=resolve_hyperparameters("tiny"), max_steps=2, device="cpu")
        events = list(start_training(config, workspace=workspace))
    finished = [event for event in events if isinstance(event, RunFinished)]
    assert finished, "the tiny run did not finish"
    return Path(finished[0].result["run_dir"])


@pytest.fixture(scope="module")
def private_run(tmp_path_factory) -> Path:
    """A finished tiny dpsad run on the demo digits (a few seconds), shared by a test module."""
    return _train_tiny(tmp_path_factory.mktemp("ws"), tmp_path_factory.mktemp("cfg"), "dpsad-split")


@pytest.fixture(scope="module")
def nonprivate_run(tmp_path_factory) -> Path:
    """A finished tiny dpsad-paper run: NOT differentially private."""
    return _train_tiny(tmp_path_factory.mktemp("ws"), tmp_path_factory.mktemp("cfg"), "dpsad-paper")


def workspace_of(run_dir: Path) -> Path:
    return run_dir.parent.parent


@pytest.fixture(scope="module")
def few_step_run(tmp_path_factory) -> Path:
    """A finished tiny ``dpsad`` run: a few-step student distilled for free from its DP teacher."""
    return _train_tiny(tmp_path_factory.mktemp("ws"), tmp_path_factory.mktemp("cfg"), "dpsad")
