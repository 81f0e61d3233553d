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
