"""Shared fixtures: every test gets its own workspace and config dir, never the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    config = tmp_path_factory.mktemp("config")
    workspace = tmp_path_factory.mktemp("workspace")
    monkeypatch.setenv("DPSAD_CONFIG_DIR", str(config))
    monkeypatch.setenv("DPSAD_WORKSPACE", str(workspace))
    return workspace


@pytest.fixture
def workspace(isolated_dirs) -> Path:
    return isolated_dirs


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
