"""Fixtures for the workbench's GUI tests (pytest-qt, QT_QPA_PLATFORM=offscreen from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6", reason="the gui extra is not installed")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")


@pytest.fixture(autouse=True, scope="session")
def _helper_pool_shut_down():
    """The app shuts its helper process down on quit; the tests' QApplication never quits."""
    yield
    from dpsad_workbench.worker import shutdown_helper_pool

    shutdown_helper_pool()


@pytest.fixture(autouse=True)
def _no_leaked_windows(no_leaked_windows, qapp):
    """Every GUI test fails if it leaves a visible top-level window behind."""
    yield


@pytest.fixture
def answers(monkeypatch):
    """Replace the blocking yes/no dialog: tests push the answers they want, and read the questions."""
    from dpsad_workbench import dialogs

    state = {"answers": [], "questions": []}

    def fake_confirm(parent, title, text, *, default_yes=False):
        state["questions"].append(title)
        if not state["answers"]:
            raise AssertionError(f"unexpected question: {title}: {text}")
        return state["answers"].pop(0)

    monkeypatch.setattr(dialogs, "confirm", fake_confirm)
    return state


@pytest.fixture
def window(qtbot, workspace, answers, monkeypatch):  # the isolated workspace must exist first
    from dpsad_workbench.main import create_window

    answer_step_timing(monkeypatch)
    win = create_window()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    # Stop anything still running so no thread outlives the test.
    win.controller.stop_and_wait(60_000)
    win.runs.cancel_evaluation()
    for screen in (win.datasets, win.new_run, win.runs, win.export):
        screen.wait_for_workers()
    from dpsad_workbench.worker import wait_detached

    wait_detached()


def answer_step_timing(monkeypatch) -> None:
    """The New run screen's step timing answers at once with a fixed step time (tests.app.previews).

    Its plan previews still run in the helper process; only the timed DP steps of each new model (seconds
    to a minute under load, in the one helper process every later call waits behind) are left out. The
    real timing is tested by test_datasets_and_plan.py, which undoes this.
    """
    from dpsad_workbench.screens import new_run
    from dpsad_workbench.worker import GeneratorWorker
    from tests.app.previews import fake_measure

    in_helper = new_run.call_in_worker

    def timing_answered(target, *args, parent=None, **kwargs):
        if target == "dpsad_workbench.core:measure_plan_seconds":
            return GeneratorWorker(lambda stop: iter([fake_measure(*args, **kwargs)]), parent=parent)
        return in_helper(target, *args, parent=parent, **kwargs)

    monkeypatch.setattr(new_run, "call_in_worker", timing_answered)


def write_class_folder(root: Path, *, classes: int = 3, per_class: int = 40, size: int = 8) -> Path:
    """A folder of class subfolders of small grey PNGs (what an analyst's export usually looks like)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = (rng.random((size, size)) * 80 + label * 60).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{index:03d}.png")
    return root
