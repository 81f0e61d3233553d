"""The calls the screens make into :mod:`dpsad_core`, each importing what it needs when called.

Everything slow here (reading a dataset, calibrating a plan, which imports opacus and torch) is
called from a worker thread by the screens, never directly from a slot.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.errors import DpsadError
from dpsad_core.runs.folder import RunFolder
from dpsad_core.runs.records import RunState

PREVIEW_PER_CLASS = 8


# -- datasets --------------------------------------------------------------------------------------
#: The bundled demo digits, listed like any saved dataset (its fingerprint and counts come with its details:
#: loading it takes seconds, so it is never read on the GUI thread).
DEMO_META = {"name": "demo", "source": "the demo digits bundled with the workbench (8x8, public)", "num_records": 1500,
             "num_privacy_units": 1500, "unit": "image", "num_classes": 10, "class_counts": {}, "channels": 1,
             "resolution": 8, "fingerprint": None, "builtin": True}


def list_datasets(workspace: Path) -> list[dict[str, Any]]:
    """The saved datasets, then the demo data."""
    from dpsad_core.data import list_saved_datasets

    return list_saved_datasets(workspace) + [dict(DEMO_META)]


BAD_FILES_SHOWN = 50  # an import error lists this many unreadable files, then how many more


def import_dataset(path: str | Path, *, workspace: Path, name: str | None = None, resolution: int | None = None,
                   grey: bool = False, min_records: int = 100, split: str = "train",
                   skip_corrupt: bool = False, classes: str | None = None) -> dict[str, Any]:
    """Read ``path`` in any format the core reads, save it in the workspace, return its summary.

    ``classes`` is the class list the analyst declares public ("normal,pneumonia", in label order), as
    ``import --classes``: a folder, a manifest or DICOM without it is refused like on the command line
    (:class:`ConfigError` with ``field="classes"`` and the names found as ``value``, so the screen can
    ask for them). An unreadable image fails the import naming every unreadable file, not only the
    first: the core stops at the first, so the files are read once more, skipping, to list them all.
    """
    from dpsad_core.data import load_dataset, save_dataset
    from dpsad_core.data.imaging import UnreadableImageError
    from dpsad_core.data.public_metadata import parse_classes
    from dpsad_core.errors import ConfigError, DataImportError
    from dpsad_core.privacy.ledger import PrivacyLedger
    from dpsad_core.privacy.ledger_datasets import ledger_identity

    declared = None
    if classes and classes.strip():
        try:
            declared = parse_classes(classes)
        except ConfigError:
            raise ConfigError(f"the class names {classes!r} are not a list of distinct names", field="classes",
                              value=None, remedy="type each class name once, separated by commas, e.g. "
                                                 "normal,pneumonia") from None
    load = functools.partial(load_dataset, path, split=split, resolution=resolution, channels=1 if grey else None,
                             name=name or None, classes=declared)
    try:
        dataset = load(min_records=min_records, skip_corrupt=skip_corrupt)
    except UnreadableImageError as error:
        try:
            bad = list(load(min_records=1, skip_corrupt=True).skipped)
        except DataImportError:
            raise error from None
        shown = "\n".join(bad[:BAD_FILES_SHOWN])
        more = f"\n... and {len(bad) - BAD_FILES_SHOWN} more" if len(bad) > BAD_FILES_SHOWN else ""
        raise DataImportError(f"{len(bad)} file(s) in {path} are not readable images:\n{shown}{more}",
                              path=error.path, remedy="remove or replace them, or tick 'Skip unreadable files' "
                                                      "to import the rest without them") from None
    if dataset.class_names_from == "data":
        # Read off folder or label names: a single record could add a class to every release (the CLI refuses too).
        raise ConfigError(f"the class names of {path} come from its folder or label names "
                          f"({', '.join(dataset.class_names)}): every release shows the class list, so declare it",
                          field="classes", value=list(dataset.class_names),
                          remedy="type the class names you may make public in Classes, in label order, and import "
                                 "again; records with any other label are refused")
    folder = save_dataset(dataset, workspace)
    # Linked in the ledger to every dataset that shares its records: their budgets are shared from now on.
    fingerprint = ledger_identity(workspace, dataset)
    return dict(dataset.summary(workspace), path=str(folder), skipped_files=list(dataset.skipped),
                class_names=list(dataset.class_names), overlaps=PrivacyLedger(workspace).overlaps(fingerprint))


def dataset_preview(workspace: Path, name: str) -> np.ndarray:
    """A grid of the first images of each class of a saved dataset (shown only on this machine)."""
    from dpsad_core.data import load_saved_dataset
    from dpsad_core.data.store import datasets_dir

    dataset = load_saved_dataset(datasets_dir(workspace) / name)
    grid = preview_grid(dataset.images, dataset.labels, dataset.num_classes, PREVIEW_PER_CLASS)
    shown = [name for label, name in enumerate(dataset.class_names) if np.any(dataset.labels == label)]
    return label_rows(grid, shown)


def preview_grid(images: np.ndarray, labels: np.ndarray, num_classes: int, per_class: int = 8) -> np.ndarray:
    """A grid of the first ``per_class`` images of each class (float ``N x C x H x W`` in [0, 1])."""
    from dpsad_core.sampling import grid_image

    picked = []
    for label in range(num_classes):
        index = np.flatnonzero(labels == label)[:per_class]
        if index.size == 0:
            continue
        chosen = images[index]
        if index.size < per_class:  # pad a short class with blank cells so rows stay aligned
            blank = np.ones((per_class - index.size,) + chosen.shape[1:], dtype=chosen.dtype)
            chosen = np.concatenate([chosen, blank])
        picked.append(chosen)
    if not picked:
        raise ValueError("no images to preview")
    pixels = np.clip(np.concatenate(picked) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    pixels = pixels[:, 0] if pixels.shape[1] == 1 else pixels.transpose(0, 2, 3, 1)
    return grid_image(pixels, rows=len(picked))


def label_rows(grid: np.ndarray, names: list[str]) -> np.ndarray:
    """The grid with each row's class name written in a white margin on its left.

    The core's grids have one row per class (``grid_image``: rows of equal height); a grid whose row
    count is not ``len(names)`` is returned unchanged rather than labelled wrongly.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not names:
        return grid
    row_height = grid.shape[0] / len(names)
    if row_height < 10:
        return grid  # no room for a legible name
    font = ImageFont.load_default()
    labels = [str(name)[:24] for name in names]
    width = 8 + max(int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(text, font=font)) for text in labels)
    margin = np.full((grid.shape[0], width) + grid.shape[2:], 255, dtype=np.uint8)
    canvas = Image.fromarray(np.concatenate([margin, grid], axis=1))
    draw = ImageDraw.Draw(canvas)
    ink = 0 if canvas.mode == "L" else (0, 0, 0)
    for row, text in enumerate(labels):
        draw.text((4, int(row * row_height + row_height / 2)), text, fill=ink, font=font, anchor="lm")
    return np.asarray(canvas)


