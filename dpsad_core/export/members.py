"""Reading the members of a bundle someone else made (a folder or a zip): checked first, capped, never followed.

The verifier reads a bundle only through :func:`open_bundle`. A bundle may come from an attacker, so
its whole structure is checked before any member is read, and anything malformed, ambiguous or
oversized is refused with a :class:`BundleError` (exit 8) whose one line names the member and why:

- ambiguous: two zip members with one name, more than one MANIFEST, a name that is both a file and
  a folder (an extractor would keep one copy, not necessarily the one that was checked);
- unsafe: an absolute name, ``..`` or ``.``, a backslash, a control character, a name that is not
  UTF-8, a symbolic link, a device, a FIFO or a socket;
- unreadable: an encrypted member, a compression method the standard library cannot read, a bad
  CRC, a broken deflate stream;
- oversized: more members, a bigger member or more bytes in all than :class:`BundleLimits` allows,
  counted from the zip's central directory or ``lstat`` before anything is read.

Headers can lie, so every read is also streamed under a hard cap. Nothing is extracted or written;
symbolic links are never followed, so nothing outside the bundle is opened. Standard library only:
the verifier runs without numpy or torch.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

from dpsad_core.errors import ConfigError
from dpsad_core.export.layout import BundleError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
#: Files verify reads whole into memory besides the MANIFEST: privacy-report.json ...
DOCUMENT_BYTES = 64 * MiB
#: ... and the small ones: the signature, signer.json, a public key (in the bundle or given with --public-key).
SMALL_BYTES = 64 * KiB
_CHUNK = 1 << 20
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
TAMPERED = "the bundle was tampered with or built wrongly: do not use it; ask the signer for a new copy"
DAMAGED = "the bundle is damaged or was tampered with: ask the signer for a new copy"


@dataclass(frozen=True)
class BundleLimits:
    """The most a bundle may hold before verify refuses it; each is checked before reading.

    The defaults fit any bundle ``dpsad-core export`` writes up to a million images; raise one with
    its environment variable (:data:`LIMIT_VARIABLES`) when a trusted bundle is bigger.
    """

    max_members: int = 1_000_000
    max_member_bytes: int = 16 * GiB
    max_total_bytes: int = 64 * GiB
    max_manifest_bytes: int = 128 * MiB  # a million lines of ~130 characters; parsing takes ~5x it in memory

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"bundle limit {item.name} must be a positive whole number, not {value!r}",
                                  field=item.name, value=value, remedy=f"set {LIMIT_VARIABLES[item.name]} to "
                                                                       "a number of members or bytes")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> BundleLimits:
        """The defaults, with any ``DPSAD_BUNDLE_MAX_*`` variable set in ``environ`` (default: os.environ)."""
        environ = os.environ if environ is None else environ
        values = {}
        for name, variable in LIMIT_VARIABLES.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            try:
                values[name] = int(text)
            except ValueError:
                raise ConfigError(f"{variable}={text!r} is not a whole number", field=variable, value=text,
                                  remedy=f"give a number of {'members' if name == 'max_members' else 'bytes'}, "
                                         f"e.g. {variable}={getattr(cls(), name) * 2}") from None
        return cls(**values)


#: The environment variable that raises (or lowers) each limit of :class:`BundleLimits`.
LIMIT_VARIABLES = {"max_members": "DPSAD_BUNDLE_MAX_MEMBERS", "max_member_bytes": "DPSAD_BUNDLE_MAX_MEMBER_BYTES",
                   "max_total_bytes": "DPSAD_BUNDLE_MAX_TOTAL_BYTES",
                   "max_manifest_bytes": "DPSAD_BUNDLE_MAX_MANIFEST_BYTES"}


def too_big_remedy(limit_name: str) -> str:
    return (f"if you trust where the bundle came from, raise the limit with {LIMIT_VARIABLES[limit_name]} "
            "(see docs/limits.md); otherwise do not use it")


class BundleReader:
    """The members of one bundle, by path relative to the bundle folder; every read capped.

    ``label`` is how messages name the bundle. Use :func:`open_bundle` to get one.
    """

    def __init__(self, label: str, limits: BundleLimits) -> None:
        self.label = label
        self.limits = limits
        self.sizes: dict[str, int] = {}  # relative path -> declared size (central directory, or lstat)
        self._entries = 0  # files and folders seen while checking the structure
        self._total = 0    # their declared bytes

    def names(self) -> set[str]:
        return set(self.sizes)

    def check_size(self, relative: str, *, limit: int, what: str, limit_name: str | None = None) -> None:
        """Refuse the member (by name, with ``what`` it is) when its declared size is over ``limit``."""
        declared = self.sizes[relative]
        if declared > limit:
            remedy = too_big_remedy(limit_name) if limit_name else TAMPERED
            raise self._refuse(self._member(relative), f"is {declared:,} bytes, more than the {limit:,} a {what} may "
                               "have", remedy)

    def read(self, relative: str, *, limit: int, what: str, limit_name: str | None = None) -> bytes:
        """The whole member, refused when its declared size or the bytes it really holds exceed ``limit``."""
        self.check_size(relative, limit=limit, what=what, limit_name=limit_name)
        return b"".join(self._chunks(relative, self.sizes[relative]))

    def sha256(self, relative: str) -> str:
        """Hex sha256 of the member, streamed (a member of any allowed size never fills memory)."""
        digest = hashlib.sha256()
        for chunk in self._chunks(relative, self.sizes[relative]):
            digest.update(chunk)
        return digest.hexdigest()

    def close(self) -> None:
        pass

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- for the two kinds of bundle -----------------------------------------------------------------
    def _chunks(self, relative: str, limit: int) -> Iterator[bytes]:
        """The member's bytes in chunks, through :meth:`_capped` with ``limit`` (its declared size)."""
        raise NotImplementedError

    def _member(self, relative: str) -> str:
        """How a message names the member (its name inside the zip, or its path in the folder)."""
        return relative

    def _refuse(self, member: str, reason: str, remedy: str = TAMPERED) -> BundleError:
        return BundleError(f"{self.label}: member {member!r} {reason}", path=self.label, remedy=remedy)

    def _capped(self, relative: str, handle: IO[bytes], limit: int) -> Iterator[bytes]:
        """Chunks of ``handle``, refused as soon as they pass ``limit``, the size declared (headers can lie)."""
        size = 0
        while True:
            chunk = handle.read(min(_CHUNK, limit + 1 - size))
            if not chunk:
                return
            size += len(chunk)
            if size > limit:
                raise self._refuse(self._member(relative), f"holds more than the {limit:,} bytes declared for it "
                                   "(its header lies, or it grew while being verified)", DAMAGED)
            yield chunk

    def _count(self, member: str) -> None:
        """Count a file or folder found while checking the structure, refusing one too many."""
        self._entries += 1
        if self._entries > self.limits.max_members:
            raise BundleError(f"{self.label}: holds more than {self.limits.max_members:,} members, files and "
                              f"folders (at {member!r})", path=self.label, remedy=too_big_remedy("max_members"))

    def _add(self, relative: str, member: str, size: int) -> None:
        """Record a file found while checking the structure, refusing one too big."""
        limits = self.limits
        if size > limits.max_member_bytes:
            raise self._refuse(member, f"is {size:,} bytes, more than the {limits.max_member_bytes:,} a member may "
                               "have", too_big_remedy("max_member_bytes"))
        self._total += size
        if self._total > limits.max_total_bytes:
            raise self._refuse(member, f"brings the bundle past {limits.max_total_bytes:,} bytes in all",
                               too_big_remedy("max_total_bytes"))
        self.sizes[relative] = size


