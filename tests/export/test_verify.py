"""verify_bundle on a hand-made sealed bundle: intact passes, each kind of tampering is named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from dpsad_core.export import signing
from dpsad_core.export.layout import MANIFEST, PUBLIC_KEY, REPORT_JSON, SIGNATURE, BundleError
from dpsad_core.export.verify import verify_bundle


def test_intact_bundle_verifies_with_summary(sealed_bundle):
    result = verify_bundle(sealed_bundle)
    assert result.ok, result.problems
    assert result.summary["epsilon"] == 7.25 and result.summary["recipe"] == "dpsad-split"
    key = signing.load_or_create_signing_key()
    assert result.signer_fingerprint == signing.fingerprint(key.public_key())
    assert result.key_pinned is False


def test_manifest_lists_every_file_but_itself_and_the_signature(sealed_bundle):
    listed = {line.split("  ", 1)[1] for line in (sealed_bundle / MANIFEST).read_text().splitlines()}
    on_disk = {p.relative_to(sealed_bundle).as_posix() for p in sealed_bundle.rglob("*") if p.is_file()}
    assert listed == on_disk - {MANIFEST, SIGNATURE}
    lines = (sealed_bundle / MANIFEST).read_text().splitlines()
    assert lines == sorted(lines, key=lambda line: line.split("  ", 1)[1])


def test_pinned_public_key_passes_and_wrong_key_fails(sealed_bundle, tmp_path):
    mine = tmp_path / "mine.pem"
    signing.export_public_key(mine)
    assert verify_bundle(sealed_bundle, public_key=mine).key_pinned
    other = tmp_path / "other.pem"
    other.write_bytes(signing.public_key_pem(ed25519.Ed25519PrivateKey.generate().public_key()))
    result = verify_bundle(sealed_bundle, public_key=other)
    assert not result.ok and not result.key_pinned
    assert any(p.startswith("wrong key:") for p in result.problems)
    assert any(p.startswith("signature:") for p in result.problems)


def _flip_byte(path: Path, offset: int = 5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_report_number(bundle: Path) -> None:
    text = (bundle / REPORT_JSON).read_text()
    assert "7.25" in text
    (bundle / REPORT_JSON).write_text(text.replace("7.25", "0.25"))


def _replace_public_key(bundle: Path) -> None:
    (bundle / PUBLIC_KEY).write_bytes(signing.public_key_pem(ed25519.Ed25519PrivateKey.generate().public_key()))


def _truncate_signature(bundle: Path) -> None:
    text = (bundle / SIGNATURE).read_text().strip()
    (bundle / SIGNATURE).write_text(text[:100])


TAMPERING = {
    "flip a byte in an image": (lambda b: _flip_byte(b / "images/0/0-000001.png"), "changed: images/0/0-000001.png"),
    "edit a number in the report": (_edit_report_number, f"changed: {REPORT_JSON}"),
    "add a file": (lambda b: (b / "images/0/extra.png").write_bytes(b"x"), "added: images/0/extra.png"),
    "delete a file": (lambda b: (b / "images/1/1-000002.png").unlink(), "removed: images/1/1-000002.png"),
    "replace the public key": (_replace_public_key, f"changed: {PUBLIC_KEY}"),
    "truncate the signature": (_truncate_signature, "signature: MANIFEST.sig is truncated"),
    "edit the MANIFEST": (lambda b: _flip_byte(b / MANIFEST, 0), "signature: does not match the MANIFEST"),
    "delete the signature": (lambda b: (b / SIGNATURE).unlink(), "signature: MANIFEST.sig is missing"),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_each_tampering_fails_and_is_named(sealed_bundle, name):
    tamper, expected = TAMPERING[name]
    tamper(sealed_bundle)
    result = verify_bundle(sealed_bundle)
    assert not result.ok
    assert any(p.startswith(expected) for p in result.problems), result.problems


def test_replaced_key_with_re_signed_manifest_is_caught_by_fingerprint_and_pinning(sealed_bundle, tmp_path):
    """An attacker re-signs everything with their key: only the fingerprint and --public-key catch it."""
    from dpsad_core.export.manifest import seal_folder

    mine = tmp_path / "mine.pem"
    signing.export_public_key(mine)
    original = verify_bundle(sealed_bundle).signer_fingerprint
    _edit_report_number(sealed_bundle)
    attacker = ed25519.Ed25519PrivateKey.generate()
    seal_folder(sealed_bundle, attacker)
    result = verify_bundle(sealed_bundle)
    # self-consistent again, but the report still names the original signer: flagged
    assert not result.ok and any(p.startswith("report:") for p in result.problems)
    assert result.signer_fingerprint != original
    assert any(p.startswith("wrong key:") for p in verify_bundle(sealed_bundle, public_key=mine).problems)


def test_zip_bundle_verifies_and_tampering_inside_is_found(sealed_bundle, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(sealed_bundle.rglob("*")):
            if path.is_file():
                zf.write(path, "bundle/" + path.relative_to(sealed_bundle).as_posix())
    assert verify_bundle(archive).ok
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(REPORT_JSON):
                data = data.replace(b"7.25", b"0.25")
            dst.writestr(info, data)
        dst.writestr("stray.txt", b"hello")
    problems = verify_bundle(bad).problems
    assert any(p.startswith(f"changed: {REPORT_JSON}") for p in problems)
    assert any("stray.txt" in p and p.startswith("added:") for p in problems)


def test_missing_path_and_broken_zip_raise_bundle_error(tmp_path):
    with pytest.raises(BundleError):
        verify_bundle(tmp_path / "nothing")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(BundleError) as caught:
        verify_bundle(tmp_path / "broken.zip")
    assert "broken.zip" in str(caught.value)


def test_private_key_never_enters_the_bundle(sealed_bundle):
    key = signing.load_or_create_signing_key()
    from cryptography.hazmat.primitives import serialization

    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    pem = signing.key_path().read_bytes()
    body = b"".join(pem.splitlines()[1:-1])
    for path in sealed_bundle.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert raw not in data and raw.hex().encode() not in data and body not in data, path
            assert b"PRIVATE KEY" not in data, path


def test_verification_imports_neither_torch_nor_numpy(sealed_bundle):
    code = (
        "import sys\n"
        "for name in ('torch', 'numpy', 'PIL', 'opacus', 'scipy'):\n"
        "    sys.modules[name] = None  # any import of these now raises ImportError\n"
        "from dpsad_core.commands.export import verify_main\n"
        f"sys.exit(verify_main([{str(sealed_bundle)!r}]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "7.25" in proc.stdout and "OK" in proc.stdout
    shutil.rmtree(sealed_bundle / "images" / "1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == BundleError.exit_code
    assert "removed: images/1/1-000002.png" in proc.stdout + proc.stderr