def run_class_names(run_dir: Path) -> list[str]:
    """The class names of the data a run trained on, in label order (empty when unknown)."""
    try:
        return RunFolder(Path(run_dir)).config().class_names
    except (OSError, ValueError, TypeError, DpsadError):
        return []


def dataset_details(workspace: Path, name: str, fingerprint: str | None) -> dict[str, Any]:
    """The preview grid and the ledger's budget panel for a saved dataset or the demo (slow: reads data, ledger).

    For the demo, ``meta`` carries what listing it could not (its fingerprint and class counts).
    """
    details: dict[str, Any] = {"name": name, "grid": None, "grid_error": None, "budget": None,
                               "budget_error": None, "meta": None}
    try:
        if name == DEMO_META["name"] and fingerprint is None:
            from dpsad_core.data import resolve_data_source

            dataset = resolve_data_source("demo", workspace=workspace)
            details["meta"] = dict(DEMO_META) | dataset.summary()
            fingerprint = details["meta"]["fingerprint"]
            grid = preview_grid(dataset.images, dataset.labels, dataset.num_classes, PREVIEW_PER_CLASS)
            details["grid"] = label_rows(grid, list(dataset.class_names))
        else:
            details["grid"] = dataset_preview(workspace, name)
    except Exception as error:  # noqa: BLE001 - shown in place of the preview
        details["grid_error"] = str(error)
    try:
        if fingerprint is not None:
            details["budget"] = budget_panel(workspace, fingerprint)
    except Exception as error:  # noqa: BLE001 - shown in place of the number
        details["budget_error"] = str(error)
    return details


