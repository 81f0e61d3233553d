"""The private index: the private dataset embedded once with the frozen public encoder.

The embeddings are a function of the private records, so they are private data: they stay in the
workspace, under ``<workspace>/rdm/indexes/<name>/``, and no command exports them. Only DP-RDM's
query mechanism (:mod:`dpsad_core.rdm.mechanism`) reads them, and the accountant counts every query.

Layout::

    index.npz    embeddings (float32, unit norm), labels, privacy unit of each record
    meta.json    the private dataset's summary (name, fingerprint, counts), the public model's name and
                 the encoder digest the embeddings were computed with
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.atomic import atomic_write_bytes, atomic_write_json
from dpsad_core.data.store import check_name, sanitise_name
from dpsad_core.errors import ConfigError, RunError
from dpsad_core.rdm.store import RDM_DIR, PublicModel

INDEXES_DIR = "indexes"
PRIVATE_NOTE = ("embeddings of the private dataset: private data, kept in this workspace and never exported; "
                "only DP-RDM queries counted by the privacy accountant read them")


def indexes_dir(workspace: Path) -> Path:
    return Path(workspace) / RDM_DIR / INDEXES_DIR


def list_indexes(workspace: Path) -> list[str]:
    root = indexes_dir(workspace)
    return sorted(p.name for p in root.iterdir() if (p / "meta.json").is_file()) if root.is_dir() else []


@dataclass(frozen=True)
class PrivateIndex:
    """A loaded private index. ``units`` maps each record to its privacy unit (patient or image)."""

    name: str
    path: Path
    meta: dict[str, Any]
    embeddings: np.ndarray
    labels: np.ndarray
    units: np.ndarray

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta["dataset"]["class_names"])

    @property
    def fingerprint(self) -> str:
        return self.meta["dataset"]["fingerprint"]

    @property
    def num_units(self) -> int:
        return int(self.meta["dataset"]["num_privacy_units"])


def build_index(*, workspace: Path, public_model: PublicModel, data: str, name: str | None = None,
                min_records: int = 100) -> PrivateIndex:
    """Embed the private dataset ``data`` with the public model's encoder and save the index.

    The images are converted to the model's resolution and channels first. Building the same index
    again (same data, same encoder) returns the saved one; a different one under the same name is
    refused.
    """
    from dpsad_core.data import conform_dataset, resolve_data_source
    from dpsad_core.data.public_overlap import check_index_data
    from dpsad_core.errors import DataImportError
    from dpsad_core.privacy.ledger_datasets import stored_data_identity
    from dpsad_core.rdm.encoder import embed_images
    from dpsad_core.runs.folder import utc_now

    channels, resolution = public_model.image_shape[0], public_model.image_shape[1]
    try:
        dataset, as_stored = resolve_data_source(data, workspace=workspace, min_records=min_records), True
    except DataImportError:  # images of mixed sizes need converting before they form one dataset
        dataset, as_stored = resolve_data_source(data, workspace=workspace, resolution=resolution,
                                                 channels=channels, min_records=min_records), False
    # The same identity as training's: the records as imported, so DP-SAD runs and DP-RDM queries compose.
    fingerprint = stored_data_identity(workspace, data, loaded=dataset, as_stored=as_stored)
    dataset = conform_dataset(dataset, resolution=resolution, channels=channels)
    check_index_data(dataset, model_folder=public_model.path, model_name=public_model.name, private_spec=data,
                     workspace=workspace, allowed=bool(public_model.meta["config"].get("allow_public_overlap")))
    name = check_name(name or sanitise_name(f"{dataset.name}-{public_model.name}"))
    path = indexes_dir(workspace) / name
    if (path / "meta.json").is_file():
        existing = load_index(name, workspace=workspace)
        if existing.fingerprint == fingerprint and \
                existing.meta["encoder_digest"] == public_model.encoder_digest:
            return existing
        raise ConfigError(f"a different private index named {name!r} already exists at {path}", field="name",
                          value=name, remedy="choose another --name")
    embeddings = embed_images(public_model.encoder, dataset.images)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, embeddings=embeddings, labels=dataset.labels, units=dataset.privacy_units())
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path / "index.npz", buffer.getvalue())
    summary = dataset.summary(workspace)
    summary["fingerprint"] = fingerprint
    summary["class_names"] = list(dataset.class_names)
    meta = {"name": name, "format": "dpsad-rdm-private-index", "version": 1, "created": utc_now(),
            "dataset": summary, "data": str(data), "public_model": public_model.name,
            "encoder_digest": public_model.encoder_digest,
            "embedding_dim": int(embeddings.shape[1]), "private": True, "note": PRIVATE_NOTE}
    atomic_write_json(path / "meta.json", meta)
    return load_index(name, workspace=workspace)


def load_index(name: str, *, workspace: Path) -> PrivateIndex:
    """Load the private index ``name`` from the workspace."""
    check_name(name)
    path = indexes_dir(workspace) / name
    if not (path / "meta.json").is_file():
        known = ", ".join(list_indexes(workspace)) or "none"
        raise RunError(f"no DP-RDM private index {name!r} in {indexes_dir(workspace)} (known: {known})",
                       remedy="build one first: dpsad-core rdm index --model MODEL --data DATA")
    try:
        meta = json.loads((path / "meta.json").read_text())
        arrays = np.load(path / "index.npz")
        embeddings, labels, units = arrays["embeddings"], arrays["labels"], arrays["units"]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as error:
        raise RunError(f"the private index at {path} cannot be read ({error})",
                       remedy="delete the folder and build the index again") from None
    return PrivateIndex(name=name, path=path, meta=meta, embeddings=embeddings.astype(np.float32),
                        labels=labels.astype(np.int64), units=units.astype(np.int64))


def check_index_matches(index: PrivateIndex, public_model: PublicModel) -> None:
    """Refuse an index embedded with another encoder than the public model's (its neighbours would be meaningless)."""
    if index.meta["encoder_digest"] != public_model.encoder_digest:
        raise ConfigError(f"private index {index.name!r} was built with the encoder of public model "
                          f"{index.meta['public_model']!r}, not {public_model.name!r}", field="index", value=index.name,
                          remedy=f"build an index with this model: dpsad-core rdm index --model {public_model.name} "
                                 "--data DATA")
