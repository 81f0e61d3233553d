"""Exact duplicate records in a private set: refused, merged into one privacy unit, or dropped.

A record listed twice (a manifest row repeated, a class folder linked into another) would count as two
privacy units, silently turning a per-image guarantee into one for groups of two. Duplicates are found by
their canonical 8-bit pixels (:mod:`.identity`), never by file name, and whatever their class: a class folder
linked into another holds the same images under another class name, and they are the same people.

- ``refuse`` (default): the import fails naming how many records repeat and their rows;
- ``merge``: the copies share one privacy unit, like records of one patient (and with patient ids, every
  patient with a copy of another's record is merged with that patient);
- ``drop``: only the first copy is kept.
"""

from __future__ import annotations

import dataclasses
import secrets

import numpy as np

from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.identity import canonical_pixels, duplicate_groups, keyed_record_hashes
from dpsad_core.errors import ConfigError, DataImportError

POLICIES = ("refuse", "merge", "drop", "keep")  # keep: for data that is not private (test or public data)
ROWS_SHOWN = 6


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ConfigError(f"unknown duplicates policy {policy!r}", field="duplicates", value=policy,
                          remedy=f"use one of: {', '.join(POLICIES)}")


def apply_duplicate_policy(dataset: ImageDataset, policy: str = "refuse") -> ImageDataset:
    """``dataset`` with its exact duplicates handled by ``policy`` (see the module docstring)."""
    check_policy(policy)
    if dataset.num_records < 2 or policy == "keep":
        return dataset
    # Equality of pixels is all that is needed here: a throw-away key, the class left out, nothing stored.
    hashes = keyed_record_hashes(secrets.token_bytes(32), canonical_pixels(dataset.images),
                                 np.zeros(dataset.num_records, dtype=np.int64), ("",))
    groups = duplicate_groups(hashes)
    if not groups:
        return dataset
    extra = sum(group.size - 1 for group in groups)
    if policy == "refuse":
        shown = "; ".join(_rows(group) for group in groups[:ROWS_SHOWN])
        more = f"; and {len(groups) - ROWS_SHOWN} more group(s)" if len(groups) > ROWS_SHOWN else ""
        raise DataImportError(
            f"dataset {dataset.name!r}: {extra} record(s) repeat the pixels of another record exactly, "
            f"in {len(groups)} group(s), rows counted from 1 in import order: {shown}{more}",
            path=None if dataset.source == "demo" else dataset.source,
            remedy="remove the copies, or import with --duplicates merge (the copies share one privacy unit) or "
                   "--duplicates drop (keep the first copy)")
    if policy == "drop":
        keep = np.ones(dataset.num_records, dtype=bool)
        for group in groups:
            keep[group[1:]] = False
        return dataclasses.replace(dataset.subset(keep), merged_duplicates=extra)
    return dataclasses.replace(dataset, patient_ids=_merged_units(dataset, groups), merged_duplicates=extra)


def _rows(group: np.ndarray) -> str:
    return "rows " + ", ".join(str(int(row) + 1) for row in group)


def _merged_units(dataset: ImageDataset, groups: list[np.ndarray]) -> np.ndarray:
    """Unit ids where every duplicate group (and, with patient ids, every patient it touches) is one unit."""
    units = dataset.privacy_units()
    parent = np.arange(int(units.max()) + 1)

    def root(unit: int) -> int:
        while parent[unit] != unit:
            parent[unit] = parent[parent[unit]]
            unit = int(parent[unit])
        return unit

    for group in groups:
        first = root(int(units[group[0]]))
        for row in group[1:]:
            other = root(int(units[row]))
            if other != first:
                parent[max(first, other)] = min(first, other)
                first = min(first, other)
    merged = np.array([root(int(unit)) for unit in units])
    if dataset.patient_ids is None:
        return np.array([f"unit-{unit}" for unit in merged])
    # Each merged unit keeps the smallest patient id among the patients it joins.
    names: dict[int, str] = {}
    for unit, patient in zip(merged, dataset.patient_ids.tolist(), strict=True):
        names[unit] = min(names.get(unit, patient), patient)
    return np.array([names[unit] for unit in merged])