def rename_dataset(workspace: Path, name: str, new_name: str) -> None:
    """Rename a saved dataset: its folder and the name in its description. Its fingerprint, and so
    its spend in the privacy ledger, does not depend on the name and stays with it."""
    from dpsad_core.atomic import atomic_write_json
    from dpsad_core.data.store import META_FILE, check_name, datasets_dir
    from dpsad_core.errors import ConfigError

    check_name(new_name)
    if new_name in (DEMO_META["name"], "rendered-digits"):
        raise ConfigError(f"{new_name!r} is the name of built-in data", field="name", value=new_name,
                          remedy="choose another name")
    folder, target = datasets_dir(workspace) / check_name(name), datasets_dir(workspace) / new_name
    if target.exists():
        raise ConfigError(f"a dataset named {new_name!r} already exists", field="name", value=new_name,
                          remedy="choose another name, or delete that dataset first")
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    folder.rename(target)
    atomic_write_json(target / META_FILE, meta | {"name": new_name})


def delete_dataset(workspace: Path, name: str) -> None:
    """Delete a saved dataset's folder; what runs spent on it stays in the privacy ledger."""
    import shutil

    from dpsad_core.data.store import check_name, datasets_dir

    shutil.rmtree(datasets_dir(workspace) / check_name(name))


# -- the privacy ledger ---------------------------------------------------------------------------
def budget_summary(workspace: Path, fingerprint: str) -> dict[str, Any]:
    """What the ledger says was spent on this dataset."""
    from dpsad_core.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(workspace)
    # Datasets that share records with this one: their runs are in its total (dpsad_core.data.identity).
    return ledger.summary(fingerprint).to_dict() | {"overlaps": ledger.overlaps(fingerprint)}


def budget_panel(workspace: Path, fingerprint: str) -> dict[str, Any]:
    """The ledger's account of one dataset for its budget panel: each run's epsilon and the composed total.

    ``total`` composes every run's noise together (at the smallest delta of the runs), which bounds
    the combined loss more tightly than ``sum_of_runs``, the epsilons added up.
    """
    from dpsad_core.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(workspace)
    summary = ledger.summary(fingerprint)
    runs: list[dict[str, Any]] = []
    for entry in summary.entries:
        values, _ = entry.values()
        runs.append({"run_id": entry.run_id, "recipe": entry.recipe, "kind": entry.kind, "active": entry.active,
                     "epsilon": values.certified if entry.private else math.inf, "delta": entry.delta,
                     "updated": entry.updated})
    total = summary.spent.certified if summary.entries else 0.0
    # Datasets that share records with this one: runs on them are in its total, and its runs in theirs.
    return summary.to_dict() | {"run_list": runs, "total": total, "total_delta": summary.spent.delta,
                                "sum_of_runs": sum(run["epsilon"] for run in runs),
                                "overlaps": ledger.overlaps(fingerprint)}


def set_budget_cap(workspace: Path, fingerprint: str, epsilon: float | None, name: str | None) -> dict[str, Any]:
    """Set (``None``: remove) the dataset's cap in the ledger; returns the new budget panel."""
    from dpsad_core.privacy.ledger import PrivacyLedger

    PrivacyLedger(workspace).set_cap(fingerprint, epsilon, dataset_name=name)
    return budget_panel(workspace, fingerprint)


def projected_total(workspace: Path, config, dataset, plan) -> float:
    """The dataset's composed epsilon once this run has spent its whole plan."""
    from dpsad_core.privacy.ledger import PrivacyLedger
    from dpsad_core.privacy.ledger_entries import compose_entries
    from dpsad_core.training.budget import ledger_fingerprint, planned_mechanisms

    entries = PrivacyLedger(workspace).entries(ledger_fingerprint(config, dataset, workspace))
    values, _ = compose_entries(entries, extra=planned_mechanisms(config, plan), extra_delta=plan.delta,
                                extra_private=plan.is_private, committed=True)
    return values.certified


