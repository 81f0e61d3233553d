"""``export_bundle``: a finished run's synthetic images into a signed bundle (a generator of events).

The images come from an :class:`~dpsad_core.export.sources.ImageSource`: sampled from a DP-SAD run's
released model, or read from a DP-RDM run's ``samples.npz`` (which has no model: every image was paid
for when it was generated). Both go through the same writer, report, manifest, signature and rename.

The bundle is built in a hidden temporary sibling (``.partial-<name>-<host>-<pid>-<random>``) and renamed into place
at the very end, after the signature; a zip is written beside it under a temporary name and renamed
too. An export that is interrupted (the generator closed, Ctrl-C, an error) removes its temporary
folder; one killed outright leaves only that hidden, unsigned folder, never something that looks
like a bundle, and the next export into the same folder removes it (:func:`remove_stale_partials`). See
``layout.py`` for what a bundle holds.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpsad_core.atomic import fsync_dir
from dpsad_core.errors import ConfigError, NotPrivateError, RunError
from dpsad_core.events import ExportEvent, ExportFinished, ExportProgress, ExportStarted
from dpsad_core.export.layout import (
    CROISSANT,
    GRID,
    IMAGES_DIR,
    LABELS,
    NOT_DP_SUFFIX,
    NPZ,
    PARTIAL_PREFIX,
    REPORT_HTML,
    REPORT_JSON,
)
from dpsad_core.export.manifest import seal_folder, sha256_file
from dpsad_core.export.spreadsheet import spreadsheet_safe_row
from dpsad_core.runs.records import RunKind, RunResult, RunState

EXPORTS_DIR = "exports"
GRID_PER_CLASS = 8


@dataclass(frozen=True)
class ExportOptions:
    """What to sample and how to package it.

    At most one of ``per_class`` (images of every class) and ``count`` (images in all, spread over the
    classes as evenly as possible) is given; a run with a model needs one, a DP-RDM run without either
    exports every image it generated. ``research`` allows a non-private run (the bundle is
    stamped NOT DIFFERENTIALLY PRIVATE). ``include_private_diagnostics`` adds the losses of phases
    that read the private data and the run's evaluation numbers, labelled as outside the guarantee.
    ``steps`` and ``guidance`` default to the run's settings. ``generator`` is "release" (the run's
    released model: for ``dpsad`` its few-step student) or "teacher" (the DP teacher, sampled with DDIM).
    """

    per_class: int | None = None
    count: int | None = None
    zip: bool = False
    npz: bool = False
    research: bool = False
    include_private_diagnostics: bool = False
    sampler: str = "ddim"
    generator: str = "release"
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    device: str = "auto"
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.per_class is not None and self.count is not None:
            raise ConfigError("give only one of per_class and count", field="per_class",
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
        Run id (in ``workspace``) or run folder; the run must have finished. A DP-RDM run
        (``dpsad-core rdm generate``) exports the images it generated, never new ones.
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
    from dpsad_core.export.sources import model_source, samples_source
    from dpsad_core.runs.folder import RunFolder

    settings = ExportOptions(**options)
    run = RunFolder.open(workspace, str(run_ref))
    state = run.state
    config = run.config()
    # Privacy from the plan as well as the accountant: a lost accountant never makes a release private.
    result = run.result().with_plan(config) if run.has_result else None
    rdm = RunKind.DP_RDM in (config.kind, result.kind if result is not None else None)
    if rdm and (state is not RunState.FINISHED or result is None or not (run.path / "samples.npz").is_file()):
        raise RunError(f"DP-RDM run {run.run_id} did not finish (state: {state}), so it has no complete set of "
                       "images to export", remedy="a DP-RDM run is not resumed: generate a new one with "
                                                  "dpsad-core rdm generate (its queries are a new privacy spend)")
    if result is None or not rdm and (state is not RunState.FINISHED or not run.model_path.is_file()):
        missing = "" if state is not RunState.FINISHED or result is None else " (its model.pt is missing)"
        raise RunError(f"run {run.run_id} has not finished (state: {state}){missing}, so it has no released model "
                       "to export", remedy=f"finish it first: dpsad-core train --resume {run.run_id}")
    if not result.private and not settings.research:
        raise NotPrivateError(f"run {run.run_id} is NOT differentially private (recipe {result.recipe}: "
                              f"{', '.join(result.nonprivate_parts)} trained without protection)",
                              remedy="export it for research only with --research; the bundle will be stamped "
                                     "NOT DIFFERENTIALLY PRIVATE")
    if rdm:
        source = samples_source(run, result, settings)  # checks the subset now: a clear error before any work
        make_source = lambda: source  # noqa: E731 - the model branch's callable, with nothing left to load
    else:
        if settings.per_class is None and settings.count is None:
            raise ConfigError("give one of per_class and count", field="per_class", value=None,
                              remedy="e.g. --per-class 100 or --count 1000")
        make_source = functools.partial(model_source, run, settings)  # loads the model when writing starts
    destination = _destination(out, workspace=workspace, run_id=run.run_id, private=result.private,
                               as_zip=settings.zip)
    return _write_bundle(run, result, destination, settings, make_source)


def _owner_tag(pid: int | None = None) -> str:
    """``<host>-<pid>`` of the exporting process, so a later export can tell a dead one's leftovers."""
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
    return f"h{host}-p{os.getpid() if pid is None else pid}"


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the temporary folders (and zips) of exports killed on this host (their process is gone).

    An export interrupted normally cleans up after itself; a ``kill -9`` or a power cut cannot, and
    leaves a hidden ``.partial-*`` sibling that ``verify`` rejects. Only partials whose owner tag
    names this host and a process that no longer exists are removed: another live export's folder,
    or one from another machine sharing the folder, is left alone.
    """
    removed = []
    host = _owner_tag().split("-p")[0]
    for path in Path(folder).glob(f"{PARTIAL_PREFIX}*"):
        match = re.search(r"-(h[0-9a-f]{6})-p(\d+)-[0-9a-f]{8}(\.zip)?$", path.name)
        if match is None or match.group(1) != host or _process_alive(int(match.group(2))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate the process there: leave Windows leftovers alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


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


def _write_bundle(run, result: RunResult, destination: Path, settings: ExportOptions,
                  make_source) -> Iterator[ExportEvent]:
    source = make_source()
    labels, class_names = source.labels, source.class_names
    bundle_name = destination.name[:-4] if settings.zip else destination.name
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(destination.parent)
    partial = destination.parent / f"{PARTIAL_PREFIX}{bundle_name}-{_owner_tag()}-{secrets.token_hex(4)}"
    partial_zip = partial.with_name(partial.name + ".zip")
    partial.mkdir()
    try:
        yield ExportStarted(run_id=run.run_id, total_images=len(labels), private=result.private,
                            partial_path=partial)
        folders = _class_folders(class_names, labels)
        pixels = yield from _write_images(source, folders, partial)
        _write_labels(partial, source, folders)
        if settings.npz:
            _write_npz(partial / NPZ, pixels, labels, class_names)
        grid_png = _write_grid(partial / GRID, pixels, labels)
        yield ExportProgress(stage="report", done=len(labels), total=len(labels))
        report = _write_reports(run, result, partial, settings, source, grid_png, bundle_name)
        yield ExportProgress(stage="signing", done=len(labels), total=len(labels))
        from dpsad_core.export.signing import load_or_create_signing_key

        seal_folder(partial, load_or_create_signing_key())
        if settings.zip:
            _zip_folder(partial, partial_zip, bundle_name)
        _publish(partial_zip if settings.zip else partial, destination)
        if settings.zip:
            shutil.rmtree(partial)
        fsync_dir(destination.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if partial_zip.exists():
            partial_zip.unlink()
        raise
    guarantee = report["guarantee"]
    summary = {"bundle": str(destination), "run_id": run.run_id, "recipe": result.recipe,
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


def _class_folders(class_names: list[str], labels) -> dict[int, str]:
    """A safe, unique folder name per label (class names may hold spaces, slashes or repeat).

    Label -1 (DP-RDM example queries) gets ``example-queries`` when the bundle holds any.
    """
    from dpsad_core.export.sources import EXAMPLE_FOLDER, EXAMPLE_LABEL

    folders: dict[int, str] = {}
    for index, name in enumerate(class_names):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or f"class{index}"
        if safe in folders.values():
            safe = f"{index}-{safe}"
        folders[index] = safe
    if (labels == EXAMPLE_LABEL).any():
        folders[EXAMPLE_LABEL] = EXAMPLE_FOLDER if EXAMPLE_FOLDER not in folders.values() else f"_{EXAMPLE_FOLDER}"
    return folders


def _write_images(source, folders: dict[int, str], partial: Path):
    """Write the source's images as PNGs, one folder per label; return all pixels (for the npz and grid)."""
    import numpy as np
    from PIL import Image

    for label in sorted({int(label) for label in source.labels}):
        (partial / IMAGES_DIR / folders[label]).mkdir(parents=True)
    chunks = []
    total = len(source.labels)
    for start, pixels in source.chunks():
        for offset, image in enumerate(pixels):
            label = int(source.labels[start + offset])
            Image.fromarray(image).save(partial / _image_path(folders, label, start + offset), format="PNG")
        chunks.append(pixels)
        yield ExportProgress(stage="sampling", done=start + len(pixels), total=total)
    return np.concatenate(chunks)


