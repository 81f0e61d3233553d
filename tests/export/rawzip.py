"""A zip writer that writes exactly what it is told: the headers an attacker controls, for hostile-bundle tests.

zipfile refuses to write most of what an attacker's zip holds (a NUL in a name, a declared size that
lies, an unknown compression method), so the tests build their zips here, byte by byte, following
APPNOTE.TXT (local headers, central directory, end record; zip64 only for a declared size of 4 GiB or more).
"""

from __future__ import annotations

import stat
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

STORED, DEFLATED = 0, 8
_UTF8_NAME = 0x800
_ZIP64 = 0xFFFFFFFF


@dataclass(frozen=True)
class RawMember:
    """One member as written: ``data`` is stored as is (already compressed when ``method`` says so)."""

    name: str | bytes
    data: bytes
    method: int = STORED
    crc: int | None = None    # None: the CRC-32 of ``data`` (right for STORED)
    size: int | None = None   # declared uncompressed size; None: len(data)
    flags: int = 0
    mode: int = stat.S_IFREG | 0o644

    def encoded_name(self) -> bytes:
        return self.name if isinstance(self.name, bytes) else self.name.encode("utf-8")


def deflated(name: str, content: bytes, **changes) -> RawMember:
    """A DEFLATED member holding ``content`` (its CRC and size right unless ``changes`` say otherwise)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(content) + compressor.flush()
    member = RawMember(name, data, method=DEFLATED, crc=zlib.crc32(content), size=len(content))
    return replace(member, **changes)


def zeros_bomb(name: str, gigabytes: int, *, size: int | None = None) -> RawMember:
    """A DEFLATED member of ``gigabytes`` GiB of zeros in about 1 MB per GiB, built without inflating it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)  # the same every MiB
    data = block * (gigabytes << 10) + compressor.flush()
    return RawMember(name, data, method=DEFLATED, crc=0, size=(gigabytes << 30) if size is None else size)


def write_zip(path: Path, members: list[RawMember]) -> Path:
    local, central = bytearray(), bytearray()
    for member in members:
        name = member.encoded_name()
        crc = zlib.crc32(member.data) if member.crc is None else member.crc
        size = len(member.data) if member.size is None else member.size
        flags = member.flags | _UTF8_NAME
        offset = len(local)
        extra = b""
        if size >= _ZIP64:  # a size of 4 GiB or more goes in a zip64 extra field
            size, extra = _ZIP64, struct.pack("<2HQ", 1, 8, size)
        local += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 45, 0, flags, member.method, 0, 0x21, crc,
                             len(member.data), size, len(name), len(extra)) + name + extra + member.data
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 45, 3, 45, 0, flags, member.method, 0, 0x21, crc,
                               len(member.data), size, len(name), len(extra), 0, 0, 0, (member.mode & 0xFFFF) << 16,
                               offset) + name + extra
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path


def members_of(folder: Path, top: str = "bundle/") -> list[RawMember]:
    """Every file of a bundle folder as a STORED member under ``top`` (sorted, so the zip is reproducible)."""
    return [RawMember(top + path.relative_to(folder).as_posix(), path.read_bytes())
            for path in sorted(folder.rglob("*")) if path.is_file()]
