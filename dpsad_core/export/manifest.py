"""The canonical MANIFEST: one line ``"<sha256 hex>  <relative/path>"`` per file, sorted by path.

It covers every file of the bundle except itself and its signature, so signing the MANIFEST bytes
signs every file. Standard library only: the verifier imports it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from dpsad_core.export.layout import MANIFEST, SIGNATURE, BundleError

_LINE = re.compile(r"^([0-9a-f]{64})  (\S(?:.*\S)?)$")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large bundles do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(folder: Path) -> list[str]:
    """Relative POSIX paths of every regular file under ``folder`` but the MANIFEST and its signature."""
    folder = Path(folder)
    paths = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            relative = path.relative_to(folder).as_posix()
            if relative not in (MANIFEST, SIGNATURE):
                paths.append(relative)
    return sorted(paths)


def format_manifest(entries: Iterable[tuple[str, str]]) -> bytes:
    """MANIFEST bytes for ``(relative_path, sha256)`` pairs: sorted by path, UTF-8, one line each."""
    lines = []
    for relative, digest in sorted(entries):
        check_relative_path(relative)
        lines.append(f"{digest}  {relative}\n")
    return "".join(lines).encode("utf-8")


def build_manifest(folder: Path) -> bytes:
    """The MANIFEST of a finished bundle folder."""
    return format_manifest((relative, sha256_file(Path(folder) / relative)) for relative in bundle_files(folder))


def parse_manifest(data: bytes, *, max_entries: int | None = None, raise_with: str = "") -> dict[str, str]:
    """``{relative_path: sha256}`` from MANIFEST bytes; a malformed MANIFEST raises BundleError.

    More than ``max_entries`` lines is refused too (a MANIFEST cannot list more files than a bundle may
    hold); ``raise_with`` says in that message how to raise the limit.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError("MANIFEST is not UTF-8 text", remedy="the bundle is damaged; ask for a new copy") from None
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.match(line)
        if match is None:
            raise BundleError(f"MANIFEST line {number} is malformed: {line[:80]!r}",
                              remedy="the bundle is damaged or was edited; ask for a new copy")
        if max_entries is not None and number > max_entries:
            raise BundleError(f"MANIFEST lists more than {max_entries:,} files, the most a bundle may hold{raise_with}",
                              remedy="the bundle was edited, or is bigger than this limit allows")
        digest, relative = match.groups()
        check_relative_path(relative)
        if relative in entries:
            raise BundleError(f"MANIFEST lists {relative} twice", remedy="the bundle was edited; ask for a new copy")
        entries[relative] = digest
    if not entries:
        raise BundleError("MANIFEST is empty", remedy="the bundle is damaged; ask for a new copy")
    return entries


def check_relative_path(relative: str) -> None:
    """Refuse absolute paths and ``..``: a MANIFEST must never point outside its bundle."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or "\\" in relative or relative in ("", "."):
        raise BundleError(f"MANIFEST names an unsafe path {relative!r}",
                          remedy="the bundle was tampered with; do not use it")


def seal_folder(folder: Path, key) -> bytes:
    """Write the signer's public key, the MANIFEST and its detached signature into ``folder``.

    ``key`` is an Ed25519 private key; only its public half is written. Returns the MANIFEST bytes.
    The signature goes last, so a folder without it was never finished.
    """
    from dpsad_core.export.layout import PUBLIC_KEY, SIGNER
    from dpsad_core.export.signing import public_key_pem, signer_info

    folder = Path(folder)
    public = key.public_key()
    (folder / PUBLIC_KEY).write_bytes(public_key_pem(public))
    info = signer_info(public).to_dict()
    (folder / SIGNER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest = build_manifest(folder)
    (folder / MANIFEST).write_bytes(manifest)
    (folder / SIGNATURE).write_text(key.sign(manifest).hex() + "\n", encoding="ascii")
    return manifest
