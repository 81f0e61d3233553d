"""The local signing key: created on first use with owner-only permissions, exported, replaced."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dpsad_core.errors import ConfigError
from dpsad_core.export import signing


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_is_created_once_with_owner_only_permissions(isolated_dirs):
    path = signing.key_path()
    assert not path.exists()
    first = signing.load_or_create_signing_key()
    assert path.is_file() and _mode(path) == 0o600 and _mode(path.parent) == 0o700
    second = signing.load_or_create_signing_key()
    assert signing.raw_public_bytes(first.public_key()) == signing.raw_public_bytes(second.public_key())


def test_loose_permissions_are_tightened(isolated_dirs):
    signing.load_or_create_signing_key()
    signing.key_path().chmod(0o644)
    signing.load_or_create_signing_key()
    assert _mode(signing.key_path()) == 0o600


def test_export_public_key_round_trips_and_fingerprint_is_sha256_of_raw_key(tmp_path):
    import hashlib

    info = signing.export_public_key(tmp_path / "pub.pem")
    text = (tmp_path / "pub.pem").read_bytes()
    assert b"PRIVATE" not in text
    loaded = signing.public_key_from_bytes(text, source="pub.pem")
    raw = signing.raw_public_bytes(loaded)
    assert info.fingerprint == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert info.public_key_hex == raw.hex()
    # the same key given as hex or as an OpenSSH line
    assert signing.raw_public_bytes(signing.public_key_from_bytes(raw.hex().encode(), source="hex")) == raw
    ssh = loaded.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert signing.raw_public_bytes(signing.public_key_from_bytes(ssh, source="ssh")) == raw


def test_import_private_key_replaces_the_key_and_keeps_a_backup(tmp_path):
    old = signing.load_or_create_signing_key()
    old_bytes = signing.key_path().read_bytes()
    org = ed25519.Ed25519PrivateKey.generate()
    source = tmp_path / "org.pem"
    source.write_bytes(org.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    info, backup = signing.import_private_key(source)
    assert info.fingerprint == signing.fingerprint(org.public_key())
    assert backup is not None and backup.read_bytes() == old_bytes and _mode(backup) == 0o600
    assert _mode(signing.key_path()) == 0o600
    now = signing.load_or_create_signing_key()
    assert signing.raw_public_bytes(now.public_key()) == signing.raw_public_bytes(org.public_key())
    assert signing.raw_public_bytes(now.public_key()) != signing.raw_public_bytes(old.public_key())


@pytest.mark.parametrize("kind", ["garbage", "rsa", "encrypted", "public"])
def test_import_refuses_what_is_not_an_ed25519_private_key_and_keeps_the_old_one(tmp_path, kind):
    signing.load_or_create_signing_key()
    before = signing.key_path().read_bytes()
    source = tmp_path / "bad.pem"
    if kind == "garbage":
        source.write_bytes(b"not a key at all")
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        source.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    elif kind == "encrypted":
        key = ed25519.Ed25519PrivateKey.generate()
        source.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"secret")))
    else:
        source.write_bytes(signing.public_key_pem(ed25519.Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(ConfigError) as caught:
        signing.import_private_key(source)
    assert str(source) in str(caught.value)
    assert signing.key_path().read_bytes() == before
    if kind == "encrypted":
        assert "passphrase" in str(caught.value)
