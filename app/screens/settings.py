"""Settings screen: workspace location, compute device, torch threads, and the signing key."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from dpsad_workbench.settings import DEVICES, AppSettings
from dpsad_workbench.widgets import WrapLabel


class SettingsScreen(QWidget):
    """Edits :class:`AppSettings`; ``settings_saved(AppSettings)`` after a successful save."""

    settings_saved = Signal(object)
    error = Signal(object)

    def __init__(self, settings: Callable[[], AppSettings], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._build()
        self.load()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        general = QGroupBox("Where and how to train")
        form = QFormLayout(general)
        row = QHBoxLayout()
        self.workspace = QLineEdit()
        self.workspace.setPlaceholderText("default: $DPSAD_WORKSPACE or your user data folder")
        browse = QPushButton("&Browse...")
        browse.clicked.connect(self._browse)
        row.addWidget(self.workspace, 1)
        row.addWidget(browse)
        workspace_label = QLabel("&Workspace:")
        workspace_label.setBuddy(self.workspace)
        form.addRow(workspace_label, row)
        self.workspace_note = WrapLabel()
        form.addRow("", self.workspace_note)
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device.setToolTip("auto uses a CUDA GPU when there is one")
        form.addRow("&Device:", self.device)
        self.threads = QSpinBox()
        self.threads.setRange(1, 256)
        self.threads.setToolTip("CPU threads for training; keep one core free for the window")
        form.addRow("Training &threads:", self.threads)
        save = QPushButton("&Save settings")
        save.clicked.connect(self.save)
        form.addRow(save)
        layout.addWidget(general)

        self.keys_box = QGroupBox("Signing key (for exported bundles)")
        self.keys_layout = QVBoxLayout(self.keys_box)
        layout.addWidget(self.keys_box)
        from dpsad_workbench.screens.keys import KeysPanel

        self.keys = KeysPanel(self)
        self.keys.error.connect(self.error)
        self.keys_layout.addWidget(self.keys)
        layout.addStretch(1)

    def load(self) -> None:
        settings = self._settings()
        self.workspace.setText(settings.workspace or "")
        self.device.setCurrentText(settings.device)
        self.threads.setValue(settings.torch_threads)
        try:
            self.workspace_note.setText(f"in use: {settings.workspace_path()}")
        except OSError as error:
            self.workspace_note.setText(f"cannot be used: {error}")

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose the workspace folder", self.workspace.text())
        if path:
            self.workspace.setText(path)

    def current(self) -> AppSettings:
        return AppSettings(workspace=self.workspace.text().strip() or None, device=self.device.currentText(),
                           torch_threads=self.threads.value())

    def save(self) -> AppSettings | None:
        from dpsad_workbench.settings import save_settings

        try:
            settings = self.current()
            settings.workspace_path()  # creates it, or fails here with the path in the message
            save_settings(settings)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.error.emit(error)
            return None
        self.settings_saved.emit(settings)
        self.load()
        return settings
