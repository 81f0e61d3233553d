"""Check a bundle (folder or zip): signature, every file against the MANIFEST, the signer's key.

Needs no torch, no numpy and no network: only the standard library and ``cryptography``, so a
colleague can verify a bundle on any machine (``tests/export/test_verify.py`` proves the imports).

Every member is read through :mod:`dpsad_core.export.members`, which refuses a malformed, ambiguous
or oversized bundle (exit 8, one line naming the member) before reading it, and caps every read.

Without an expected public key, verification proves the bundle is intact and was signed by the key
it carries; who holds that key is only as certain as its fingerprint, which the user should compare
with one obtained from the signer out of band. With ``public_key``, it also proves that key signed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dpsad_core.errors import ConfigError
from dpsad_core.export.layout import (
    CROISSANT,
    LABELS,
    MANIFEST,
    PUBLIC_KEY,
    REPORT_JSON,
    SIGNATURE,
    SIGNATURE_BYTES,
    SIGNER,
    BundleError,
)
from dpsad_core.export.manifest import parse_manifest
from dpsad_core.export.members import (
    DOCUMENT_BYTES,
    LIMIT_VARIABLES,
    SMALL_BYTES,
    BundleLimits,
    BundleReader,
    UnreadableFileError,
    open_bundle,
    read_regular_file,
)
from dpsad_core.export.signing import fingerprint, public_key_from_bytes, raw_public_bytes

REQUIRED_FILES = (REPORT_JSON, CROISSANT, LABELS, PUBLIC_KEY, SIGNER)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_bundle`.

    ``problems`` names each failure ("changed: images/0/0-000001.png ..."); ``summary`` holds what
    the report says (epsilon, delta, recipe, signer, ...) and is only trustworthy when ``ok``.
    ``key_pinned`` is True when an expected public key was given and the bundle was signed with it.
    """

    path: Path
    ok: bool
    problems: tuple[str, ...]
    summary: dict[str, Any] = field(default_factory=dict)
    signer_fingerprint: str | None = None
    key_pinned: bool = False


def verify_bundle(path: str | os.PathLike[str], public_key: str | os.PathLike[str] | Ed25519PublicKey | None = None,
                  *, limits: BundleLimits | None = None) -> VerifyResult:
    """Verify the bundle at ``path`` (a folder or a ``.zip``).

    Parameters
    ----------
    path
        The bundle folder, or a zip holding one bundle folder.
    public_key
        The key the bundle must have been signed with (a file with PEM, ``ssh-ed25519 ...`` or 64 hex
        characters, or a key object). None: trust the key the bundle carries, and say so.
    limits
        The most the bundle may hold; default: :class:`BundleLimits` with any ``DPSAD_BUNDLE_MAX_*``
        environment variable applied.

    Raises
    ------
    BundleError
        When ``path`` is neither a folder nor a readable zip, or the bundle is malformed, ambiguous or
        bigger than ``limits`` (the message names the member and the reason).
    ConfigError
        When ``public_key`` is not a readable Ed25519 public key, or a limit is not a positive number.
    """
    expected = _expected_key(public_key)
    limits = BundleLimits.from_environment() if limits is None else limits
    with open_bundle(Path(path), limits) as reader:
        return _verify(reader, Path(path), expected)


def _expected_key(public_key) -> Ed25519PublicKey | None:
    if public_key is None or isinstance(public_key, Ed25519PublicKey):
        return public_key
    source = Path(public_key)
    try:
        data = read_regular_file(source, limit=SMALL_BYTES)
    except UnreadableFileError as error:
        raise ConfigError(f"the public key {source} {error}", field="public_key", value=str(source),
                          remedy="give the path of the signer's public key file") from None
    return public_key_from_bytes(data, source=str(source))


def _verify(reader: BundleReader, path: Path, expected: Ed25519PublicKey | None) -> VerifyResult:
    problems: list[str] = []
    present = reader.names()
    if MANIFEST not in present:
        problems.append(f"removed: {MANIFEST} (the bundle has no MANIFEST, so nothing in it can be checked)")
        return VerifyResult(path=path, ok=False, problems=tuple(problems))
    # Everything read whole is size-checked before anything is read or hashed: a bomb is refused at once.
    for relative, cap in _read_whole(reader.limits).items():
        if relative in present:
            reader.check_size(relative, **cap)
    manifest_bytes = _read(reader, MANIFEST)
    try:
        entries = parse_manifest(manifest_bytes, max_entries=reader.limits.max_members,
                                 raise_with=f" ({LIMIT_VARIABLES['max_members']} raises it: docs/limits.md)")
    except BundleError as error:
        return VerifyResult(path=path, ok=False, problems=(f"manifest: {error.message}",))

    embedded = _embedded_key(reader, present, problems)
    if expected is not None and embedded is not None and raw_public_bytes(embedded) != raw_public_bytes(expected):
        problems.append(f"wrong key: the bundle was signed by {fingerprint(embedded)}, not by the given key "
                        f"{fingerprint(expected)}")
    verification_key = expected if expected is not None else embedded
    signature_ok = _check_signature(reader, present, manifest_bytes, verification_key, problems)

    for relative, digest in entries.items():
        if relative not in present:
            problems.append(f"removed: {relative} (listed in the MANIFEST, missing from the bundle)")
        elif reader.sha256(relative) != digest:
            problems.append(f"changed: {relative} (its sha256 differs from the MANIFEST)")
    for relative in sorted(present - set(entries) - {MANIFEST, SIGNATURE}):
        problems.append(f"added: {relative} (not in the MANIFEST)")
    for relative in REQUIRED_FILES:
        if relative not in entries:
            problems.append(f"incomplete: the MANIFEST does not list {relative}")

    summary = _summary(reader, present, problems)
    signer = fingerprint(verification_key) if verification_key is not None else None
    if signer is not None and summary.get("signer") not in (None, signer):
        problems.append(f"report: it names the signer {summary.get('signer')}, but {signer} signed the bundle")
    summary["signer"] = signer
    return VerifyResult(path=path, ok=not problems, problems=tuple(problems), summary=summary,
                        signer_fingerprint=signer, key_pinned=expected is not None and signature_ok and not problems)


