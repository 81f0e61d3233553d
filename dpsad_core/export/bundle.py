"""``export_bundle``: sample a finished run's released model into a signed bundle (a generator of events).

The bundle is built in a hidden temporary sibling (``.partial-<name>-<random>``) and renamed into place
at the very end, after the signature; a zip is written beside it under a temporary name and renamed
too. An export that is interrupted (the generator closed, Ctrl-C, an error) removes its temporary
folder; one killed outright leaves only that hidden, unsigned folder, never something that looks
like a bundle. See ``layout.py`` for what a bundle holds.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpsad_core.errors import ConfigError, NotPrivateError, RunError
from dpsad_core.events import ExportEvent, ExportFinished, ExportProgress, ExportStarted
from dpsad_core.export.layout import (CROISSANT, GRID, IMAGES_DIR, LABELS, NOT_DP_SUFFIX, NPZ, PARTIAL_PREFIX,
                                      REPORT_HTML, REPORT_JSON)
from dpsad_core.export.manifest import seal_folder, sha256_file

EXPORTS_DIR = "exports"
GRID_PER_CLASS = 8


@dataclass(frozen=True)
class ExportOptions:
    """What to sample and how to package it.

    Exactly one of ``per_class`` (images of every class) and ``count`` (images in all, spread over the
    classes as evenly as possible) is given. ``research`` allows a non-private run (the bundle is
    stamped NOT DIFFERENTIALLY PRIVATE). ``include_private_diagnostics`` adds the losses of phases
    that read the private data and the run's evaluation numbers, labelled as outside the guarantee.
    ``steps`` and ``guidance`` default to the run's settings.
    """

    per_class: int | None = None
    count: int | None = None
    zip: bool = False
    npz: bool = False
    research: bool = False
    include_private_diagnostics: bool = False
    sampler: str = "ddim"
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    device: str = "auto"
    batch_size: int = 256

    def __post_init__(self) -> None:
        if (self.per_class is None) == (self.count is None):
            raise ConfigError("give exactly one of per_class and count", field="per_class",
                              value=(self.per_class, self.count), remedy="e.g. --per-class 100 or --count 1000")
        for name in ("per_class", "count", "steps", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}", field=name,
                                  value=value)
        if self.sampler not in ("ddim", "ddpm"):
            raise ConfigError(f"unknown sampler {self.sampler!r}", field="sampler", value=self.sampler,
                              remedy="use ddim or ddpm")


def export_bundle(run_ref: str | os.PathLike[str], *, workspace: Path, out: str | os.PathLike[str] | None = None,
                  **options: Any) -> Iterator[ExportEvent]:
    """Check the run and the destination now, and return the generator that writes the bundle.

    Parameters
    ----------
    run_ref
        Run id (in ``workspace``) or run folder; the run must have finished.
    workspace
        The workspace the run is in (the default destination is ``<workspace>/exports/``).
    out
        The bundle folder to create (or the ``.zip`` with ``zip=True``). It must not exist. For a
        non-private run the name gets ``-NOT-DIFFERENTIALLY-PRIVATE`` unless it already says so.
    **options
        The fields of :class:`ExportOptions`.

    Returns
    -------
    Iterator[ExportEvent]
        ExportStarted, ExportProgress while sampling and writing, then ExportFinished.

    Raises
    ------
    RunError
        The run does not exist or has not finished.
    NotPrivateError
        The run is not differentially private and ``research`` is not set.
    ConfigError
        Bad options, or ``out`` already exists.
    """
    from dpsad_core.training.runs import RunFolder

    settings = ExportOptions(**options)
    run = RunFolder.open(workspace, str(run_ref))
    state = run.status().get("state", "unknown")
    if state != "finished" or not (run.path / "result.json").is_file() or not run.model_path.is_file():
        raise RunError(f"run {run.run_id} has not finished (state: {state}), so it has no released model to export",
                       remedy=f"finish it first: dpsad-core train --resume {run.run_id}")
    result = run.read_json("result.json")
    if not result["private"] and not settings.research:
        raise NotPrivateError(f"run {run.run_id} is NOT differentially private (recipe {result['recipe']}: "
                              f"{', '.join(result['nonprivate_parts'])} trained without protection)",
                              remedy="export it for research only with --research; the bundle will be stamped "
                                     "NOT DIFFERENTIALLY PRIVATE")
    destination = _destination(out, workspace=workspace, run_id=run.run_id, private=bool(result["private"]),
                               as_zip=settings.zip)
    return _write_bundle(run, result, destination, settings)


def _destination(out, *, workspace: Path, run_id: str, private: bool, as_zip: bool) -> Path:
    path = Path(out) if out is not None else Path(workspace) / EXPORTS_DIR / run_id
    path = path.expanduser().absolute()
    stem = path.name[:-4] if path.name.lower().endswith(".zip") else path.name
    if not private and NOT_DP_SUFFIX.lower() not in stem.lower():
        stem = f"{stem}-{NOT_DP_SUFFIX}"
    path = path.with_name(f"{stem}.zip" if as_zip else stem)
    if path.exists() or path.is_symlink():
        raise ConfigError(f"{path} already exists", field="out", value=str(path),
                          remedy="choose another --out, or move the old bundle away")
    return path


def _write_bundle(run, result: dict[str, Any], destination: Path, settings: ExportOptions) -> Iterator[ExportEvent]:
    from dpsad_core.sampling import load_released_model
    from dpsad_core.training.engine import resolve_device

    device = resolve_device(settings.device)
    model, schedule, meta = load_released_model(run.model_path, device)
    class_names = [str(name) for name in meta["class_names"]]
    labels = _labels(len(class_names), settings)
    bundle_name = destination.name[:-4] if settings.zip else destination.name
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.parent / f"{PARTIAL_PREFIX}{bundle_name}-{secrets.token_hex(4)}"
    partial_zip = partial.with_name(partial.name + ".zip")
    partial.mkdir()
    try:
        yield ExportStarted(run_id=run.run_id, total_images=len(labels), private=bool(result["private"]),
                            partial_path=partial)
        folders = _class_folders(class_names)
        pixels = yield from _sample_and_write(model, schedule, labels, folders, partial, meta, settings, device)
        _write_labels(partial, labels, folders, class_names)
        if settings.npz:
            _write_npz(partial / NPZ, pixels, labels, class_names)
        grid_png = _write_grid(partial / GRID, pixels, labels, len(class_names))
        yield ExportProgress(stage="report", done=len(labels), total=len(labels))
        report = _write_reports(run, result, partial, settings, meta, class_names, labels, grid_png, bundle_name)
        yield ExportProgress(stage="signing", done=len(labels), total=len(labels))
        from dpsad_core.export.signing import load_or_create_signing_key

        seal_folder(partial, load_or_create_signing_key())
        if settings.zip:
            _zip_folder(partial, partial_zip, bundle_name)
        _publish(partial_zip if settings.zip else partial, destination)
        if settings.zip:
            shutil.rmtree(partial)
        _fsync_dir(destination.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if partial_zip.exists():
            partial_zip.unlink()
        raise
    guarantee = report["guarantee"]
    summary = {"bundle": str(destination), "run_id": run.run_id, "recipe": result["recipe"],
               "private": guarantee["differentially_private"], "epsilon": guarantee["epsilon"],
               "delta": guarantee["delta"], "unit_of_privacy": guarantee["unit_of_privacy"],
               "images": len(labels), "signer": report["signer"]["fingerprint"], "zip": settings.zip,
               "report": (f"{destination} ({bundle_name}/{REPORT_HTML})" if settings.zip
                          else str(destination / REPORT_HTML))}
    yield ExportFinished(bundle_path=destination, summary=summary)


def _publish(source: Path, destination: Path) -> None:
    """Rename the finished bundle into place, never over something that appeared there meanwhile."""
    try:
        if source.is_dir():
            if destination.exists() or destination.is_symlink():
                raise FileExistsError(destination)
            os.rename(source, destination)  # a directory rename fails on a non-empty target
        else:
            os.link(source, destination)    # unlike os.replace, refuses an existing file
            os.unlink(source)
    except FileExistsError:
        raise ConfigError(f"{destination} appeared while the bundle was being written", field="out",
                          value=str(destination), remedy="choose another --out") from None


def _labels(num_classes: int, settings: ExportOptions):
    import numpy as np

    if settings.per_class is not None:
        return np.repeat(np.arange(num_classes), settings.per_class)
    # count images spread as evenly as possible: the first (count mod K) classes get one more
    return np.sort(np.arange(settings.count) % num_classes)


def _class_folders(class_names: list[str]) -> list[str]:
    """A safe, unique folder name per class (class names may hold spaces, slashes or repeat)."""
    folders: list[str] = []
    for index, name in enumerate(class_names):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or f"class{index}"
        if safe in folders:
            safe = f"{index}-{safe}"
        folders.append(safe)
    return folders


def _sample_and_write(model, schedule, labels, folders, partial: Path, meta, settings: ExportOptions, device):
    import numpy as np
    from PIL import Image

    from dpsad_core.sampling import generate, to_uint8

    config = model.config
    shape = (config.image_channels, config.resolution, config.resolution)
    steps = settings.steps or meta["sample_steps"]
    guidance = meta["guidance"] if settings.guidance is None else settings.guidance
    for folder in folders:
        (partial / IMAGES_DIR / folder).mkdir(parents=True)
    chunks = []
    total = len(labels)
    for start in range(0, total, settings.batch_size):
        chunk = labels[start:start + settings.batch_size]
        # One seed per chunk: the same options give the same images whatever the batch split in generate().
        images = generate(model, schedule, labels=chunk, image_shape=shape, sampler=settings.sampler, steps=steps,
                          guidance=guidance, seed=settings.seed + start, batch_size=settings.batch_size,
                          device=device)
        pixels = to_uint8(images)
        for offset, (image, label) in enumerate(zip(pixels, chunk)):
            Image.fromarray(image).save(partial / _image_path(folders, int(label), start + offset), format="PNG")
        chunks.append(pixels)
        yield ExportProgress(stage="sampling", done=start + len(chunk), total=total)
    return np.concatenate(chunks)


def _image_path(folders: list[str], label: int, index: int) -> str:
    return f"{IMAGES_DIR}/{folders[label]}/{folders[label]}-{index + 1:06d}.png"


def _write_labels(partial: Path, labels, folders: list[str], class_names: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file_name", "label", "class_name"])
    for index, label in enumerate(labels):
        writer.writerow([_image_path(folders, int(label), index), int(label), class_names[int(label)]])
    (partial / LABELS).write_text(buffer.getvalue(), encoding="utf-8")


def _write_npz(path: Path, pixels, labels, class_names: list[str]) -> None:
    import numpy as np

    with open(path, "wb") as handle:
        np.savez_compressed(handle, images=pixels, labels=np.asarray(labels, dtype=np.int64),
                            class_names=np.array(class_names))


def _write_grid(path: Path, pixels, labels, num_classes: int) -> bytes:
    import numpy as np
    from PIL import Image

    from dpsad_core.sampling import grid_image

    per_class = min(GRID_PER_CLASS, min(int((labels == c).sum()) for c in range(num_classes)) or 1)
    rows = [pixels[labels == c][:per_class] for c in range(num_classes) if (labels == c).any()]
    grid = grid_image(np.concatenate(rows), rows=len(rows))
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _write_reports(run, result, partial: Path, settings: ExportOptions, meta, class_names, labels, grid_png: bytes,
                   bundle_name: str) -> dict[str, Any]:
    from dpsad_core.export.croissant import build_croissant
    from dpsad_core.export.report import build_report, export_software_versions
    from dpsad_core.export.report_html import render_html
    from dpsad_core.export.signing import load_or_create_signing_key, signer_info
    from dpsad_core.training.runs import utc_now

    evaluation = None
    evaluation_path = run.path / "evaluation.json"
    if settings.include_private_diagnostics and evaluation_path.is_file():
        evaluation = run.read_json("evaluation.json")
    counts = {name: int((labels == index).sum()) for index, name in enumerate(class_names)}
    bundle = {"name": bundle_name, "images": int(len(labels)), "per_class": settings.per_class,
              "count": settings.count, "class_names": class_names, "class_counts": counts,
              "sampler": settings.sampler, "sample_steps": settings.steps or meta["sample_steps"],
              "guidance": meta["guidance"] if settings.guidance is None else settings.guidance, "seed": settings.seed,
              "npz": settings.npz, "research_export": not result["private"],
              "contents": "synthetic images sampled from the released model only: no training image, no teacher "
                          "or discriminator weights, no per-record value"}
    created = utc_now()
    report = build_report(run_dir=run.path, config=run.read_json("config.json"), result=result,
                          metrics=run.read_metrics(), evaluation=evaluation, model_sha256=sha256_file(run.model_path),
                          bundle=bundle, signer=signer_info(load_or_create_signing_key().public_key()).to_dict(),
                          software=export_software_versions(), created=created,
                          include_private_diagnostics=settings.include_private_diagnostics)
    _write_json(partial / REPORT_JSON, report)
    hashes = {name: sha256_file(partial / name) for name in (LABELS, NPZ, GRID) if (partial / name).is_file()}
    _write_json(partial / CROISSANT, build_croissant(name=bundle_name, report=report, file_hashes=hashes,
                                                     created=created))
    (partial / REPORT_HTML).write_text(render_html(report, grid_png), encoding="utf-8")
    return report


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


def _zip_folder(folder: Path, target: Path, top: str) -> None:
    with open(target, "wb") as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    # PNG and npz are compressed already: store them rather than deflate them again
                    kind = zipfile.ZIP_STORED if path.suffix in (".png", ".npz") else zipfile.ZIP_DEFLATED
                    archive.write(path, f"{top}/{path.relative_to(folder).as_posix()}", compress_type=kind)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

