"""Imported datasets saved in the workspace: ``workspace/datasets/<name>/``.

Each folder holds ``dataset.npz`` (images, labels and, if any, patient ids; uncompressed, so it
loads fast) and ``dataset.json`` (the summary, class names, skipped files and creation time). A
dataset is written into a hidden temporary folder that is renamed into place at the end, so a kill
never leaves a half-written dataset under its name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.atomic import atomic_write, atomic_write_json
from dpsad_core.data.dataset import ImageDataset
from dpsad_core.errors import ConfigError, DataImportError

DATASETS_FOLDER = "datasets"
DATA_FILE = "dataset.npz"
META_FILE = "dataset.json"
FORMAT_VERSION = 1
MAX_NAME_LENGTH = 100
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")


def is_safe_name(name: str) -> bool:
    """Letters, digits, "-", "_" and "."; starts with a letter or digit; at most 100 characters."""
    return (isinstance(name, str) and len(name) <= MAX_NAME_LENGTH
            and _SAFE_NAME.fullmatch(name) is not None)


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe folder name, else raise :class:`ConfigError`."""
    if not is_safe_name(name):
        raise ConfigError(f"dataset name {name!r} is not a safe folder name", field="name",
                          value=name, remedy="use letters, digits, '-', '_' and '.', starting with "
                                             "a letter or digit (at most 100 characters)")
    return name


def sanitise_name(text: str) -> str:
    """A safe name made from ``text`` (a file or folder name): unsafe runs become "-"."""
    name = _UNSAFE_RUN.sub("-", text).strip("-._")[:MAX_NAME_LENGTH].rstrip("-._")
    return name or "dataset"


def datasets_dir(workspace: Path) -> Path:
    return Path(workspace) / DATASETS_FOLDER


def save_dataset(dataset: ImageDataset, workspace: Path) -> Path:
    """Save ``dataset`` as ``workspace/datasets/<name>/`` and return that folder.

    Saving the identical data under the same name again does nothing. A different dataset that
    already has the name is never overwritten: :class:`DataImportError`.
    """
    name = check_name(dataset.name)
    parent = datasets_dir(workspace)
    target = parent / name
    if target.exists():
        return _same_or_refuse(dataset, target, workspace)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent))
    try:
        arrays = {"images": dataset.images, "labels": dataset.labels}
        if dataset.patient_ids is not None:
            arrays["patient_ids"] = dataset.patient_ids
        # ignore: numpy's stub lets mypy match **arrays against savez's allow_pickle: bool
        atomic_write(staging / DATA_FILE, lambda handle: np.savez(handle, **arrays))  # type: ignore[arg-type]
        meta = dataset.summary(workspace) | {
            "format_version": FORMAT_VERSION,
            "class_names": list(dataset.class_names),
            "skipped_files": list(dataset.skipped),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(staging / META_FILE, meta)
        try:
            os.rename(staging, target)
        except OSError:
            if target.exists():  # a concurrent save of the same name got there first
                return _same_or_refuse(dataset, target, workspace)
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _same_or_refuse(dataset: ImageDataset, target: Path, workspace: Path) -> Path:
    refuse = DataImportError(f"a different dataset named {dataset.name!r} is already saved",
                             path=target, remedy="choose another name (name=... / --name)")
    try:
        stored = json.loads((target / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataImportError(f"the folder for dataset {dataset.name!r} exists but holds no "
                              "readable dataset", path=target,
                              remedy="choose another name, or remove the folder") from None
    if stored.get("fingerprint") == dataset.fingerprint(workspace):
        return target
    # The stored fingerprint may come from another key or encoding: compare the data itself.
    try:
        existing = load_saved_dataset(target)
    except DataImportError:
        raise refuse from None
    if existing.fingerprint(workspace) == dataset.fingerprint(workspace):
        return target
    raise refuse


def load_saved_dataset(folder: Path) -> ImageDataset:
    """Load a dataset saved by :func:`save_dataset` from its folder."""
    folder = Path(folder)
    meta_path, data_path = folder / META_FILE, folder / DATA_FILE
    if not meta_path.is_file():
        raise DataImportError(f"not a saved dataset (no {META_FILE})", path=folder,
                              remedy="pass a folder created by saving an imported dataset")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        class_names = tuple(meta["class_names"])
        name, source = str(meta["name"]), str(meta["source"])
        skipped = tuple(meta.get("skipped_files", ()))
        merged = int(meta.get("merged_duplicates", 0))
        declared = bool(meta.get("name_declared", False))
        class_names_from = str(meta.get("class_names_from", "data"))
        count_declared = bool(meta.get("count_declared", False))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataImportError(f"unreadable dataset description ({exc!r})", path=meta_path,
                              remedy="import the data again") from None
    try:
        with np.load(data_path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
            patient_ids = archive["patient_ids"] if "patient_ids" in archive.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataImportError(f"unreadable dataset arrays ({exc})", path=data_path,
                              remedy="import the data again") from None
    return ImageDataset(images=images, labels=labels, class_names=class_names,
                        patient_ids=patient_ids, name=name, source=source, skipped=skipped,
                        merged_duplicates=merged, name_declared=declared, class_names_from=class_names_from,
                        count_declared=count_declared)


def list_saved_datasets(workspace: Path) -> list[dict[str, Any]]:
    """The stored descriptions of every saved dataset, sorted by name, each with its ``path``.

    Folders without a readable ``dataset.json`` (and hidden staging folders) are left out.
    """
    parent = datasets_dir(workspace)
    if not parent.is_dir():
        return []
    found: list[dict[str, Any]] = []
    for folder in sorted(parent.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            found.append(meta | {"path": str(folder)})
    return found


def saved_dataset_names(workspace: Path) -> list[str]:
    """Names of the datasets saved in ``workspace`` (for messages)."""
    return [str(meta.get("name", Path(meta["path"]).name))
            for meta in list_saved_datasets(workspace)]
