"""Shared fixtures: every test gets its own workspace and config dir, never the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Fixtures shared by several test directories live in tests/fixtures/ and are registered here, so a test
# module names the fixture as an argument instead of importing it.
pytest_plugins = ["tests.fixtures.rdm"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    config = tmp_path_factory.mktemp("config")
    workspace = tmp_path_factory.mktemp("workspace")
    monkeypatch.setenv("DPSAD_CONFIG_DIR", str(config))
    monkeypatch.setenv("DPSAD_WORKSPACE", str(workspace))
    # Generated public data is the same for every test: one cache per session, never the user's.
    monkeypatch.setenv("DPSAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    return workspace


@pytest.fixture
def workspace(isolated_dirs) -> Path:
    return isolated_dirs


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


# -- Qt (tests/app) ----------------------------------------------------------------------------------
@pytest.fixture
def no_leaked_windows():
    """Fail the test if it leaves a visible top-level window (a dialog or window nobody closed).

    PySide6 is imported here, not at the top, so the core's tests run without Qt installed.
    """
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    before = {id(w) for w in app.topLevelWidgets() if w.isVisible()}
    yield
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()
    leaked = [w for w in app.topLevelWidgets() if w.isVisible() and id(w) not in before]
    for widget in leaked:  # close them so one leak does not fail every later test too
        widget.close()
    assert not leaked, "top-level windows left open: " + ", ".join(
        f"{type(w).__name__}({w.objectName() or w.windowTitle()!r})" for w in leaked)
