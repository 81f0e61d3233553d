"""Refusing "public" data that holds private records: the private set passed as public data, or a private image
given as an example query.

Public data is free in privacy only if it holds no private record. Before public data is used, its records are
compared with the private ones by record identity (:mod:`.identity`), class labels left aside (the same image under
another class name is the same person):

- **identical after the import's own resizing**: the public data is converted to the private set's resolution and
  channels by the same resizer the import uses, and its canonical 8-bit pixels compared exactly;
- **the same records at another size**: the share of a sample of the public records with a size-signature twin in
  the private set (as :func:`.identity.find_overlaps` does for the ledger).

Either refuses with :class:`~dpsad_core.errors.NotPrivateError` naming how many records overlap. An explicit
override (``--allow-public-overlap``) exists for research: the run then carries :data:`OVERLAP_PART` among its
parts that read private data without protection, so it is reported as NOT differentially private (epsilon =
infinity) and its export needs ``--research``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np

from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.identity import (
    RESIZED_SHARE,
    SIGNATURE_TOLERANCE,
    canonical_pixels,
    identities_dir,
    keyed_record_hashes,
    resized_twins,
    size_signatures,
)
from dpsad_core.errors import NotPrivateError

OVERLAP_PART = "public data (it shares records with the private data)"
PUBLIC_IDENTITIES = "public-identities.npz"  # beside a DP-RDM public model: what its public data was
OVERRIDE_FLAG = "--allow-public-overlap"


def _pixel_ids(images: np.ndarray, key: bytes) -> np.ndarray:
    zeros = np.zeros(len(images), dtype=np.int64)
    hashes = keyed_record_hashes(key, canonical_pixels(images), zeros, ("",))
    return hashes[:, :8].copy().view("<u8").reshape(-1)


def shared_with(public: ImageDataset, private: ImageDataset) -> tuple[int, float]:
    """(public records identical to a private one after conversion to its shape, share of resized twins)."""
    from dpsad_core.data.loader import conform_dataset

    key = secrets.token_bytes(32)  # equality only: nothing is stored
    converted = conform_dataset(public, resolution=private.resolution, channels=private.channels)
    identical = int(np.isin(_pixel_ids(converted.images, key), _pixel_ids(private.images, key)).sum())
    if identical:
        return identical, 0.0
    mine, theirs = size_signatures(public.images), size_signatures(private.images)
    # Either way round: public data that contains the private set, or is contained in it, at another size.
    return 0, max(resized_twins(mine, theirs), resized_twins(theirs, mine))


def check_public_data(public: ImageDataset, private: ImageDataset, *, public_spec: str, private_spec: str,
                      allow: bool) -> str | None:
    """Refuse ``public`` if it shares records with ``private``; with ``allow``, return :data:`OVERLAP_PART`.

    None when they share nothing.
    """
    identical, resized = shared_with(public, private)
    if not identical and resized < RESIZED_SHARE:
        return None
    if allow:
        return OVERLAP_PART
    how = (f"{identical} of its {public.num_records} records are identical to private records (compared at the "
           f"private data's {private.resolution}x{private.resolution} pixels)" if identical
           else f"{resized:.0%} of the sampled records of one are records of the other at another size")
    raise NotPrivateError(f"the public data {public_spec!r} is not public: {how} of {private_spec!r}; training on it "
                          "without noise would void the guarantee",
                          remedy="use data that shares no record with the private data (for example "
                                 f"'rendered-digits'), or for research only pass {OVERRIDE_FLAG} (the run is then "
                                 "reported NOT differentially private)")


def check_against_workspace(public: ImageDataset, *, public_spec: str, workspace: str | Path,
                            allow: bool) -> str | None:
    """Refuse ``public`` if it shares records with any dataset the workspace has charged or imported as private.

    For public data used without a private set at hand (``rdm train-public``). Compared by exact record identity
    (the workspace's key, class names included) and by size signature. Datasets imported with ``--public`` do
    not count.
    """
    from dpsad_core.data.identity import Overlap, find_overlaps, is_registered, registered_as_public

    folder = identities_dir(workspace)
    if not folder.is_dir():
        return None
    fingerprint = public.fingerprint(workspace)
    # Datasets imported with --public are the analyst's declared public data: not a conflict.
    found = find_overlaps(workspace, fingerprint, public.identities(workspace))
    overlaps: list[Overlap] = [overlap for overlap in found if not overlap.public]
    if is_registered(workspace, fingerprint) and not registered_as_public(workspace, fingerprint):
        overlaps.insert(0, Overlap(fingerprint, public.name, public.num_records, 1.0))  # the very same records
    if not overlaps:
        return None
    if allow:
        return OVERLAP_PART
    named = ", ".join(overlap.describe() for overlap in overlaps)
    raise NotPrivateError(f"the public data {public_spec!r} is not public: it shares records with private data in this "
                          f"workspace: {named}",
                          remedy="use data that shares no record with any private dataset, or for research only "
                                 f"pass {OVERRIDE_FLAG} (the model is then marked as trained on private data)")


def private_examples(examples: np.ndarray, private_signatures: np.ndarray) -> list[int]:
    """Indices of example-query images that are a private record (a size-signature twin in the private set)."""
    if not len(examples) or not len(private_signatures):
        return []
    mine = size_signatures(examples).astype(np.float32)
    best = np.full(len(mine), -np.inf, dtype=np.float32)
    for start in range(0, len(private_signatures), 8192):
        block = private_signatures[start:start + 8192].astype(np.float32)
        best = np.maximum(best, (mine @ block.T).max(axis=1))
    return [int(i) for i in np.flatnonzero(1.0 - best < SIGNATURE_TOLERANCE)]


def write_public_identities(path: Path, public: ImageDataset, workspace: str | Path) -> None:
    """Keep the public data's label-free pixel ids (keyed with the workspace's key) and size signatures."""
    from dpsad_core.atomic import atomic_write
    from dpsad_core.data.identity import workspace_key

    ids = np.unique(_pixel_ids(public.images, workspace_key(workspace)))
    signatures = size_signatures(public.images)
    atomic_write(path, lambda handle: np.savez(handle, pixels=ids, signatures=signatures))


def check_index_data(private: ImageDataset, *, model_folder: Path, model_name: str, private_spec: str,
                     workspace: str | Path, allowed: bool) -> None:
    """Refuse to index private data that shares records with the data a public model was trained on.

    ``private`` is at the model's resolution and channels, as the model's public data was. ``allowed``: the
    model was trained with the research override (every run using it is stamped NOT private already).
    """
    from dpsad_core.data.identity import workspace_key

    path = Path(model_folder) / PUBLIC_IDENTITIES
    if allowed or not path.is_file():
        return  # a model trained before public identities were kept: nothing to compare with
    with np.load(path, allow_pickle=False) as stored:
        public_ids, public_signatures = stored["pixels"], stored["signatures"]
    identical = int(np.isin(_pixel_ids(private.images, workspace_key(workspace)), public_ids).sum())
    mine = size_signatures(private.images)
    resized = 0.0 if identical else max(resized_twins(mine, public_signatures), resized_twins(public_signatures, mine))
    if not identical and resized < RESIZED_SHARE:
        return
    how = (f"{identical} of its {private.num_records} records are identical to records" if identical
           else f"{resized:.0%} of the sampled records of one are records of the other at another size, in the data")
    raise NotPrivateError(f"the private data {private_spec!r} is not private from public model {model_name!r}: {how} "
                          "the model was trained on without noise",
                          remedy="train the public model on data that shares no record with the private data "
                                 "(dpsad-core rdm train-public --public OTHER_DATA)")
