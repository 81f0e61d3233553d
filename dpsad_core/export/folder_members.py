"""The folder flavour of a bundle reader: walked without following links, files opened beneath the bundle.

See :mod:`dpsad_core.export.members` for what is refused and why.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from dpsad_core.export.members import BundleLimits, BundleReader, name_problem, not_regular

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW
# Opening each folder relative to its parent, without following links, leaves no moment at which a
# folder swapped for a link could lead a read outside the bundle (POSIX; elsewhere the walk's check stands).
_OPEN_BENEATH = bool(_NOFOLLOW) and hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd


class FolderReader(BundleReader):
    """A bundle folder: every file and folder listed (and counted) before any is read."""

    def __init__(self, folder: Path, limits: BundleLimits) -> None:
        super().__init__(str(folder), limits)
        self.folder = folder
        self._walk()

    def _walk(self) -> None:
        pending = [""]
        while pending:
            prefix = pending.pop()
            try:
                # Counted while listed, never listed whole first: a folder of millions of entries stops early.
                with os.scandir(self.folder / prefix if prefix else self.folder) as entries:
                    for entry in entries:
                        self._visit(prefix + entry.name, entry.stat(follow_symlinks=False).st_mode, entry, pending)
            except OSError as error:
                raise self._refuse(prefix.rstrip("/") or ".", f"cannot be listed ({error.strerror})",
                                   "check the folder's permissions") from None

    def _visit(self, relative: str, mode: int, entry: os.DirEntry, pending: list[str]) -> None:
        self._count(relative)
        problem = name_problem(relative)
        if problem is not None:
            raise self._refuse(relative, problem)
        if stat.S_ISDIR(mode):
            pending.append(relative + "/")
        elif stat.S_ISREG(mode):
            self._add(relative, relative, entry.stat(follow_symlinks=False).st_size)
        else:
            raise self._refuse(relative, not_regular(mode))

    def _chunks(self, relative: str, limit: int) -> Iterator[bytes]:
        try:
            descriptor = self._open_beneath(relative)
        except OSError as error:
            linked = error.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR)  # O_NOFOLLOW met a link
            reason = not_regular(stat.S_IFLNK) if linked else f"cannot be read ({error.strerror})"
            raise self._refuse(relative, reason) from None
        with os.fdopen(descriptor, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):  # replaced after the walk
                raise self._refuse(relative, not_regular(mode))
            yield from self._capped(relative, handle, limit)

    def _open_beneath(self, relative: str) -> int:
        if not _OPEN_BENEATH:
            return os.open(self.folder / relative, _READ_FLAGS)
        *folders, name = relative.split("/")
        current = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for folder in folders:
                inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=current)
                os.close(current)
                current = inner
            return os.open(name, _READ_FLAGS, dir_fd=current)
        finally:
            os.close(current)
