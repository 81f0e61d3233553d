"""Datasets screen (import, details, preview, errors) and New run screen (plan preview, warnings)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tests.app.conftest import write_class_folder


def test_the_window_opens_without_importing_torch(workspace):
    code = ("import sys\n"
            "from PySide6.QtWidgets import QApplication\n"
            "app = QApplication([])\n"
            "from dpsad_workbench.main import create_window\n"
            "window = create_window(); window.show(); app.processEvents()\n"
            "print(sorted(m for m in ('torch', 'opacus', 'scipy') if m in sys.modules))\n"
            "window.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def drop(widget, path) -> None:
    """What a file manager's drop delivers: a local-file URL."""
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    widget.dropEvent(event)
    assert event.isAccepted()


@pytest.mark.slow  # the helper process imports torch for the ledger's numbers
def test_import_a_dropped_folder_through_the_datasets_screen(window, qtbot, tmp_path):
    from dpsad_core.data import load_dataset

    folder = write_class_folder(tmp_path / "scans", classes=3, per_class=40)
    screen = window.datasets
    screen.name.setText("scans")
    screen.classes.setText("class_0,class_1,class_2")  # declared: a release shows them
    with qtbot.waitSignal(screen.imported, timeout=60_000) as blocker:
        drop(screen, folder)
    summary = blocker.args[0]
    assert summary["name"] == "scans" and summary["num_records"] == 120
    assert screen.names() == ["scans", "demo"]  # the demo data is listed like any dataset
    assert screen.fields["records"].text() == "120"
    assert screen.fields["size"].text().startswith("8 x 8 pixels, grey")
    expected = load_dataset(folder, min_records=100).fingerprint()
    assert screen.fields["fingerprint"].text() == expected
    counts = {screen.counts.item(r, 0).text(): screen.counts.item(r, 1).text() for r in range(screen.counts.rowCount())}
    assert counts == {"class_0": "40", "class_1": "40", "class_2": "40"}
    qtbot.waitUntil(screen.preview.has_image, timeout=120_000)  # generous: CI machines are shared
    # The New run screen now offers the dataset and selected it.
    assert window.new_run.data.findData("scans") >= 0
    assert window.new_run.data_spec() == "scans"
    # Nothing was trained on it yet: the ledger has no spend for this fingerprint.
    qtbot.waitUntil(lambda: not screen.fields["budget"].text().startswith("reading"), timeout=60_000)
    assert screen.fields["budget"].text() == "spent epsilon 0 (no cap set), over 0 run(s)."


def test_a_bad_import_shows_the_message_and_remedy_not_a_traceback(window, qtbot, tmp_path):
    missing = tmp_path / "no-such-folder"
    with qtbot.waitSignal(window.error_shown, timeout=30_000) as blocker:
        window.datasets.import_path(missing)
    text = blocker.args[0]
    assert "no-such-folder" in text and "What to do:" in text and "Traceback" not in text
    boxes = [w for w in window.findChildren(QMessageBox) if w.isVisible()]
    assert len(boxes) == 1 and not boxes[0].detailedText()
    boxes[0].close()


def test_too_few_records_is_refused_with_the_threshold_remedy(window, qtbot, tmp_path):
    folder = write_class_folder(tmp_path / "small", classes=2, per_class=10)
    with qtbot.waitSignal(window.datasets.import_failed, timeout=30_000) as blocker:
        window.datasets.import_path(folder)
    error = blocker.args[0]
    assert "at least 100" in str(error) and "--min-records 20" in error.remedy
    for box in window.findChildren(QMessageBox):
        box.close()


def _preview(qtbot, screen):
    with qtbot.waitSignal(screen.plan_ready, timeout=120_000) as blocker:
        screen.update_preview()
    return blocker.args[0]


@pytest.mark.slow  # calibration and the timed step import torch in the helper process
def test_plan_preview_shows_noise_steps_and_budget(window, qtbot, monkeypatch):
    from dpsad_workbench import worker
    from dpsad_workbench.screens import new_run

    monkeypatch.setattr(new_run, "call_in_worker", worker.call_in_worker)  # the step is timed for real here
    screen = window.new_run
    screen.select_data("demo")
    screen.preset.setCurrentIndex(screen.preset.findData("tiny"))
    screen.epsilon.setValue(8.0)
    from dpsad_core.training import DEFAULT_RECIPE

    assert screen.recipe.currentData() == DEFAULT_RECIPE.value  # the form opens on the core's default
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpsad-split"))
    result = _preview(qtbot, screen)
    phases = result["plan"]["phases"]
    assert [p["name"] for p in phases] == ["teacher", "student"]
    assert all(p["noise_multiplier"] > 0 for p in phases)
    assert result["plan"]["planned_epsilon"]["certified"] <= 8.0 + 1e-9
    text = screen.plan_text.text()
    assert f"{phases[0]['noise_multiplier']:.4g}" in screen.details_text.text() and "Budget" in text
    # No earlier run on this machine: one step of this model is timed in the helper process.
    with qtbot.waitSignal(screen.estimate_ready, timeout=120_000) as blocker:
        pass
    estimate = blocker.args[0]
    assert estimate["seconds"] > 0 and "measured on this machine's cpu" in estimate["basis"]
    assert "Estimated time: about" in screen.plan_text.text()


def test_weak_settings_are_warned_plainly(window, qtbot):
    window.show_screen("new_run")
    screen = window.new_run
    screen.select_data("demo")
    screen.preset.setCurrentIndex(screen.preset.findData("tiny"))
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpsad-paper"))
    screen.delta.setText("0.01")  # the demo has 1,500 images: 1/N = 6.7e-4
    result = _preview(qtbot, screen)
    assert result["private"] is False
    warnings = " ".join(result["warnings"])
    assert "NOT differentially private" in warnings and "delta = 0.01 is not below 1/N" in warnings
    assert screen.warnings.isVisible()
    assert "NOT differentially private" in screen.plan_text.text()


def test_a_bad_delta_is_explained_in_the_preview(window, qtbot):
    screen = window.new_run
    screen.select_data("demo")
    screen.delta.setText("tiny")
    with qtbot.waitSignal(screen.plan_failed, timeout=10_000):
        screen.update_preview()
    assert "delta 'tiny' is not a number" in screen.plan_text.text()


def test_keyboard_shortcuts_switch_screens(window, qtbot):
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    assert window.current_screen() == "runs"
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert window.current_screen() == "new_run"


def test_a_failure_to_start_shows_the_startup_error(workspace, qapp, capsys, monkeypatch):
    from dpsad_workbench import main as main_module
    from dpsad_workbench.settings import settings_path

    settings_path().write_text('{"device": "tpu"}')
    shown = []
    monkeypatch.setattr(main_module, "show_startup_error", lambda error: shown.append(error))
    assert main_module.main(["--quit-after", "0"]) == 1
    assert len(shown) == 1 and "unknown device 'tpu'" in str(shown[0])