# -- runs ------------------------------------------------------------------------------------------
#: What the Runs screen shows for a run left "running" by a process that is gone (killed, the machine stopped).
ORPHANED_STATE_TEXT = "interrupted (its process ended)"


def list_runs(workspace: Path) -> list[dict[str, Any]]:
    """The core's run summaries, each with ``shown_state``: its state, except that a "running" run no live
    process trains reads as interrupted (its status file cannot say so: its process died before writing it)."""
    from dpsad_core.training import list_runs as core_list_runs

    runs = core_list_runs(workspace)
    for run in runs:
        orphaned = run["state"] == "running" and not training_process_alive(Path(run["path"]))
        run["shown_state"] = ORPHANED_STATE_TEXT if orphaned else run["state"]
    return runs


def training_process_alive(run_path: Path) -> bool:
    """Whether the process that last took the run's lock (its pid is in ``.lock``) is still running.

    The pid is read rather than the lock tried: trying it would, for an instant, make a resume starting
    in another process fail as "being trained by another process".
    """
    try:
        pid = int((run_path / ".lock").read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def run_progress(run_dir: Path) -> tuple[int, int] | None:
    """(steps done, steps planned) over all phases of a run, from its plan and status (None if unknown)."""
    try:
        stored = RunFolder(Path(run_dir)).config()
        status = json.loads((Path(run_dir) / "status.json").read_text(encoding="utf-8"))
        limit = stored.max_steps
        totals = [(p["name"], p["steps"] if limit is None else min(p["steps"], limit)) for p in stored.phases]
    except (OSError, ValueError, KeyError, TypeError, DpsadError):
        return None
    total = sum(steps for _, steps in totals)
    if status.get("state") == RunState.FINISHED:
        return total, total
    names = [name for name, _ in totals]
    phase, step = status.get("phase"), status.get("step")
    if phase not in names or not isinstance(step, int):
        return (0, total) if status.get("state") in ("starting", RunState.RUNNING) else None
    before = sum(steps for _, steps in totals[:names.index(phase)])
    return before + step, total


def mark_cancelled(workspace: Path, run_id: str) -> None:
    """Record that the analyst cancelled a run: it has ended (not resumable), and what it spent stays in the ledger."""
    from dpsad_core.training import RunFolder

    run = RunFolder.open(workspace, run_id)
    status = run.status()
    extra = {k: v for k, v in status.items() if k not in ("state", "updated")}
    extra["message"] = "cancelled by the user; the privacy it spent stays counted on its dataset"
    run.set_status(RunState.CANCELLED, **extra)


def delete_run(workspace: Path, run_id: str) -> None:
    """Delete a run folder, refusing while a process trains it (its lock is held)."""
    import shutil

    from dpsad_core.training import RunFolder

    run = RunFolder.open(workspace, run_id)
    run.lock()  # raises RunError naming the run when it is being trained
    try:
        shutil.rmtree(run.path)
    finally:
        run.unlock()


# -- long jobs, run in a child process by dpsad_workbench.worker.ProcessGeneratorWorker ---------------
def train_job(*, stop, config, workspace: Path, all_gpus: bool = False):
    """A new run; with ``all_gpus`` (Settings: All GPUs) one worker per GPU, this process being rank 0."""
    from dpsad_core.training import start_training

    workers = training_workers(config.device, all_gpus)
    if workers > 1:
        from dpsad_core.training.local_workers import train_with_workers

        return train_with_workers(config, workspace=workspace, nproc=workers, stop=stop)
    return start_training(config, workspace=workspace, stop=stop)


def resume_job(*, stop, run_id: str, workspace: Path, device: str | None = None):
    """Resume with as many workers as the run was started with (as ``dpsad-core train --resume`` does), on
    ``device`` (the workbench passes its Settings' device, as ``--device`` would) or else where it started."""
    from dpsad_core.training import RunFolder, resume_training

    workers = RunFolder.open(workspace, run_id).config().workers
    if workers > 1:
        from dpsad_core.training.local_workers import train_with_workers

        return train_with_workers(None, workspace=workspace, nproc=workers, stop=stop, resume=run_id, device=device)
    return resume_training(run_id, workspace=workspace, stop=stop, device=device)


def training_workers(device: str, all_gpus: bool) -> int:
    """How many workers a run started from the workbench uses: every GPU with All GPUs, else one."""
    if not all_gpus or device != "cuda":
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def gpu_inventory() -> dict[str, Any]:
    """The GPUs torch sees (for the Settings screen), or why there are none."""
    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        return {"count": len(names), "names": names, "reason": None}
    if torch.version.cuda is None:
        reason = f"this torch ({torch.__version__}) is a CPU build (install one with CUDA to use a GPU)"
    else:
        reason = "torch finds no CUDA GPU on this machine (no NVIDIA GPU, or its driver is missing)"
    return {"count": 0, "names": [], "reason": reason}


def devices_summary(device: str, all_gpus: bool = False) -> str:
    """Where a run with these settings trains, in words (the New run plan shows it)."""
    import torch

    from dpsad_core.devices import resolve_device

    resolved = resolve_device(device)
    if not resolved.startswith("cuda"):
        why = " (no CUDA GPU was found)" if device == "auto" else ""
        return f"the CPU{why}, one process"
    workers = training_workers(device, all_gpus)
    index = 0 if resolved == "cuda" else int(resolved.split(":", 1)[1])
    if workers > 1:
        return (f"all {workers} GPUs, one worker each ({torch.cuda.get_device_name(0)}): the same mechanism and "
                "epsilon as one worker")
    return f"one GPU ({torch.cuda.get_device_name(index)})"


def export_job(*, stop, run_id: str, workspace: Path, out: str | None, **options):
    """Export is short and writes into a temporary folder it removes on failure: it is not stopped."""
    from dpsad_core.export import export_bundle

    return export_bundle(run_id, workspace=workspace, out=out, **options)


def evaluate_job(*, stop, run_id: str, workspace: Path, test: str, per_class: int | None, device: str,
                 generator: str = "release"):
    """``dpsad-core evaluate``; stopping between stages leaves the run's earlier evaluation as it was."""
    from dpsad_core.evaluation import EvaluationOptions, evaluate_run

    events = evaluate_run(run_id, test=test, workspace=workspace,
                          options=EvaluationOptions(per_class=per_class, device=device, generator=generator))
    for event in events:
        yield event
        if stop():
            events.close()  # evaluation.json is written last, atomically: nothing half-done remains
            return


def verify_bundle(path: str | Path, public_key: str | None = None):
    from dpsad_core.export import verify_bundle as core_verify

    return core_verify(path, public_key=public_key)


# -- planning --------------------------------------------------------------------------------------
def plan_preview(config, *, workspace: Path, all_gpus: bool = False) -> dict[str, Any]:
    """What a run with ``config`` implies, computed with the same planner the engine uses."""
    from dpsad_core.training import prepare_run

    dataset, _, plan = prepare_run(config, workspace=workspace, plan_only=True)
    summary = dataset.summary(workspace)
    from dpsad_core.data.public_metadata import rare_class_warnings

    # Shown on this screen only: a class size is a fact about the private data, never part of the exported plan.
    warnings = [analyst_warning(text) for text in plan.warnings] + rare_class_warnings(dataset)
    units = dataset.num_privacy_units
    if units < 100:
        warnings.append(f"only {units} privacy units: far too few for a useful guarantee")
    warnings += noise_warnings(plan.to_dict(), units)
    steps = {p.name: (p.steps if config.max_steps is None else min(p.steps, config.max_steps)) for p in plan.phases}
    budget = None
    budget_error = None
    try:
        budget = budget_summary(workspace, summary["fingerprint"])
        budget["after_this_run"] = projected_total(workspace, config, dataset, plan)
    except Exception as error:  # noqa: BLE001 - a broken ledger must not hide the plan
        budget_error = str(error)
    return {
        "plan": plan.to_dict(), "dataset": summary, "steps": steps, "warnings": warnings,
        "raw_warnings": list(plan.warnings),
        "private": plan.is_private, "estimate": cached_estimate(config, plan, dataset, steps),
        "run_epsilon": cut_run_epsilon(config, plan),
        "budget": budget, "budget_error": budget_error,
        "devices": devices_summary(config.device, all_gpus),
    }


_FULL_BATCH = re.compile(r"^(?P<part>[\w-]+): expected batch \d+ >= (?P<count>\d+) records, so every record is in "
                         r"every batch \(sample rate 1\): there is no amplification by subsampling$")


def analyst_warning(text: str) -> str:
    """A planner warning in an analyst's words (the planner's own words stay under Details)."""
    found = _FULL_BATCH.match(text)
    if found:
        return (f"{found['part']}: the data ({found['count']} records) is smaller than one training batch, so every "
                "record is used in every step and random sampling does not help the privacy: much more noise is "
                "needed. Use more data or a smaller preset")
    return text


#: Noise that swamps the signal: in DP-SGD each averaged gradient gets Gaussian noise of standard
#: deviation sigma * C / B per coordinate (C the clipping bound, the most one example's gradient can
#: be; B the expected batch). The runs the benchmarks found useful have sigma / B between 0.002 and
#: 0.01 (quick preset, epsilon 10, MNIST and the demo digits); at 0.1, ten times the worst of those,
#: each step's noise is a tenth of the largest possible signal on every coordinate, and the model
#: learns next to nothing: its images are noise.
NOISE_SWAMPS_RATIO = 0.1


def noise_warnings(plan: dict[str, Any], units: int) -> list[str]:
    """A warning for each DP phase whose noise swamps the signal (``NOISE_SWAMPS_RATIO``)."""
    warnings = []
    for phase in plan["phases"]:
        if phase["privacy"] != "dp" or phase["expected_batch_size"] <= 0:
            continue
        ratio = phase["noise_multiplier"] / phase["expected_batch_size"]
        if ratio > NOISE_SWAMPS_RATIO:
            warnings.append(
                f"{phase['name']}: at epsilon {plan['epsilon_target']:g} with {units:,} privacy units the noise "
                f"added in training is {ratio / NOISE_SWAMPS_RATIO:.1f} times the most that still lets the model "
                "learn: the generated images will be mostly noise. Raise epsilon, use more data, or a larger preset")
    return warnings


def cut_run_epsilon(config, plan) -> float | None:
    """The epsilon this run will reach when Max steps cuts a phase short of its plan, else None.

    The plan's epsilon is that of every planned step; a cut run stops earlier and spends less, as the
    budget line's total after this run already says.
    """
    if config.max_steps is None or all(p.steps <= config.max_steps for p in plan.phases):
        return None
    from dpsad_core.runs.lifecycle import certified_values
    from dpsad_core.training.budget import planned_mechanisms

    values, _ = certified_values(mechanisms=planned_mechanisms(config, plan), delta=plan.delta,
                                 nonprivate_parts=plan.nonprivate_parts)
    return values.certified


def cached_estimate(config, plan, dataset, steps: dict[str, int]) -> dict[str, Any]:
    """Time for the plan from this machine's cached step time of this model, when it is recent (a day; a
    finished run refreshes it), else ``seconds`` None: the screen then times a step in the helper process
    (:func:`measure_plan_seconds`). See :mod:`dpsad_core.training.estimate`."""
    from dpsad_core.training.estimate import estimate_plan_seconds

    return estimate_plan_seconds(plan.to_dict(), steps, config.hyper, channels=dataset.channels,
                                 resolution=dataset.resolution, num_classes=dataset.num_classes,
                                 device=config.device, measure=False)


def measure_plan_seconds(*, plan: dict[str, Any], steps: dict[str, int], hyper, channels: int, resolution: int,
                         num_classes: int, device: str) -> dict[str, Any]:
    """Time for the plan from a timed DP step of this model on this machine (used when no recent step time
    is cached); the step time is cached per machine and model (:mod:`dpsad_core.training.estimate`)."""
    from dpsad_core.training.estimate import estimate_plan_seconds

    return estimate_plan_seconds(plan, steps, hyper, channels=channels, resolution=resolution,
                                 num_classes=num_classes, device=device)


def format_epsilon(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "∞ (not private)"
    return f"{float(value):.3g}"


