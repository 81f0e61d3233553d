"""One exception hierarchy for the whole library.

Every error carries what a caller needs to act on it (the file, row or value, and a remedy), and an
``exit_code`` that the CLI returns. The CLI prints ``str(error)`` as one line; the GUI shows it in a
dialog. Neither shows a traceback for these.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

_LINE_BREAKS = re.compile(r"\s*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+\s*")

#: The CLI's exit codes, one table for every command (README, the "train --json" paragraph). Each
#: error class below carries its own ``exit_code``; the three without a class are here.
EXIT_OK = 0
EXIT_INTERNAL = 70      # a bug in dpsad-core: the only code that asks the user to report it
EXIT_INTERRUPTED = 130  # stopped by the user; a training run can be resumed
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    1: "other error",
    2: "configuration (an option or setting is invalid)",
    3: "data (input cannot be read or is unusable)",
    4: "privacy budget",
    5: "not differentially private",
    6: "run state (missing, locked, corrupt, cannot be resumed)",
    7: "device",
    8: "bundle verification",
    9: "file system (disk full, read-only, no permission, path too long, a folder where a file belongs)",
    EXIT_INTERNAL: "internal error (a bug: please report it)",
    EXIT_INTERRUPTED: "interrupted",
}


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


class StorageError(DpsadError):
    """A file or folder cannot be written or read: the disk is full, the folder is read-only or not
    ours, a path is too long for the file system, or a folder stands where a file belongs."""

    exit_code = 9

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None,
                 remedy: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message, remedy=remedy)


# -- classifying what the operating system says ---------------------------------------------------------
_SHOWN_PATH_CHARS = 80


def shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a message shows it: a very long one cut in the middle, with its length."""
    text = os.fspath(path)
    if len(text) <= _SHOWN_PATH_CHARS:
        return text
    half = _SHOWN_PATH_CHARS // 2
    return f"{text[:half]}...{text[-half:]} ({len(text)} characters)"


def _size(count: float) -> str:
    if count < 1000:
        return f"{count:.0f} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        count /= 1000
        if count < 1000 or unit == "TB":
            break
    return f"{count:.1f} {unit}"


def _existing_folder(path: Path) -> Path:
    """The nearest folder at or above ``path`` that exists (where the disk space is measured)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.is_dir():
                return candidate
        except OSError:
            continue
    return path


def storage_error(error: OSError, *, path: str | os.PathLike[str] | None = None) -> StorageError:
    """What an OSError means to the user: which file or folder, what went wrong, what to do.

    ``path`` names the file when the error itself does not (a failed ``write`` carries no name).
    ``error.bytes_needed`` (set by :func:`dpsad_core.atomic.atomic_write` when it knows the size)
    is reported with a full disk.
    """
    target = error.filename if error.filename is not None else path
    where = Path(os.fsdecode(target)) if target is not None else None
    shown = shown_path(where) if where is not None else "a file"
    code = error.errno
    if code in (errno.ENOSPC, errno.EDQUOT) and where is None:
        return StorageError(f"a disk is full ({error.strerror or 'no space left'}); the file was not named",
                            remedy="free some space on the disks of the workspace and the output")
    if code in (errno.ENOSPC, errno.EDQUOT) and where is not None:
        folder = _existing_folder(where)
        details = []
        try:
            import shutil

            details.append(f"{_size(shutil.disk_usage(folder).free)} free")
        except OSError:
            pass
        needed = getattr(error, "bytes_needed", None)
        if needed:
            details.append(f"{_size(needed)} needed for {where.name}")
        what = "quota" if code == errno.EDQUOT else "disk"
        return StorageError(f"the {what} holding {shown_path(folder)} is full"
                            + (f" ({', '.join(details)})" if details else ""), path=folder,
                            remedy="free some space there, or choose a folder on another disk "
                                   "(--workspace, --out or $DPSAD_WORKSPACE)")
    if code == errno.EROFS:
        return StorageError(f"{shown} is on a read-only file system", path=where,
                            remedy="choose a writable folder (--workspace, --out or $DPSAD_WORKSPACE)")
    if code in (errno.EACCES, errno.EPERM):
        return StorageError(f"permission denied: {shown}", path=where,
                            remedy="check the folder's permissions, or choose a folder you own "
                                   "(--workspace, --out or $DPSAD_WORKSPACE)")
    if code == errno.ENAMETOOLONG:
        return StorageError(f"a path is too long for the file system: {shown}", path=where,
                            remedy="use a shorter folder or file name")
    if code == errno.EISDIR:
        return StorageError(f"{shown} is a folder, where a file was expected", path=where,
                            remedy="give the path of a file, not of a folder")
    if code == errno.ENOTDIR:
        return StorageError(f"{shown}: a part of this path is a file, not a folder", path=where,
                            remedy="check the path")
    if code == errno.ENOENT:
        return StorageError(f"{shown} does not exist", path=where, remedy="check the path")
    reason = error.strerror or type(error).__name__
    return StorageError(f"{shown}: {reason}", path=where,
                        remedy="check the file system; choose another folder if it persists")


def classify(error: BaseException) -> DpsadError | None:
    """The DpsadError for ``error`` (itself, or an OSError classified), None for a bug."""
    if isinstance(error, DpsadError):
        return error
    if isinstance(error, OSError) and error.errno is not None:
        return storage_error(error)
    return None
