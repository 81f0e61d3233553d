"""How errors reach the analyst: a dialog with the core's message and its remedy, never a traceback.

A :class:`~dpsad_core.errors.DpsadError` is a user mistake or a state the user can act on: the
dialog shows its message and remedy. Anything else is a bug: the dialog says so, and the traceback
is only behind "Show Details..." for the bug report.
"""

from __future__ import annotations

import traceback

from PySide6.QtWidgets import QMessageBox, QWidget


def describe_error(error: BaseException) -> tuple[str, str, str]:
    """(title, text, details) for an error; details is empty for a user mistake."""
    from dpsad_core.errors import DpsadError

    if isinstance(error, DpsadError):
        text = error.message
        if error.remedy:
            text += f"\n\nWhat to do: {error.remedy}"
        return type(error).__name__.replace("Error", " error").strip(), text, ""
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    text = (f"An internal error happened: {type(error).__name__}: {error}\n\n"
            "What to do: please report it with the details below; your runs and datasets are unchanged.")
    return "Internal error", text, details


def show_error(parent: QWidget | None, error: BaseException) -> QMessageBox:
    """Open (non-blocking, window-modal) an error dialog and return it."""
    title, text, details = describe_error(error)
    box = QMessageBox(QMessageBox.Icon.Critical, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("errorDialog")
    if details:
        box.setDetailedText(details)
    box.setTextInteractionFlags(box.textInteractionFlags())
    box.open()
    return box


def confirm(parent: QWidget | None, title: str, text: str, *, default_yes: bool = False) -> bool:
    """Ask a yes/no question (blocking); tests replace this function."""
    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    default = QMessageBox.StandardButton.Yes if default_yes else QMessageBox.StandardButton.No
    return QMessageBox.question(parent, title, text, buttons, default) == QMessageBox.StandardButton.Yes
