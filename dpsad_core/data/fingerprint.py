"""The key files, and the dataset fingerprints of ledgers written before record identities.

Datasets are now identified by :mod:`dpsad_core.data.identity` (order-independent, keyed with the
workspace's key). :func:`fingerprint_arrays` and :func:`installation_key` remain so that spends recorded
under the earlier fingerprints keep counting (:mod:`dpsad_core.privacy.ledger_datasets`), and
:func:`load_or_create_key` creates both keys race-free.

A plain hash of private images would let anyone holding a candidate dataset confirm that it was
used; keying the hash with a secret local to the installation (HMAC-SHA256) means only this
installation can compute or check fingerprints. The key is 32 random bytes created on first use at
``config_dir() / "fingerprint.key"`` (mode 0o600).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dpsad_core.errors import ConfigError
from dpsad_core.paths import config_dir

KEY_FILE_NAME = "fingerprint.key"
KEY_BYTES = 32
FINGERPRINT_PREFIX = "hmac-sha256:"
ENCODING_VERSION = "dpsad-dataset-fingerprint-v1"

_key_cache: dict[Path, bytes] = {}
_key_lock = threading.Lock()


def installation_key() -> bytes:
    """The installation's fingerprint key, created on first use (cached per key path)."""
    path = config_dir() / KEY_FILE_NAME
    with _key_lock:
        key = _key_cache.get(path)
        if key is None:
            key = load_or_create_key(path)
            _key_cache[path] = key
    return key


def load_or_create_key(path: Path) -> bytes:
    """Read the key at ``path``, creating it if absent.

    Creators race safely: each writes a complete key to a private temporary file and hard-links it
    into place, which fails if another creator got there first; everyone then reads the one key that
    won. Nothing ever sees a half-written key.
    """
    for _attempt in range(100):
        try:
            return _read_key(path)
        except FileNotFoundError:
            _create_key(path)
        except _KeyBeingWrittenError:
            time.sleep(0.01)
    raise ConfigError(f"{path}: could not create or read the fingerprint key",
                      remedy="check that the config folder is writable (or set DPSAD_CONFIG_DIR)")


class _KeyBeingWrittenError(Exception):
    """Only on filesystems without hard links: a racing creator has not finished writing."""


def _read_key(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) == KEY_BYTES:
        return key
    if len(key) == 0 and time.time() - path.stat().st_mtime < 5:
        raise _KeyBeingWrittenError
    raise ConfigError(f"{path}: the fingerprint key has {len(key)} bytes, expected {KEY_BYTES}",
                      remedy="delete the file to create a new key (fingerprints made with the "
                             "old key will no longer match)")


def _create_key(path: Path) -> None:
    key = secrets.token_bytes(KEY_BYTES)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return  # another creator won; the caller re-reads their key
        except OSError:
            _create_exclusive(path, key)  # a filesystem without hard links
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass


def _create_exclusive(path: Path, key: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())


def fingerprint_arrays(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                       patient_ids: np.ndarray | None) -> str:
    """HMAC-SHA256 over a canonical encoding of the data, as ``"hmac-sha256:<hex>"``.

    Message: a compact JSON header (shape, dtypes, class names, whether patient ids exist) and a
    newline, then the images as little-endian float32 C-order bytes, the labels as little-endian
    int64, then the patient ids joined by "\\n" in UTF-8. The header fixes the lengths of the
    array parts, and patient ids may not contain newlines, so the encoding is unambiguous. The name
    and source are not part of it: the same data under another name has the same fingerprint.
    """
    header = {
        "encoding": ENCODING_VERSION,
        "shape": [int(n) for n in images.shape],
        "dtype": "float32",
        "labels_dtype": "int64",
        "class_names": list(class_names),
        "has_patient_ids": patient_ids is not None,
    }
    mac = hmac.new(installation_key(), digestmod=hashlib.sha256)
    mac.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n")
    mac.update(np.ascontiguousarray(images, dtype="<f4").data)
    mac.update(np.ascontiguousarray(labels, dtype="<i8").data)
    if patient_ids is not None:
        mac.update("\n".join(patient_ids.tolist()).encode("utf-8"))
    return FINGERPRINT_PREFIX + mac.hexdigest()
