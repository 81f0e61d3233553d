"""Record identities: a keyed hash per record, so the same people are recognised whatever the order, subset or size.

Each record (one image and its class) gets a keyed hash (HMAC-SHA256 with the workspace's identity key) and a
size signature:

- **exact**: the canonical pixels as stored (``round(255 * value)`` as uint8, C x R x R, with the shape) and
  the class *name*. Two imports of the same files at the same resolution and channels give the same hash,
  in any order, under any dataset name.
- **size signature** (not a hash, kept only in the workspace): the record resized by the import's own
  resizer to 8 x 8 grey, centred and scaled to unit length. A re-import of the same source at another
  ``--resolution`` has a near twin for every record, while distinct datasets mostly do not (measured in
  ``docs/privacy.md``), so a re-import at another size is recognised as the same people.

A dataset's identity (its ``fingerprint()``) is an HMAC over its *sorted* exact record hashes (and, with
patient ids, over the sorted pairs of record hash and patient id): reordering the records does not change
it. The key is 32 random bytes in ``<workspace>/identity.key`` (owner-only, created atomically on first
use), so the ledger and the identities it was charged under move together with the workspace; without the
key nobody can test whether a candidate image was in a dataset. The record hashes of every dataset the
ledger was charged for are kept in ``<workspace>/identities/`` (local, never exported) to find overlaps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpsad_core.atomic import atomic_write
from dpsad_core.data.fingerprint import FINGERPRINT_PREFIX, load_or_create_key

KEY_FILE_NAME = "identity.key"
IDENTITIES_FOLDER = "identities"
RECORD_ENCODING = b"dpsad-record-v1"
DATASET_ENCODING = b"dpsad-dataset-identity-v2"
SIGNATURE_SIZE = 8
# Two datasets overlap when they share one exact record, or when at least RESIZED_SHARE of a sample of one's
# records (SIGNATURE_SAMPLE of them) has a resized twin in the other: a nearest size signature within
# SIGNATURE_TOLERANCE (cosine distance) that is also TWIN_RATIO times closer than the second nearest. A look-alike
# in unrelated data has other look-alikes about as close; a copy stands out. Measured in docs/privacy.md:
# 0 to 0.34 % of unrelated records pass, 72 to 100 % of resized copies; so a partial re-import of a few
# percent of the records is found, not only a whole one.
SIGNATURE_SAMPLE = 512
SIGNATURE_TOLERANCE = 0.01
TWIN_RATIO = 0.2
RESIZED_SHARE = 0.02

_key_cache: dict[Path, bytes] = {}
_key_lock = threading.Lock()


def workspace_key(workspace: str | Path | None = None) -> bytes:
    """The workspace's identity key (``<workspace>/identity.key``), created on first use."""
    from dpsad_core.paths import workspace_dir

    folder = workspace_dir(workspace)
    path = folder / KEY_FILE_NAME
    with _key_lock:
        key = _key_cache.get(path)
        if key is None:
            folder.mkdir(parents=True, exist_ok=True)
            key = load_or_create_key(path)
            _key_cache[path] = key
    return key


