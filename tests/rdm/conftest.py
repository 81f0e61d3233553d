"""A tiny public model and private index, trained once per test session and copied into each test's workspace."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import resolve_data_source, save_dataset
from dpsad_core.data.dataset import ImageDataset

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
    demo = resolve_data_source("demo", workspace=base)
    half = demo.num_records // 2
    save_dataset(_named(demo.subset(np.arange(half)), "public"), base)
    save_dataset(_named(demo.subset(np.arange(half, demo.num_records)), "private"), base)
    for _ in train_public(make_config(public="public", name=MODEL, preset="tiny"), workspace=base):
        pass
    build_index(workspace=base, public_model=load_public_model(MODEL, workspace=base), data="private", name=INDEX)
    return base


@pytest.fixture
def rdm_workspace(rdm_base, workspace) -> Path:
    """The test's own workspace with a copy of the tiny model, index and datasets (ledger starts empty)."""
    for child in rdm_base.iterdir():
        shutil.copytree(child, workspace / child.name)
    return workspace
