"""What a release may say about the private data besides the guarantee: the class list and the number of records.

Both are facts about the private data that no mechanism counts, so neither is read off it:

- **Classes** are declared by the analyst (``import --classes a,b,c``), or are the public class names of a
  built-in source format (the demo and rendered digits, MNIST-like IDX files, MedMNIST). Records with a label
  outside the declared list are refused with their rows: one record labelled ``rare-syndrome-X`` can no longer
  add a class to the bundle. Class names read off folder or label names are marked as such in the report
  (``class_names_from: "data"``); the command line refuses them at import until the analyst declares them.
- **The number of privacy units N** is private (add/remove neighbours). Unless the analyst declares it public
  (``import --public-count``), a training run publishes a noisy count (:mod:`dpsad_core.privacy.noisy_count`:
  Gaussian noise from the run's secret randomness, spent from its budget) rounded *down* to two significant
  figures (:func:`published_units`), and computes from it everything it publishes: the sample rate
  ``q = batch / N_published``, the calibrated noise, the default delta, and the count in the report. A local
  preview rounds the exact N instead. Sampling each unit with that ``q`` from the real data is exact Poisson
  subsampling, so the accounting holds whatever ``N_published`` is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from dpsad_core.data.dataset import ImageDataset
from dpsad_core.errors import ConfigError, DataImportError

RARE_CLASS_RECORDS = 20  # a class with fewer records gets a (local) warning in the plan
ROWS_SHOWN = 8


def parse_classes(text: str) -> tuple[str, ...]:
    """``"a,b,c"`` as ``("a", "b", "c")``; empty or repeated names are a :class:`ConfigError`."""
    names = tuple(name.strip() for name in text.split(","))
    if not names or any(not name for name in names) or len(set(names)) != len(names):
        raise ConfigError(f"--classes must list distinct, non-empty class names separated by commas, got {text!r}",
                          field="classes", value=text, remedy="e.g. --classes normal,pneumonia")
    return names


def declare_classes(dataset: ImageDataset, declared: Sequence[str]) -> ImageDataset:
    """``dataset`` with the analyst's class list (in its order); records of any other label are refused."""
    declared = tuple(declared)
    index = {name: position for position, name in enumerate(declared)}
    undeclared = [name for name in dataset.class_names if name not in index]
    if undeclared:
        mask = np.isin(dataset.labels, [dataset.class_names.index(name) for name in undeclared])
        rows = np.flatnonzero(mask)
        if rows.size:
            shown = ", ".join(str(int(row) + 1) for row in rows[:ROWS_SHOWN])
            more = f" and {rows.size - ROWS_SHOWN} more" if rows.size > ROWS_SHOWN else ""
            names = ", ".join(repr(name) for name in undeclared if (dataset.labels == dataset.class_names.index(name))
                              .any())
            raise DataImportError(f"dataset {dataset.name!r}: {rows.size} record(s) have a label that is not among the "
                                  f"declared classes ({names}), at rows {shown}{more} (counted from 1 in import order)",
                                  path=dataset.source,
                                  remedy="remove those records, or add the label to --classes if the class list may "
                                         "be public")
    mapping = np.array([index.get(name, 0) for name in dataset.class_names], dtype=np.int64)
    labels = mapping[dataset.labels] if dataset.num_records else dataset.labels
    return dataclasses.replace(dataset, labels=labels, class_names=declared, class_names_from="declared")


def published_units(num_units: int, *, declared: bool) -> int:
    """N as a release may state it: exact when declared public, else rounded down to 2 significant figures."""
    if declared or num_units < 100:
        return num_units if declared else max(1, num_units // 10 * 10)
    step = 10 ** (int(math.log10(num_units)) - 1)
    return num_units // step * step


def rare_class_warnings(dataset: ImageDataset, threshold: int = RARE_CLASS_RECORDS) -> list[str]:
    """Local warnings (never exported: they state class sizes) for classes with fewer than ``threshold`` records."""
    rare = {name: count for name, count in dataset.class_counts.items() if count < threshold}
    if not rare:
        return []
    listed = ", ".join(f"{name!r} ({count})" for name, count in rare.items())
    return [f"class(es) with fewer than {threshold} records: {listed}. The guarantee still holds, but a model "
            "learns little from so few records, and a class this small is itself a rare fact: consider merging or "
            "leaving it out of --classes"]