def _read_whole(limits: BundleLimits) -> dict[str, dict[str, Any]]:
    """The members verify reads into memory: each one's cap, what a message calls it, the limit that raises it."""
    return {MANIFEST: {"limit": limits.max_manifest_bytes, "what": "MANIFEST", "limit_name": "max_manifest_bytes"},
            PUBLIC_KEY: {"limit": SMALL_BYTES, "what": "public key"},
            SIGNER: {"limit": SMALL_BYTES, "what": "signer record"},
            SIGNATURE: {"limit": SMALL_BYTES, "what": "signature"},
            REPORT_JSON: {"limit": DOCUMENT_BYTES, "what": "privacy report"}}


def _read(reader: BundleReader, relative: str) -> bytes:
    return reader.read(relative, **_read_whole(reader.limits)[relative])


def _embedded_key(reader: BundleReader, present: set[str], problems: list[str]) -> Ed25519PublicKey | None:
    if PUBLIC_KEY not in present:
        problems.append(f"removed: {PUBLIC_KEY} (the signer's public key is missing)")
        return None
    try:
        key = public_key_from_bytes(_read(reader, PUBLIC_KEY), source=PUBLIC_KEY)
    except ConfigError as error:
        problems.append(f"public key: {error.message}")
        return None
    if SIGNER in present:
        try:
            recorded = json.loads(_read(reader, SIGNER)).get("fingerprint")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            recorded = None
            problems.append(f"public key: {SIGNER} is not valid JSON")
        if recorded is not None and recorded != fingerprint(key):
            problems.append(f"public key: {PUBLIC_KEY} (fingerprint {fingerprint(key)}) is not the key recorded in "
                            f"{SIGNER} ({recorded}): it was replaced")
    return key


def _check_signature(reader: BundleReader, present: set[str], manifest_bytes: bytes, key: Ed25519PublicKey | None,
                     problems: list[str]) -> bool:
    if SIGNATURE not in present:
        problems.append(f"signature: {SIGNATURE} is missing")
        return False
    text = _read(reader, SIGNATURE).strip()
    try:
        signature = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        problems.append(f"signature: {SIGNATURE} is not hexadecimal text")
        return False
    if len(signature) != SIGNATURE_BYTES:
        problems.append(f"signature: {SIGNATURE} is truncated or padded ({len(signature)} bytes, an Ed25519 "
                        f"signature has {SIGNATURE_BYTES})")
        return False
    if key is None:
        problems.append("signature: cannot be checked without the signer's public key")
        return False
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        problems.append(f"signature: does not match the MANIFEST for key {fingerprint(key)} (the MANIFEST or the "
                        "signature was altered, or another key signed it)")
        return False
    return True


def _summary(reader: BundleReader, present: set[str], problems: list[str]) -> dict[str, Any]:
    if REPORT_JSON not in present:
        return {}
    try:
        report = json.loads(_read(reader, REPORT_JSON))
        guarantee = report["guarantee"]
        # Private only if the guarantee says so AND neither it nor the plan lists an unprotected part: a
        # report whose headline contradicts its own plan is read as not private.
        plan = report.get("plan") or {}
        unprotected = [*guarantee.get("nonprivate_parts", []), *plan.get("nonprivate_parts", [])]
        private = guarantee["differentially_private"] is True and not unprotected
        return {"title": report.get("title"), "private": private,
                "epsilon": guarantee["epsilon"] if private else None, "delta": guarantee["delta"],
                "unit_of_privacy": guarantee["unit_of_privacy"], "recipe": report["run"]["recipe"],
                "run_id": report["run"]["run_id"], "dataset": report["dataset"]["name"],
                "images": report["bundle"]["images"], "signer": report.get("signer", {}).get("fingerprint")}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        problems.append(f"report: {REPORT_JSON} cannot be read ({type(error).__name__}: {error})")
        return {}