def name_problem(name: str) -> str | None:
    """Why ``name`` (a POSIX relative path) cannot name a bundle member safely, or None when it can."""
    if not name:
        return "has an empty name"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not UTF-8"
    if _CONTROL_CHARACTER.search(name):
        return "has a control character in its name"
    if "\\" in name:
        return "has a backslash in its name (a folder separator on Windows)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute name: it would be written outside the bundle"
    parts = name.split("/")
    if ".." in parts:
        return "has '..' in its name: it would be written outside the bundle"
    if "." in parts or "" in parts:
        return "has an empty or '.' part in its name (another spelling of another member)"
    return None


def kind_of(mode: int) -> str:
    """What a non-regular file is, for a message ("a symbolic link", "a FIFO", ...)."""
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return f"a special file (mode {stat.S_IFMT(mode):o})"


def not_regular(mode: int) -> str:
    return (f"is {kind_of(mode)}: a bundle holds only regular files and folders, and verify never follows a link or "
            "opens a special file")


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]


def open_bundle(path: Path, limits: BundleLimits) -> BundleReader:
    """A reader for the bundle folder or zip at ``path``, its structure checked (see the module docstring).

    Raises
    ------
    BundleError
        ``path`` is missing, not a folder or regular file, not a zip, or the bundle is malformed,
        ambiguous or bigger than ``limits``.
    """
    try:
        mode = path.stat().st_mode  # the path the user gave may be a link: follow that one
    except OSError:
        raise BundleError(f"{path} does not exist", path=path, remedy="give the bundle folder or its .zip") from None
    if stat.S_ISDIR(mode):
        from dpsad_core.export.folder_members import FolderReader

        return FolderReader(path, limits)
    if stat.S_ISREG(mode):
        from dpsad_core.export.zip_members import ZipReader

        return ZipReader(path, limits)
    raise BundleError(f"{path} is {kind_of(mode)}, not a bundle folder or zip", path=path,
                      remedy="give the bundle folder or its .zip")


class UnreadableFileError(Exception):
    """A file given by the user (a public key) is not a regular file of a sensible size; the message says why."""


def read_regular_file(path: Path, *, limit: int) -> bytes:
    """The bytes of ``path`` (links followed: the user named it), which must be a regular file of <= ``limit``.

    A FIFO, a device such as ``/dev/zero`` or a folder is refused before reading; the read is capped too.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise UnreadableFileError(f"cannot be read: {error.strerror}") from None
    status = os.fstat(descriptor)
    problem = None
    if not stat.S_ISREG(status.st_mode):
        problem = f"is {kind_of(status.st_mode)}, not a regular file"
    elif status.st_size > limit:
        problem = f"is {status.st_size:,} bytes, more than the {limit:,} a key file may have"
    if problem is not None:
        os.close(descriptor)
        raise UnreadableFileError(problem)
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFileError(f"holds more than the {limit:,} bytes a key file may have")
    return data
