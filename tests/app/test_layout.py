"""Layout: the window fits a small screen (about 800 x 500) and long content scrolls instead of being cut off."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication


def test_the_window_can_be_as_small_as_800_by_500(window, qtbot):
    window.resize(800, 500)
    qtbot.waitUntil(lambda: window.size().toTuple() == (800, 500), timeout=2_000)
    for key in ("datasets", "new_run", "training", "runs", "export", "settings"):
        window.show_screen(key)
        QApplication.processEvents()
        assert window.size().toTuple() == (800, 500), key  # no screen forces the window larger


def test_the_export_privacy_preview_scrolls(window, qtbot):
    window.resize(800, 500)
    window.show_screen("export")
    screen = window.export
    screen.report.setText("<br>".join(f"line {index} of a long privacy report" for index in range(120)))
    qtbot.waitUntil(lambda: screen.report_scroll.verticalScrollBar().maximum() > 0, timeout=2_000)
    assert screen.report_scroll.viewport().height() < screen.report.sizeHint().height()


def test_datasets_and_new_run_fit_a_window_770_wide_without_scrolling_sideways(window, qtbot, workspace, tmp_path):
    from dpsad_core.data import load_dataset, save_dataset
    from tests.app.conftest import write_class_folder

    # A long name and a long public-data entry: combo boxes and group boxes grow with their text.
    long_name = "chest-xrays-from-the-regional-hospital-archive-2019-2024"
    save_dataset(load_dataset(write_class_folder(tmp_path / "a", classes=10, per_class=12), min_records=20,
                              name=long_name), workspace)
    window.datasets.refresh()
    window.new_run.select_data("demo")
    window.new_run.recipe.setCurrentIndex(window.new_run.recipe.findData("dpdm"))
    window.resize(770, 600)
    qtbot.waitUntil(lambda: window.size().toTuple() == (770, 600), timeout=2_000)
    assert window.minimumSizeHint().width() <= 800
    for key in ("datasets", "new_run"):
        window.show_screen(key)
        QApplication.processEvents()
        scroll = window.stack.currentWidget()
        assert scroll.horizontalScrollBar().maximum() == 0, (key, window.screens[key].minimumSizeHint().width(),
                                                              scroll.viewport().width())
    # The long entries are still there in full, in the drop-down lists.
    public = window.new_run.public_data
    assert public.view().minimumWidth() >= public.view().sizeHintForColumn(0)


def test_a_chosen_public_data_entry_shows_its_name_not_a_cut_off_tail(window, qtbot):
    """Found in the walk-through: the field read 'enerated font digits (public, 10 classes)' in a narrow column."""
    from dpsad_workbench.screens.new_run import RENDERED_DIGITS_LABEL

    screen = window.new_run
    window.resize(800, 500)
    window.show_screen("new_run")
    screen.select_data("demo")
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpsad-public-teacher"))
    screen.public_data.setCurrentIndex(screen.public_data.findData("rendered-digits"))
    QApplication.processEvents()
    edit = screen.public_data.lineEdit()
    assert edit.text() == RENDERED_DIGITS_LABEL
    assert edit.fontMetrics().horizontalAdvance(edit.text()) > edit.width()  # the column is narrower than it
    assert edit.cursorPosition() == 0  # so the start, "rendered-digits: ...", is what shows
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpdm"))
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpsad-public-teacher"))  # offered again: kept, start shown
    assert edit.text() == RENDERED_DIGITS_LABEL and edit.cursorPosition() == 0
