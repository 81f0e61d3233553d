"""Importing private image collections into one in-memory form, :class:`ImageDataset`.

Numpy only: torch is imported by the training code. Every importer returns float32
``N x C x R x R`` images in [0, 1], int64 labels and, where records are grouped by patient, patient
ids that define the privacy unit. Errors name the file (and row) at fault and say what to do.
"""

from __future__ import annotations

from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.demo import load_demo
from dpsad_core.data.fingerprint import installation_key
from dpsad_core.data.imaging import UnreadableImageError
from dpsad_core.data.loader import check_min_units, conform_dataset, load_dataset, resolve_data_source
from dpsad_core.data.store import list_saved_datasets, load_saved_dataset, save_dataset
from dpsad_core.data.synthetic import render_digits

__all__ = [
    "ImageDataset",
    "UnreadableImageError",
    "check_min_units",
    "conform_dataset",
    "installation_key",
    "list_saved_datasets",
    "load_dataset",
    "load_demo",
    "load_saved_dataset",
    "resolve_data_source",
    "render_digits",
    "save_dataset",
]
