"""The main window: a list of screens on the left, the current screen on the right.

It wires the screens together (an import refreshes the New run choices, Start switches to Training,
a run's end refreshes Runs) and is the one place errors become dialogs. Closing it while a run
trains asks first, then stops the run at a step boundary so the engine writes its checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QScrollArea,
    QStackedWidget,
    QWidget,
)

from dpsad_workbench import dialogs
from dpsad_workbench.screens.datasets import DatasetsScreen
from dpsad_workbench.screens.export import ExportScreen
from dpsad_workbench.screens.new_run import NewRunScreen
from dpsad_workbench.screens.runs import RunsScreen
from dpsad_workbench.screens.settings import SettingsScreen
from dpsad_workbench.screens.training import TrainingScreen
from dpsad_workbench.settings import AppSettings, load_settings
from dpsad_workbench.training import CANCELLED, FAILED, FINISHED, INTERRUPTED, PAUSED, TrainingController

if TYPE_CHECKING:
    from dpsad_workbench.help import HelpDialog

SCREENS = ("datasets", "new_run", "training", "runs", "export", "settings")
MINIMUM_SIZE = (760, 500)  # the smallest window (half a laptop screen): screens larger than that scroll
TITLES = {"datasets": "Datasets", "new_run": "New run", "training": "Training", "runs": "Runs",
          "export": "Export", "settings": "Settings"}


class MainWindow(QMainWindow):
    """The workbench window. ``error_shown(str)`` is emitted with each error dialog's text."""

    error_shown = Signal(str)

    def __init__(self, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or load_settings()
        self._terminating = False  # set by terminate(): close without asking
        self.setWindowTitle("DP-SAD Workbench")
        from dpsad_workbench.icon import app_icon

        self.setWindowIcon(app_icon())
        self.controller = TrainingController(lambda: self.settings, self)
        self.datasets = DatasetsScreen(lambda: self.settings)
        self.new_run = NewRunScreen(lambda: self.settings)
        self.training = TrainingScreen(self.controller)
        self.runs = RunsScreen(lambda: self.settings)
        self.export = ExportScreen(lambda: self.settings)
        self.settings_screen = SettingsScreen(lambda: self.settings)
        self.screens = {"datasets": self.datasets, "new_run": self.new_run, "training": self.training,
                        "runs": self.runs, "export": self.export, "settings": self.settings_screen}
        self._build()
        self._wire()
        self.refresh_all()
        self.setMinimumSize(*MINIMUM_SIZE)
        self.resize(1200, 780)
        # Paint the plots once while the app is idle after opening, so the first switch to the
        # Training screen (right when a run starts) does not pay pyqtgraph's first-paint costs.
        from PySide6.QtCore import QTimer

        QTimer.singleShot(500, self._warm_up)

    def _warm_up(self) -> None:
        if self.isVisible() and self.current_screen() != "training":
            self.training.grab()

    def _build(self) -> None:
        central = QWidget()
        layout = QHBoxLayout(central)
        self.nav = QListWidget()
        self.nav.setObjectName("navigation")
        self.nav.setAccessibleName("Screens")
        for index, key in enumerate(SCREENS, start=1):
            self.nav.addItem(f"{TITLES[key]}")
            self.nav.item(index - 1).setToolTip(f"Ctrl+{index}")
        self.nav.setFixedWidth(self.nav.sizeHintForColumn(0) + 40)
        self.nav.setStyleSheet("QListWidget#navigation { font-size: 11pt; } "
                               "QListWidget#navigation::item { padding: 8px 6px; }")
        self.stack = QStackedWidget()
        for key in SCREENS:
            # Each screen scrolls when the window is smaller than it needs (a laptop, a tiled window),
            # so the window itself can be as small as MINIMUM_SIZE.
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(self.screens[key])
            self.stack.addWidget(scroll)
        self.nav.currentRowChanged.connect(self._nav_changed)
        layout.addWidget(self.nav)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        for index in range(len(SCREENS)):
            shortcut = QShortcut(QKeySequence(f"Ctrl+{index + 1}"), self)
            shortcut.activated.connect(lambda i=index: self.show_screen(SCREENS[i]))
        self.help_dialog: HelpDialog | None = None  # made on first use
        help_menu = self.menuBar().addMenu("&Help")
        self.guide_action = help_menu.addAction("&Guide: epsilon, delta, units, recipes")
        self.guide_action.setShortcut(QKeySequence(Qt.Key.Key_F1))
        self.guide_action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        self.guide_action.triggered.connect(self.show_help)
        self.workspace_label = QLabel()
        self.statusBar().addPermanentWidget(self.workspace_label)
        self.nav.setCurrentRow(0)

    def _wire(self) -> None:
        for screen in (self.datasets, self.runs, self.export, self.settings_screen):
            screen.error.connect(self.show_error)
        self.controller.failed.connect(self.show_error)
        self.datasets.datasets_changed.connect(self.new_run.set_datasets)
        self.datasets.imported.connect(lambda summary: self.new_run.select_data(summary["name"]))
        self.new_run.start_requested.connect(self.start_run)
        self.runs.resume_requested.connect(self.resume_run)
        self.runs.export_requested.connect(self._export_run)
        self.runs.is_training = lambda run_id: self.controller.is_active and self.controller.run_id == run_id
        self.controller.state_changed.connect(self._training_state)
        self.settings_screen.settings_saved.connect(self._settings_saved)
        # The first export creates the signing key: the Settings screen must not still say there is none.
        self.export.exported.connect(lambda _summary: self.settings_screen.keys.refresh())

    # -- navigation --------------------------------------------------------------------------------
    def show_screen(self, key: str) -> None:
        self.nav.setCurrentRow(SCREENS.index(key))

    def current_screen(self) -> str:
        return SCREENS[self.stack.currentIndex()]

    def _nav_changed(self, row: int) -> None:
        if row < 0:
            return
        self.stack.setCurrentIndex(row)
        key = SCREENS[row]
        if key == "runs":
            self.runs.refresh()
        elif key == "export":
            self.export.refresh()
        elif key == "settings":
            self.settings_screen.keys.refresh()
        self.statusBar().showMessage(TITLES[key], 1500)

    def refresh_all(self) -> None:
        self.workspace_label.setText(f"workspace: {self.settings.workspace_path()}")
        self.datasets.refresh()
        self.runs.refresh()
        self.export.refresh()
        self.settings_screen.load()

    def show_help(self) -> None:
        """Open (or raise) the guide, non-modal so it can stay open beside the screens."""
        from dpsad_workbench.help import HelpDialog

        if self.help_dialog is None:
            self.help_dialog = HelpDialog(self)
        self.help_dialog.show()
        self.help_dialog.raise_()

    # -- actions -----------------------------------------------------------------------------------
    def start_run(self, config) -> None:
        try:
            self.controller.start(config)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.show_error(error)
            return
        self.show_screen("training")

    def resume_run(self, run_id: str) -> None:
        try:
            self.controller.resume(run_id)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.show_error(error)
            return
        self.show_screen("training")

    def _export_run(self, run_id: str) -> None:
        self.show_screen("export")
        self.export.select_run(run_id)

    def _training_state(self, state: str) -> None:
        if state in (FINISHED, PAUSED, CANCELLED, FAILED, INTERRUPTED):
            self.runs.refresh()
            self.export.refresh()
            self.datasets.refresh()  # the ledger may show new spend
        self.statusBar().showMessage(f"training: {state}", 4000)

    def _settings_saved(self, settings: AppSettings) -> None:
        self.settings = settings
        self.refresh_all()

    def show_error(self, error: BaseException) -> None:
        box = dialogs.show_error(self, error)
        self.error_shown.emit(box.text())

    # -- closing -----------------------------------------------------------------------------------
    def terminate(self) -> None:
        """Close without asking (the app was told to end: SIGTERM, logout): a run stops with a checkpoint."""
        self._terminating = True
        self.close()

    def closeEvent(self, event) -> None:
        if self.controller.is_active and self._terminating:
            self.statusBar().showMessage("Writing a checkpoint...")
            self.controller.stop_and_wait(60_000)
        elif self.controller.is_active:
            question = ("A run is training. Stop it and close?\n\nThe run stops after its current step and writes "
                        "a checkpoint: nothing is lost, and you can resume it later from the Runs screen.")
            if not dialogs.confirm(self, "Training in progress", question, default_yes=False):
                event.ignore()
                return
            self.statusBar().showMessage("Writing a checkpoint...")
            self.controller.stop_and_wait()
        self.new_run.stop_previews()  # no new preview may start once the window is closing
        self.runs.cancel_evaluation()  # its child stops after the current stage; nothing half-written stays
        for screen in (self.datasets, self.new_run, self.runs, self.export):
            screen.detach_workers()
        self.training.timer.stop()
        event.accept()

    def keyPressEvent(self, event) -> None:
        # F6 moves the focus between the screen list and the screen, as in many desktop apps.
        if event.key() == Qt.Key.Key_F6:
            target = self.stack.currentWidget() if self.nav.hasFocus() else self.nav
            if target is not None:
                target.setFocus()
            return
        super().keyPressEvent(event)