def _image_path(folders: dict[int, str], label: int, index: int) -> str:
    return f"{IMAGES_DIR}/{folders[label]}/{folders[label]}-{index + 1:06d}.png"


def _write_labels(partial: Path, source, folders: dict[int, str]) -> None:
    buffer = io.StringIO()
    # Text in quotes (csv leaves a bare carriage return in a class name unquoted otherwise, splitting the row),
    # the label an unquoted int; every field through spreadsheet_safe_row: a class name may be "=cmd|...".
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(spreadsheet_safe_row(["file_name", "label", "class_name"]))
    for index, label in enumerate(source.labels):
        writer.writerow(spreadsheet_safe_row([_image_path(folders, int(label), index), int(label),
                                              source.class_name(int(label))]))
    (partial / LABELS).write_bytes(buffer.getvalue().encode("utf-8"))  # bytes: no newline translation


def _write_npz(path: Path, pixels, labels, class_names: list[str]) -> None:
    import numpy as np

    with open(path, "wb") as handle:
        np.savez_compressed(handle, images=pixels, labels=np.asarray(labels, dtype=np.int64),
                            class_names=np.array(class_names))


def _write_grid(path: Path, pixels, labels) -> bytes:
    """Up to 8 images of every label present, one row each (classes in order, example queries last)."""
    import numpy as np
    from PIL import Image

    from dpsad_core.sampling import grid_image

    present = sorted({int(label) for label in labels}, key=lambda label: (label < 0, label))
    per_class = min(GRID_PER_CLASS, min(int((labels == c).sum()) for c in present))
    rows = [pixels[labels == c][:per_class] for c in present]
    grid = grid_image(np.concatenate(rows), rows=len(rows))
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _write_reports(run, result: RunResult, partial: Path, settings: ExportOptions, source, grid_png: bytes,
                   bundle_name: str) -> dict[str, Any]:
    from dpsad_core.export.croissant import build_croissant
    from dpsad_core.export.report import build_report, export_software_versions
    from dpsad_core.export.report_html import render_html
    from dpsad_core.export.signing import load_or_create_signing_key, signer_info
    from dpsad_core.runs.folder import utc_now

    evaluation = None
    evaluation_path = run.path / "evaluation.json"
    if settings.include_private_diagnostics and evaluation_path.is_file():
        evaluation = run.read_json("evaluation.json")
    labels, class_names = source.labels, source.class_names
    counts = {name: int((labels == index).sum()) for index, name in enumerate(class_names)}
    if (labels < 0).any():
        counts[source.class_name(-1)] = int((labels < 0).sum())
    bundle = {"name": bundle_name, "images": int(len(labels)), "per_class": settings.per_class,
              "count": settings.count, "class_names": class_names, "class_counts": counts, **source.settings,
              "npz": settings.npz, "research_export": not result.private, "contents": source.contents}
    created = utc_now()
    report = build_report(run_dir=run.path, config=run.config(), result=result,
                          metrics=run.read_metrics(), evaluation=evaluation, model=source.model,
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
