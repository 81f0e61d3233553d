"""The installation's Ed25519 signing key: created on first use, shown, exported, replaced.

The private key lives at ``<config dir>/signing/ed25519.pem`` (PKCS#8 PEM, unencrypted, mode 0600
in a 0700 folder): file permissions protect it, as they do an SSH key. It is never written into a
bundle or printed; only the public key and its fingerprint (sha256 of the 32 raw public-key bytes)
leave this module. The verifier imports this module too, so it needs only ``cryptography`` and the
standard library.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from dpsad_core.atomic import atomic_write_bytes
from dpsad_core.errors import ConfigError
from dpsad_core.export.layout import SIGNATURE_ALGORITHM

KEY_FOLDER = "signing"
KEY_FILE = "ed25519.pem"
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class SignerInfo:
    """What a bundle says about who signed it (public information only)."""

    algorithm: str
    public_key_hex: str
    fingerprint: str

    def to_dict(self) -> dict[str, str]:
        return {"algorithm": self.algorithm, "public_key_hex": self.public_key_hex, "fingerprint": self.fingerprint}


def key_path() -> Path:
    """Where this installation's private signing key is (or will be created)."""
    from dpsad_core.paths import config_dir

    return config_dir() / KEY_FOLDER / KEY_FILE


def load_or_create_signing_key() -> Ed25519PrivateKey:
    """The local signing key, created (0600, folder 0700) the first time it is needed."""
    path = key_path()
    if not path.exists():
        _create_key(path)
    _tighten_permissions(path)
    return _load_private_key_file(path, field="signing key")


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    pem = _private_pem(Ed25519PrivateKey.generate())
    # mkstemp creates the file 0600 before any byte is written; os.link refuses to replace a key that
    # another process created meanwhile, so two first exports never end up with different keys.
    fd, tmp_name = tempfile.mkstemp(prefix=".ed25519.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp_name)


def _tighten_permissions(path: Path) -> None:
    # A key others can read is no proof of origin; a restored backup or a copy often loses its mode.
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, 0o600)


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_private_key_file(path: Path, *, field: str) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}", field=field, value=str(path),
                          remedy="check the path and its permissions") from None
    return private_key_from_bytes(data, source=str(path), field=field)


def private_key_from_bytes(data: bytes, *, source: str, field: str = "private key") -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8 or OpenSSH) bytes; anything else is a ConfigError."""
    key = None
    problem = "it is not a PEM or OpenSSH private key"
    for loader in (serialization.load_pem_private_key, serialization.load_ssh_private_key):
        try:
            key = loader(data, password=None)
            break
        except TypeError:
            problem = "it is encrypted with a passphrase"
        except (ValueError, UnsupportedAlgorithm):
            continue
    if key is None:
        raise ConfigError(f"{source}: {problem}", field=field, value=source,
                          remedy="give an unencrypted Ed25519 private key in PEM, e.g. made with "
                                 "'openssl genpkey -algorithm ed25519 -out key.pem'")
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{source}: the key is {type(key).__name__.replace('_', '')}, not Ed25519", field=field,
                          value=source, remedy="bundles are signed with Ed25519; give an Ed25519 private key")
    return key


def public_key_from_bytes(data: bytes, *, source: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, an OpenSSH ``ssh-ed25519`` line, or 64 hex characters."""
    text = data.strip()
    key: PublicKeyTypes
    try:
        if _HEX_KEY.match(text.decode("ascii", errors="replace")):
            return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode("ascii")))
        if text.startswith(b"ssh-ed25519"):
            key = serialization.load_ssh_public_key(text)
        else:
            key = serialization.load_pem_public_key(text)
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{source} is not a public key (PEM, 'ssh-ed25519 ...' or 64 hex characters)",
                          field="public_key", value=source,
                          remedy="export one with: dpsad-core keys --export-public FILE") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{source} holds a {type(key).__name__.replace('_', '')}, not an Ed25519 public key",
                          field="public_key", value=source, remedy="give the signer's Ed25519 public key")
    return key


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PublicKey) -> str:
    """``sha256:<hex>`` of the 32 raw public-key bytes: compare it out of band to trust a signer."""
    return "sha256:" + hashlib.sha256(raw_public_bytes(key)).hexdigest()


def signer_info(key: Ed25519PublicKey) -> SignerInfo:
    return SignerInfo(algorithm=SIGNATURE_ALGORITHM, public_key_hex=raw_public_bytes(key).hex(),
                      fingerprint=fingerprint(key))


def export_public_key(destination: str | os.PathLike[str]) -> SignerInfo:
    """Write the local public key as PEM to ``destination`` (creating the key pair if needed)."""
    public = load_or_create_signing_key().public_key()
    atomic_write_bytes(destination, public_key_pem(public))
    return signer_info(public)


def import_private_key(source: str | os.PathLike[str]) -> tuple[SignerInfo, Path | None]:
    """Make an organisation's Ed25519 key this installation's signing key.

    The file is checked first; the old key, if any, is kept beside it as ``ed25519.pem.bak-<time>``
    (0600) so bundles it signed can still be matched to it.

    Returns
    -------
    (SignerInfo, Path | None)
        The new signer (public information only) and the backup of the old key, if there was one.
    """
    new_key = _load_private_key_file(Path(source), field="import_private")
    path = key_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    backup = None
    if path.exists():
        old = _load_private_key_file(path, field="signing key")
        if raw_public_bytes(old.public_key()) == raw_public_bytes(new_key.public_key()):
            return signer_info(new_key.public_key()), None
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        backup = path.with_name(f"{KEY_FILE}.bak-{stamp}")
        os.link(path, backup)  # the same bytes under a second name: no window without a key
        os.chmod(backup, 0o600)
    # atomic_write's temporary file comes from mkstemp (0600), and the rename keeps that mode.
    atomic_write_bytes(path, _private_pem(new_key))
    os.chmod(path, 0o600)
    return signer_info(new_key.public_key()), backup


def sign(data: bytes) -> tuple[bytes, SignerInfo]:
    """A detached Ed25519 signature over ``data`` with the local key, and who signed."""
    key = load_or_create_signing_key()
    return key.sign(data), signer_info(key.public_key())
