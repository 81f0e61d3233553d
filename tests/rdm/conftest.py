"""A tiny public model and private index, trained once per test session and copied into each test's workspace."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import resolve_data_source, save_dataset
from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.fingerprint import KEY_FILE_NAME
from dpsad_core.paths import config_dir

MODEL = "tiny-public"
INDEX = "private-tiny-public"


def _named(dataset: ImageDataset, name: str) -> ImageDataset:
    return ImageDataset(images=dataset.images, labels=dataset.labels, class_names=dataset.class_names,
                        patient_ids=None, name=name, source="tests")


@pytest.fixture(scope="session")
def rdm_base(tmp_path_factory) -> Path:
    """A workspace holding datasets 'public' and 'private' (halves of the demo digits), model and index."""
    from dpsad_core.rdm.index import build_index
    from dpsad_core.rdm.store import load_public_model
    from dpsad_core.rdm.training import make_config, train_public

    base = tmp_path_factory.mktemp("rdm-base")
    with pytest.MonkeyPatch.context() as patch:
        # Session-scoped, so set up before the per-test isolated dirs: fingerprint with a key of our own
        # (never the user's), which rdm_workspace copies so a test can re-check the index's fingerprint.
        patch.setenv("DPSAD_CONFIG_DIR", str(tmp_path_factory.mktemp("rdm-config")))
        patch.setenv("DPSAD_WORKSPACE", str(base))
        demo = resolve_data_source("demo", workspace=base)
        half = demo.num_records // 2
        save_dataset(_named(demo.subset(np.arange(half)), "public"), base)
        save_dataset(_named(demo.subset(np.arange(half, demo.num_records)), "private"), base)
        for _ in train_public(make_config(public="public", name=MODEL, preset="tiny"), workspace=base):
            pass
        build_index(workspace=base, public_model=load_public_model(MODEL, workspace=base), data="private",
                    name=INDEX)
        shutil.copy2(config_dir() / KEY_FILE_NAME, base.parent / f"{base.name}.{KEY_FILE_NAME}")
    return base


@pytest.fixture
def rdm_workspace(rdm_base, workspace) -> Path:
    """The test's own workspace with a copy of the tiny model, index and datasets (ledger starts empty)."""
    for child in rdm_base.iterdir():
        shutil.copytree(child, workspace / child.name)
    config_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy2(rdm_base.parent / f"{rdm_base.name}.{KEY_FILE_NAME}", config_dir() / KEY_FILE_NAME)
    return workspace