def canonical_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 ``N x C x R x R``: the stored values rounded to 8 bits (what two imports of one file share)."""
    return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def size_signatures(images: np.ndarray) -> np.ndarray:
    """float16 ``N x 64``: each record resized by the import's own resizer to 8 x 8 grey, centred, unit norm.

    A re-import of the same source at another resolution gives nearly the same signature (cosine distance
    under 0.009 on MNIST at 8 to 56 pixels), so :func:`find_overlaps` compares them with a tolerance.
    """
    from dpsad_core.data.imaging import batch_to_chw, chw_to_hwc

    small = batch_to_chw(chw_to_hwc(images), resolution=SIGNATURE_SIZE, channels=1, source="identity")
    flat = small.reshape(small.shape[0], -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)
    return flat.astype(np.float16)


def keyed_record_hashes(key: bytes, rows: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    names = [name.encode("utf-8") for name in class_names]
    prefix = RECORD_ENCODING + b"|" + ",".join(str(n) for n in rows.shape[1:]).encode() + b"|"
    base = hmac.new(key, prefix, digestmod=hashlib.sha256)
    out = np.empty((rows.shape[0], 32), dtype=np.uint8)
    flat = np.ascontiguousarray(rows).reshape(rows.shape[0], -1)
    for index in range(rows.shape[0]):
        mac = base.copy()
        mac.update(names[int(labels[index])] + b"\0")
        mac.update(flat[index].tobytes())
        out[index] = np.frombuffer(mac.digest(), dtype=np.uint8)
    return out


@dataclass(frozen=True)
class RecordIdentities:
    """A dataset's keyed record hashes (32 bytes each) and size signatures, in record order."""

    exact: np.ndarray
    signatures: np.ndarray

    @property
    def exact_ids(self) -> np.ndarray:
        """uint64 per record (the first 8 bytes of the exact hash), for fast set comparisons."""
        return self.exact[:, :8].copy().view("<u8").reshape(-1)


def dataset_identity(exact: np.ndarray, patient_ids: np.ndarray | None, key: bytes) -> str:
    """Order-independent identity of a dataset: HMAC over the sorted record hashes (and patient pairs)."""
    mac = hmac.new(key, DATASET_ENCODING + b"\n", digestmod=hashlib.sha256)
    rows = [bytes(row) for row in exact]
    mac.update(len(rows).to_bytes(8, "little"))
    mac.update(b"".join(sorted(rows)))
    if patient_ids is not None:
        # Who belongs together is part of the dataset (it sets the privacy unit), in any order.
        pairs = sorted(row + b"\0" + pid.encode("utf-8") + b"\n"
                       for row, pid in zip(rows, patient_ids.tolist(), strict=True))
        mac.update(b"patients\n" + b"".join(pairs))
    return FINGERPRINT_PREFIX + mac.hexdigest()


def duplicate_groups(exact: np.ndarray) -> list[np.ndarray]:
    """Rows (0-based, ascending) of every group of records with the same exact hash, largest first."""
    ids = exact[:, :8].copy().view("<u8").reshape(-1)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    sizes = np.diff(np.r_[starts, ids.size])
    groups = [np.sort(order[start:start + size]) for start, size in zip(starts, sizes, strict=True) if size > 1]
    return sorted(groups, key=lambda rows: (-rows.size, int(rows[0])))


def resized_twins(signatures: np.ndarray, others: np.ndarray) -> float:
    """The share of a fixed sample of ``signatures`` with a resized twin in ``others``.

    A twin: the nearest signature there is within ``SIGNATURE_TOLERANCE`` (cosine distance) and at most
    ``TWIN_RATIO`` of the distance to the second nearest (a copy stands out from look-alikes).
    """
    if not len(signatures) or not len(others):
        return 0.0
    sample = signatures[np.linspace(0, len(signatures) - 1, min(len(signatures), SIGNATURE_SAMPLE)).astype(int)]
    sample = sample.astype(np.float32)
    top2 = np.full((len(sample), 2), -np.inf, dtype=np.float32)  # the two largest similarities, ascending
    for start in range(0, len(others), 8192):  # bounded memory: 512 x 8192 floats at a time
        similar = sample @ others[start:start + 8192].astype(np.float32).T
        block = similar if similar.shape[1] <= 2 else np.partition(similar, -2, axis=1)[:, -2:]
        top2 = np.sort(np.concatenate([top2, block], axis=1), axis=1)[:, -2:]
    nearest, second = 1.0 - top2[:, 1], 1.0 - top2[:, 0]  # second is inf when ``others`` has one record
    return float(np.mean((nearest < SIGNATURE_TOLERANCE) & (nearest <= TWIN_RATIO * second)))


