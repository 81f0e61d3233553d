"""Settings screen: workspace location, the devices (CPU, one GPU, all GPUs), torch threads, the signing key.

Whether there are GPUs is asked of the helper process (the window itself never imports torch): until
it answers, and on a machine without CUDA, the GPU choices are disabled and a line says why.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from dpsad_workbench.settings import DEVICE_CHOICES, AppSettings
from dpsad_workbench.widgets import WrapLabel
from dpsad_workbench.worker import WorkerOwner


class SettingsScreen(WorkerOwner, QWidget):
    """Edits :class:`AppSettings`; ``settings_saved(AppSettings)`` after a successful save."""

    settings_saved = Signal(object)
    error = Signal(object)
    gpus_checked = Signal(object)  # the inventory from dpsad_workbench.core.gpu_inventory

    def __init__(self, settings: Callable[[], AppSettings], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._workers = set()
        self._gpus_asked = False
        self.inventory: dict | None = None
        self._build()
        self.load()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        # Asked when the screen is first shown: the window opens without starting the helper process.
        if not self._gpus_asked:
            self.check_gpus()
        super().showEvent(event)

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
        self.devices = QComboBox()
        for key, label, _, _ in DEVICE_CHOICES:
            self.devices.addItem(label, key)
        self.devices.setToolTip("All GPUs trains with one worker per GPU: the same privacy mechanism and epsilon "
                                "as one worker, faster")
        form.addRow("&Devices:", self.devices)
        self.devices_note = WrapLabel()
        form.addRow("", self.devices_note)
        self.apply_inventory(None)
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
        self.devices.setCurrentIndex(self.devices.findData(settings.device_choice))
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
        key = self.devices.currentData()
        _, _, device, all_gpus = next(choice for choice in DEVICE_CHOICES if choice[0] == key)
        return AppSettings(workspace=self.workspace.text().strip() or None, device=device, all_gpus=all_gpus,
                           torch_threads=self.threads.value())

    # -- GPUs ---------------------------------------------------------------------------------------
    def check_gpus(self):
        """Ask the helper process which GPUs torch sees; returns the worker (tests wait on ``gpus_checked``)."""
        from PySide6.QtCore import Qt

        from dpsad_workbench.worker import call_in_worker

        self._gpus_asked = True
        worker = call_in_worker("dpsad_workbench.core:gpu_inventory", parent=self)
        queued = Qt.ConnectionType.QueuedConnection
        worker.yielded.connect(self.apply_inventory, queued)
        worker.errored.connect(lambda error: self.apply_inventory(
            {"count": 0, "names": [], "reason": f"the GPU check failed ({error})"}), queued)
        self._keep(worker)
        worker.start()
        return worker

    def apply_inventory(self, inventory: dict | None) -> None:
        """Enable the GPU choices when there are GPUs; otherwise disable them and say why."""
        self.inventory = inventory
        count = inventory["count"] if inventory else 0
        model = self.devices.model()
        for row, (key, label, _, all_gpus) in enumerate(DEVICE_CHOICES):
            if all_gpus:
                self.devices.setItemText(row, f"All {count} GPUs (one worker each)" if count > 1 else label)
            item = model.item(row)
            if key in ("gpu", "all-gpus"):
                item.setEnabled(count >= (2 if all_gpus else 1))
        if inventory is None:
            self.devices_note.setText("Checking for GPUs...")
        elif count == 0:
            self.devices_note.setText(f"No GPU choice: {inventory['reason']}. Training runs on the CPU.")
        else:
            names = ", ".join(inventory["names"])
            more = "" if count > 1 else " (All GPUs needs at least two)"
            self.devices_note.setText(f"{count} GPU{'s' if count > 1 else ''}: {names}{more}.")
        if inventory is not None:
            self.gpus_checked.emit(inventory)

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
