"""The zip flavour of a bundle reader: the structure checked from the central directory, members streamed.

A zip holds one bundle folder, marked by its MANIFEST; members outside it are named ``../<name>``
and count as added files. See :mod:`dpsad_core.export.members` for what is refused and why.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from dpsad_core.export.layout import MANIFEST, BundleError
from dpsad_core.export.members import (
    DAMAGED,
    BundleLimits,
    BundleReader,
    name_problem,
    not_regular,
    one_line,
    too_big_remedy,
)

#: Central-directory bytes allowed per member before zipfile parses it (a member's entry is 46 bytes plus
#: its name and extra fields; a bundle's names are well under 200 characters).
_DIRECTORY_BYTES_PER_MEMBER = 512
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}
_ZIP_ENCRYPTED = 0x1 | 0x40  # traditional PKWARE encryption, strong encryption
#: What reading a hostile zip member can raise from inside zipfile and its decompressors.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
                                                   ValueError, OverflowError, struct.error)
try:
    import lzma

    _DECODE_ERRORS += (lzma.LZMAError,)
except ImportError:  # a Python built without lzma cannot read such members: zipfile says so (RuntimeError)
    pass


class ZipReader(BundleReader):
    """A zip holding one bundle folder; members outside that folder are named ``../<name>``."""

    def __init__(self, path: Path, limits: BundleLimits) -> None:
        super().__init__(str(path), limits)
        self._check_directory_size(path)
        try:
            self.zip = zipfile.ZipFile(path)
        except _DECODE_ERRORS as error:
            raise BundleError(f"{path} is not a readable zip ({one_line(error)})", path=path,
                              remedy="the download is incomplete or damaged; ask for a new copy") from None
        try:
            self._index()
        except BaseException:
            self.zip.close()
            raise

    def _check_directory_size(self, path: Path) -> None:
        """Refuse a central directory too big for the member limit before zipfile reads it into memory."""
        limits = self.limits
        # zipfile's own reader of the end record, so both read the same numbers (zipfile then reads
        # exactly ``size`` bytes of directory and makes an object per entry). Private: should a Python
        # drop it, the count checked after zipfile has read the directory still stands.
        end_record = getattr(zipfile, "_EndRecData", None)
        if end_record is None:
            return
        try:
            with open(path, "rb") as handle:
                end = end_record(handle)
        except _DECODE_ERRORS:
            return  # ZipFile reports the unreadable zip below
        if not end:
            return
        # ignore: zipfile's private record indices, which typeshed leaves out
        entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
        if entries > limits.max_members or size > limits.max_members * _DIRECTORY_BYTES_PER_MEMBER:
            raise BundleError(f"{path}: its central directory declares {entries:,} members in {size:,} bytes, more "
                              f"than the {limits.max_members:,} members a bundle may hold", path=path,
                              remedy=too_big_remedy("max_members"))

    def _index(self) -> None:
        infos = self.zip.infolist()
        if len(infos) > self.limits.max_members:
            raise BundleError(f"{self.label}: holds {len(infos):,} members, more than {self.limits.max_members:,}",
                              path=self.label, remedy=too_big_remedy("max_members"))
        files: dict[str, zipfile.ZipInfo] = {}
        folders: set[str] = set()
        for info in infos:
            self._check_member(info)
            if info.is_dir():
                folders.add(info.filename.rstrip("/"))
            elif info.filename in files:
                raise self._refuse(info.filename, "appears twice in the zip: an extractor may keep either copy, "
                                                  "not necessarily the one that was checked")
            else:
                files[info.filename] = info
        implied: set[str] = set()
        for name in files:  # every folder above a file (each found once: stop at one already seen)
            parent = name.rpartition("/")[0]
            while parent and parent not in implied:
                implied.add(parent)
                parent = parent.rpartition("/")[0]
        folders |= implied
        for name in files:
            if name in folders:
                raise self._refuse(name, "is both a file and a folder in the zip: an extractor keeps only one")
        manifests = sorted(name for name in files if name == MANIFEST or name.endswith("/" + MANIFEST))
        if len(manifests) > 1:
            raise self._refuse(manifests[1], f"is a second MANIFEST (also {manifests[0]!r}): a zip holds one bundle, "
                                             "so which one to check would be ambiguous")
        # A bundle zip holds one top folder; its MANIFEST marks it. Members outside it count as added files.
        self.prefix = manifests[0][: -len(MANIFEST)] if manifests else ""
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for name, info in files.items():
            relative = name[len(self.prefix):] if name.startswith(self.prefix) else "../" + name
            self.infos[relative] = info
            self._add(relative, name, info.file_size)

    def _check_member(self, info: zipfile.ZipInfo) -> None:
        if not info.filename:  # before is_dir(), which fails on an empty name
            raise self._refuse(info.orig_filename, "has an empty name")
        name = info.filename.rstrip("/") if info.is_dir() else info.filename
        if info.orig_filename != info.filename and os.sep == "/":
            raise self._refuse(info.orig_filename, "has a NUL character in its name (it would be read as another "
                                                   "name)")
        problem = name_problem(name)
        if problem is not None:
            raise self._refuse(info.filename, problem)
        mode = info.external_attr >> 16
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise self._refuse(info.filename, not_regular(mode))
        if info.is_dir():
            return
        if info.flag_bits & _ZIP_ENCRYPTED:
            raise self._refuse(info.filename, "is encrypted: a bundle is never encrypted, and cannot be checked so")
        if info.compress_type not in _ZIP_METHODS:
            raise self._refuse(info.filename, f"uses compression method {info.compress_type}, which verify does not "
                                              f"read (only {', '.join(_ZIP_METHODS.values())})",
                               "re-create the zip with ordinary deflate compression, or verify the folder")

    def _member(self, relative: str) -> str:
        return self.infos[relative].filename

    def _chunks(self, relative: str, limit: int) -> Iterator[bytes]:
        info = self.infos[relative]
        handle = None
        try:
            handle = self.zip.open(info)
            # zipfile stops at the declared size and checks the CRC there; the cap stands whatever it does.
            yield from self._capped(relative, handle, limit)
        except _DECODE_ERRORS as error:
            raise self._refuse(info.filename, f"cannot be read: {one_line(error)}", DAMAGED) from None
        finally:
            if handle is not None:
                handle.close()

    def close(self) -> None:
        self.zip.close()
