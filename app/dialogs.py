"""How errors reach the analyst: a dialog with the core's message and its remedy, never a traceback.

A :class:`~dpsad_core.errors.DpsadError` is a user mistake or a state the user can act on: the
dialog shows its message and remedy. Anything else is a bug: the dialog says so, and the traceback
is only behind "Show Details..." for the bug report.
"""

from __future__ import annotations

import traceback

from PySide6.QtWidgets import QMessageBox, QWidget

#: Dialog titles in an analyst's words, by the core's error class (most specific first).
ERROR_TITLES = (("TooFewRecordsError", "Too few records"), ("DataImportError", "The data cannot be read"),
                ("PrivacyBudgetError", "Over the privacy budget"), ("NotPrivateError", "Not private"),
                ("ConfigError", "A setting needs changing"), ("DeviceError", "The processor cannot be used"),
                ("RunError", "The run cannot go on"))
#: The command line's options as the workbench names them (the core's remedies are written for the CLI).
CLI_WORDS = ((r"dpsad-core ledger \S+ --remove-cap", "Remove cap on the dataset's budget panel (Datasets screen)"),
             (r"dpsad-core ledger \S+ --cap EPSILON", "Set cap... on the dataset's budget panel (Datasets screen)"),
             (r"--min-records (\d+)", r"'Fewest units' \1"), (r"--min-records", "'Fewest units'"),
             (r"--public-data PATH", "'Public data'"), (r"--public-data", "'Public data'"),
             (r"--epsilon", "'Target epsilon'"), (r"--max-steps", "'Max steps per phase'"),
             (r"--resolution", "'Image size' (New run) or 'Resize to' (import)"), (r"--delta", "'Delta'"),
             (r"--grey", "'Convert colour to grey'"), (r"--skip-corrupt", "removing the unreadable files"),
             (r"--research", "'Research export'"), (r"--device", "the device on the Settings screen"))


def analyst_words(text: str) -> str:
    """The core's message or remedy with command-line options named as the workbench shows them."""
    import re

    for pattern, words in CLI_WORDS:
        text = re.sub(pattern, words, text)
    return text


def error_title(error: BaseException) -> str:
    names = [cls.__name__ for cls in type(error).__mro__]
    return next((title for name, title in ERROR_TITLES if name in names), "Something needs attention")


def describe_error(error: BaseException) -> tuple[str, str, str]:
    """(title, text, details) for an error; details is empty for a user mistake."""
    from dpsad_core.errors import DpsadError

    if isinstance(error, DpsadError):
        text = analyst_words(error.message)
        if error.remedy:
            text += f"\n\nWhat to do: {analyst_words(error.remedy)}"
        return error_title(error), text, ""
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
