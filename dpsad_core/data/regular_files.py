"""Only regular files are read, and each folder once.

A FIFO named ``x.png`` blocks whoever opens it; a ``.dcm`` symlink to ``/dev/zero`` never ends; a
symbolic link loop never resolves. So every path is classified with ``os.stat`` before it is opened
(:func:`path_kind`), files are opened without blocking and checked again on the open descriptor
(:func:`open_regular`), and a walk through folders remembers each folder's real identity
``(st_dev, st_ino)`` so that one reached twice through a symbolic link (a class folder linked into
another class, a link back to a parent) is refused naming both paths (:class:`FolderVisits`):
reading it twice would duplicate records, and which class they belong to would be a guess.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Literal

from dpsad_core.data import limits
from dpsad_core.errors import DataImportError

SPECIAL_REMEDY = "remove it, or put the file itself there instead"
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def describe_mode(mode: int) -> str:
    for test, name in _SPECIAL_KINDS:
        if test(mode):
            return name
    return "not a regular file or folder"


def path_kind(path: Path, *, row: int | None = None,
              error_path: Path | None = None) -> Literal["file", "dir"]:
    """``"file"`` or ``"dir"`` (after following symbolic links), else :class:`DataImportError`.

    Special files, symbolic link loops, broken links and unreadable entries are refused by name.
    ``error_path`` and ``row`` point the error at a manifest row instead of at ``path``.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise unreachable(path, exc, row=row, error_path=error_path) from None
    if stat.S_ISREG(info.st_mode):
        return "file"
    if stat.S_ISDIR(info.st_mode):
        return "dir"
    raise _special(path, info.st_mode, row=row, error_path=error_path)


def open_regular(path: Path, *, row: int | None = None,
                 error_path: Path | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file within the data-bytes cap.

    The open never blocks (``O_NONBLOCK``: a FIFO swapped in after the check cannot hang it) and the
    open descriptor is checked again, so what is read is what was checked.
    """
    if path_kind(path, row=row, error_path=error_path) != "file":
        raise _located("a folder, not a file", path, row=row, error_path=error_path,
                       remedy="pass the file itself")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise unreachable(path, exc, row=row, error_path=error_path) from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise _special(path, info.st_mode, row=row, error_path=error_path)
        limits.MAX_DATA_BYTES.check(info.st_size, what="the file is too large to read",
                                    path=error_path or path, row=row)
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


class FolderVisits:
    """The folders a walk has entered, by real identity; a second arrival is refused."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], Path] = {}

    def enter(self, folder: Path) -> None:
        try:
            info = os.stat(folder)
        except OSError as exc:
            raise unreachable(folder, exc) from None
        key = (info.st_dev, info.st_ino)
        first = self._seen.setdefault(key, folder)
        if first != folder:
            raise DataImportError(
                f"this folder is {first} again (reached twice through a symbolic link); each "
                "folder is read once", path=folder,
                remedy="remove the symbolic link, or copy the images if they belong to two classes")


def unreachable(path: Path, exc: OSError, *, row: int | None = None,
                error_path: Path | None = None) -> DataImportError:
    """The error for a path that ``stat`` or ``open`` failed on: loop, broken link, permission."""
    if exc.errno == errno.ELOOP:
        return _located("symbolic link loop (the link never reaches a file)", path, row=row,
                        error_path=error_path, remedy="remove or fix the symbolic link")
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return _located(f"broken symbolic link to {os.readlink(path)!r}", path, row=row,
                        error_path=error_path, remedy="remove or fix the symbolic link")
    if exc.errno == errno.ENOENT:
        return _located("no such file or folder", path, row=row, error_path=error_path,
                        remedy="check the path")
    return _located(f"cannot read it ({exc.strerror or exc})", path, row=row,
                    error_path=error_path, remedy="check its permissions")


def _special(path: Path, mode: int, *, row: int | None,
             error_path: Path | None) -> DataImportError:
    return _located(f"{describe_mode(mode)}, not a regular file; only regular files are read",
                    path, row=row, error_path=error_path, remedy=SPECIAL_REMEDY)


def _located(message: str, path: Path, *, row: int | None, error_path: Path | None,
             remedy: str) -> DataImportError:
    if error_path is None:
        return DataImportError(message, path=path, remedy=remedy)
    return DataImportError(f"{path}: {message}", path=error_path, row=row, remedy=remedy)
