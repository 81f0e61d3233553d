"""One exception hierarchy for the whole library.

Every error carries what a caller needs to act on it (the file, row or value, and a remedy), and an
``exit_code`` that the CLI returns. The CLI prints ``str(error)`` as one line; the GUI shows it in a
dialog. Neither shows a traceback for these.
"""

from __future__ import annotations

import re
from pathlib import Path

_LINE_BREAKS = re.compile(r"\s*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+\s*")


class DpsadError(Exception):
    """Base class. ``remedy`` says what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, remedy: str | None = None) -> None:
        self.message = message
        self.remedy = remedy
        super().__init__(message)

    def __str__(self) -> str:
        text = f"{self.message} ({self.remedy})" if self.remedy else self.message
        # One line whatever went in: a decoder's multi-line text, a file name with a line break.
        return _LINE_BREAKS.sub(" ", text)


class ConfigError(DpsadError):
    """A setting is invalid (a value out of range, an unknown choice, an inconsistent combination)."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None, value: object = None,
                 remedy: str | None = None) -> None:
        self.field = field
        self.value = value
        super().__init__(message, remedy=remedy)


class DataImportError(DpsadError):
    """Input data cannot be read or is unusable. Names the file (and row) at fault."""

    exit_code = 3

    def __init__(self, message: str, *, path: str | Path | None = None, row: int | None = None,
                 remedy: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.row = row
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(where + message, remedy=remedy)


class TooFewRecordsError(DataImportError):
    """The dataset has too few privacy units for a meaningful guarantee."""


class PrivacyBudgetError(DpsadError):
    """The requested privacy budget cannot be met or would be exceeded."""

    exit_code = 4


class NotPrivateError(DpsadError):
    """An operation needs a differentially private result, and this one is not."""

    exit_code = 5


class RunError(DpsadError):
    """A run folder is missing, locked, corrupt, or cannot be resumed."""

    exit_code = 6


class DeviceError(DpsadError):
    """The requested compute device is not available."""

    exit_code = 7
