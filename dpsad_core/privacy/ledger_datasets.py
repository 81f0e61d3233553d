"""Which ledger entry a dataset is charged under, and which other entries share its records.

Every place that charges or checks the ledger (training, DP-RDM indexes, ``dpsad-core ledger``, import)
goes through :func:`ledger_identity`: it computes the dataset's order-independent identity under the
workspace's key, and the first time a dataset is seen it compares the records with every dataset the
workspace has seen (:func:`dpsad_core.data.identity.find_overlaps`) and links the ones that share records
in the ledger, so their spends compose (:meth:`PrivacyLedger.link_overlaps`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dpsad_core.data.identity import Overlap, find_overlaps, is_registered, register
from dpsad_core.privacy.ledger import PrivacyLedger

if TYPE_CHECKING:
    from dpsad_core.data.dataset import ImageDataset

__all__ = ["ledger_identity", "stored_data_identity"]


def ledger_identity(workspace: str | Path, dataset: ImageDataset, *, name: str | None = None,
                    public: bool = False) -> str:
    """The fingerprint to charge ``dataset`` under, its overlaps linked in the ledger (once per dataset).

    ``public``: the analyst declared the data public at import (``import --public``).
    """
    fingerprint = dataset.fingerprint(workspace)
    if not is_registered(workspace, fingerprint):
        identities = dataset.identities(workspace)
        overlaps = find_overlaps(workspace, fingerprint, identities) + _legacy_entry(workspace, dataset)
        PrivacyLedger(workspace).link_overlaps(fingerprint, overlaps, dataset_name=name or dataset.name)
        # After the links: a kill before this line only means the links are made again next time.
        register(workspace, fingerprint, name or dataset.name, identities, public=public)
    return fingerprint


def stored_data_identity(workspace: str | Path, spec: str, *, loaded: ImageDataset | None = None,
                         as_stored: bool = False) -> str:
    """The ledger entry of the data ``spec`` names, for every kind of run: its records as stored.

    A method may work at another resolution (``train --resolution``, a DP-RDM model's size), but runs and
    queries on the same data must compose, so the identity is that of the records as imported. ``loaded``:
    the data as the method loaded it, used as is when ``as_stored`` (loaded without resizing) and when the
    stored data cannot be read without resizing (images of mixed sizes).
    """
    from dpsad_core.data import resolve_data_source
    from dpsad_core.errors import DpsadError

    if loaded is not None and as_stored:
        return ledger_identity(workspace, loaded)
    try:
        source = resolve_data_source(spec, workspace=Path(workspace), min_records=0)
    except DpsadError:
        if loaded is None:
            raise
        source = loaded  # the source cannot be read without resizing: key by what the method read
    return ledger_identity(workspace, source)


def _legacy_entry(workspace: str | Path, dataset: ImageDataset) -> list[Overlap]:
    """The entry a ledger written before record identities keeps for these records, if any.

    Those fingerprints were an HMAC of the records in stored order with the key in the config folder; a
    dataset loaded the same way still has that fingerprint, and its earlier spends must keep counting.
    """
    from dpsad_core.data.fingerprint import KEY_FILE_NAME, fingerprint_arrays
    from dpsad_core.paths import config_dir

    if not (config_dir() / KEY_FILE_NAME).is_file():
        return []
    legacy = fingerprint_arrays(dataset.images, dataset.labels, dataset.class_names, dataset.patient_ids)
    known = {row["fingerprint"]: row["name"] for row in PrivacyLedger(workspace).datasets()}
    if legacy not in known:
        return []
    return [Overlap(legacy, known[legacy], dataset.num_records, 1.0)]
