"""The signing-key panel of the Settings screen: fingerprint, export the public key, import a key.

Keys live in the core (``dpsad_core.export.signing``); this panel only calls it. It never shows or
copies the private key: only the public fingerprint, which a recipient compares out of band.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from dpsad_workbench import dialogs
from dpsad_workbench.folders import exports_folder, workspace_of
from dpsad_workbench.widgets import WrapLabel


class KeysPanel(QWidget):
    """Shows the local key's fingerprint; ``changed(str)`` carries the new fingerprint."""

    changed = Signal(str)
    error = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.info = WrapLabel()
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.info)
        buttons = QHBoxLayout()
        self.create_button = QPushButton("&Create key")
        self.export_button = QPushButton("Export &public key...")
        self.import_button = QPushButton("&Import organisation key...")
        self.create_button.clicked.connect(self.create_key)
        self.export_button.clicked.connect(self._choose_export)
        self.import_button.clicked.connect(self._choose_import)
        for button in (self.create_button, self.export_button, self.import_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.refresh()

    def fingerprint(self) -> str | None:
        """The local public key's fingerprint, or None when no key exists yet (none is created)."""
        from dpsad_core.export import signing

        if not signing.key_path().exists():
            return None
        return signing.signer_info(signing.load_or_create_signing_key().public_key()).fingerprint

    def refresh(self) -> None:
        from dpsad_core.export import signing

        try:
            fingerprint = self.fingerprint()
        except Exception as error:  # noqa: BLE001 - a damaged key file is shown, not raised
            self.info.setText(f"The signing key at {signing.key_path()} cannot be read: {error}")
            return
        if fingerprint is None:
            self.info.setText("No signing key yet. One is created the first time you export a bundle, or now "
                              "with Create key.")
        else:
            self.info.setText(f"Public key fingerprint: <b>{fingerprint}</b><br>Recipients compare this with "
                              f"the bundle's signer to trust it. Key file: {signing.key_path()}")
        self.create_button.setEnabled(fingerprint is None)
        self.export_button.setEnabled(True)
        self.import_button.setEnabled(True)

    def create_key(self) -> str | None:
        from dpsad_core.export import signing

        try:
            key = signing.load_or_create_signing_key()
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.error.emit(error)
            return None
        fingerprint = signing.signer_info(key.public_key()).fingerprint
        self.refresh()
        self.changed.emit(fingerprint)
        return fingerprint

    def export_public_key(self, destination: str) -> str | None:
        from dpsad_core.export import signing

        try:
            info = signing.export_public_key(destination)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.error.emit(error)
            return None
        self.refresh()
        self.changed.emit(info.fingerprint)
        return info.fingerprint

    def import_key(self, source: str) -> str | None:
        from dpsad_core.export import signing

        try:
            info, _backup = signing.import_private_key(source)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.error.emit(error)
            return None
        self.refresh()
        self.changed.emit(info.fingerprint)
        return info.fingerprint

    def _choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the public key",
                                              str(exports_folder(workspace_of(self)) / "dpsad-public-key.pem"),
                                              "PEM files (*.pem);;All files (*)")
        if path:
            self.export_public_key(path)

    def _choose_import(self) -> None:
        question = ("Importing an organisation key replaces this installation's signing key (the old one is "
                    "kept as a backup beside it). Continue?")
        if not dialogs.confirm(self, "Import organisation key", question):
            return
        path, _ = QFileDialog.getOpenFileName(self, "Import an Ed25519 private key",
                                              str(exports_folder(workspace_of(self))),
                                              "PEM files (*.pem);;All files (*)")
        if path:
            self.import_key(path)