# -- the workspace's registry of identities ---------------------------------------------------------------
@dataclass(frozen=True)
class Overlap:
    """Another registered dataset that shares records with this one."""

    fingerprint: str
    name: str | None
    exact: int  # records of this dataset with an identical twin there
    resized: float  # share of this dataset's sampled records with a twin there at another size
    public: bool = False  # that dataset was declared public at import

    def describe(self) -> str:
        how = (f"{self.exact} identical record(s)" if self.exact
               else f"{self.resized:.0%} of records again at another size")
        return f"{self.name or self.fingerprint[:24]} ({how})"

    def to_dict(self) -> dict:
        return {"fingerprint": self.fingerprint, "name": self.name, "identical_records": self.exact,
                "resized_share": round(self.resized, 3)}


def identities_dir(workspace: str | Path) -> Path:
    return Path(workspace) / IDENTITIES_FOLDER


def _registry_path(workspace: str | Path, fingerprint: str) -> Path:
    return identities_dir(workspace) / (fingerprint.removeprefix(FINGERPRINT_PREFIX)[:40] + ".npz")


def is_registered(workspace: str | Path, fingerprint: str) -> bool:
    return _registry_path(workspace, fingerprint).is_file()


def registered_as_public(workspace: str | Path, fingerprint: str) -> bool:
    """Whether the dataset was registered as declared public (False when unknown or damaged)."""
    try:
        with np.load(_registry_path(workspace, fingerprint), allow_pickle=False) as stored:
            return bool(json.loads(str(stored["meta"])).get("public", False))
    except (OSError, ValueError, KeyError):
        return False


def register(workspace: str | Path, fingerprint: str, name: str | None, identities: RecordIdentities, *,
             public: bool = False) -> None:
    """Keep the dataset's record ids in the workspace (once per fingerprint) so later datasets can find it.

    ``public``: the analyst declared the data public (``import --public``); public data may feed
    ``rdm train-public``. The first registration wins: data once seen as private stays private.
    """
    path = _registry_path(workspace, fingerprint)
    if path.is_file():
        return
    meta = json.dumps({"fingerprint": fingerprint, "name": name, "public": bool(public)})
    atomic_write(path, lambda handle: np.savez(handle, exact=np.unique(identities.exact_ids),
                                               signatures=identities.signatures, meta=np.array(meta)))


def registered_signatures(workspace: str | Path, fingerprint: str) -> np.ndarray:
    """The size signatures kept for a registered dataset (an empty array when it is not registered)."""
    path = _registry_path(workspace, fingerprint)
    try:
        with np.load(path, allow_pickle=False) as stored:
            return stored["signatures"]
    except (OSError, ValueError, KeyError):
        return np.zeros((0, SIGNATURE_SIZE * SIGNATURE_SIZE), dtype=np.float16)


def find_overlaps(workspace: str | Path, fingerprint: str, identities: RecordIdentities) -> list[Overlap]:
    """Every other registered dataset that shares records with this one, exactly or at another size."""
    folder = identities_dir(workspace)
    if not folder.is_dir():
        return []
    exact = np.unique(identities.exact_ids)
    found = []
    for path in sorted(folder.glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as stored:
                meta = json.loads(str(stored["meta"]))
                other_exact, other_signatures = stored["exact"], stored["signatures"]
        except (OSError, ValueError, KeyError):
            continue  # a damaged entry: that dataset registers again on its next use
        if meta.get("fingerprint") == fingerprint:
            continue
        shared = int(np.isin(exact, other_exact).sum())
        resized = 0.0 if shared else max(resized_twins(identities.signatures, other_signatures),
                                          resized_twins(other_signatures, identities.signatures))
        if shared or resized >= RESIZED_SHARE:
            found.append(Overlap(str(meta["fingerprint"]), meta.get("name"), shared, resized,
                                 bool(meta.get("public", False))))
    return found
