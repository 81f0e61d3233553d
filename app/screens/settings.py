"""Settings screen: workspace location, the devices (CPU, one GPU, all GPUs), torch threads, the signing key.

Whether there are GPUs is asked of the helper process when the screen is first shown (the window
itself never imports torch): until it answers, and on a machine without CUDA, the GPU choices are
disabled and a line says why. The question is a future of the helper pool, not a worker thread, so
closing the window never waits for it nor leaves a thread running.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dpsad_workbench.settings import DEVICE_CHOICES, AppSettings
from dpsad_workbench.widgets import WrapLabel


class SettingsScreen(QWidget):
    """Edits :class:`AppSettings`; ``settings_saved(AppSettings)`` after a successful save."""

    settings_saved = Signal(object)
    error = Signal(object)
    gpus_checked = Signal(object)  # the inventory from dpsad_workbench.core.gpu_inventory
    _gpus_answered = Signal(object)  # emitted from the pool's thread, delivered in the window's (queued)

    def __init__(self, settings: Callable[[], AppSettings], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._gpus_asked = False
        self.inventory: dict | None = None
        self._gpus_answered.connect(self.apply_inventory, Qt.ConnectionType.QueuedConnection)
        self._build()
        self.load()

    def showEvent(self, event) -> None:
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
    def check_gpus(self) -> None:
        """Ask the helper process which GPUs torch sees (tests wait on ``gpus_checked``)."""
        from concurrent.futures.process import BrokenProcessPool

        from dpsad_workbench.child import call, forwarded_env
        from dpsad_workbench.worker import helper_pool

        self._gpus_asked = True
        try:
            future = helper_pool().submit(call, "dpsad_workbench.core:gpu_inventory", (), {}, forwarded_env())
        except (BrokenProcessPool, RuntimeError) as error:  # the helper died, or the app is shutting down
            self.apply_inventory({"count": 0, "names": [], "reason": f"the GPU check could not start ({error})"})
            return
        future.add_done_callback(self._on_gpu_answer)

    def _on_gpu_answer(self, future) -> None:  # runs in the pool's thread
        try:
            inventory = future.result()
        except Exception as error:  # noqa: BLE001 - a failed check leaves the GPU choices off, saying why
            inventory = {"count": 0, "names": [], "reason": f"the GPU check failed ({error})"}
        try:
            self._gpus_answered.emit(inventory)
        except RuntimeError:  # the screen was deleted meanwhile
            pass

    def apply_inventory(self, inventory: dict | None) -> None:
        """Enable the GPU choices when there are GPUs; otherwise disable them and say why."""
        self.inventory = inventory
        count = inventory["count"] if inventory else 0
        model = self.devices.model()
        assert isinstance(model, QStandardItemModel)  # a QComboBox's own model, which has item()
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
