"""Time estimates from a measured step of the run's own model, resolution and batch.

Used by the workbench's New run screen and by ``train --plan``: one DP denoising step of the
plan's network at its expected batch is timed on this machine (a warm-up step, then the median of
``TIMED_STEPS``), and a student + discriminator step is taken as ``DISTILL_COST_RATIO`` denoising steps
(bench/step_time.py). Measurements are cached per machine and model shape in the cache folder, so a
plan is not timed at every preview or start of the app.

A cached step time ages: one older than ``MAX_AGE_SECONDS`` is timed again (the machine may have been
busy, or its threads or drivers changed since). A run that ends records what its steps really took
(:func:`learn_from_run`, the best measurement there is): where that differs from the cached time by more
than ``REFRESH_FRACTION`` it replaces it, else it confirms it (its age starts again). No Qt here.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpsad_core.atomic import atomic_write_json
from dpsad_core.errors import RunError
from dpsad_core.paths import cache_dir
from dpsad_core.runs.records import RunConfigRecord

if TYPE_CHECKING:
    from dpsad_core.training.config import Hyperparameters

CACHE_FILE = "step-times.json"
TIMED_STEPS = 3
#: A step time older than this (a day) is measured again before it prices a plan.
MAX_AGE_SECONDS = 24 * 3600
#: A finished run's step time replaces the cached one when they differ by more than this fraction of it.
REFRESH_FRACTION = 0.25


def machine_key(device: str) -> str:
    """What makes a step time valid on this machine: host, processor, cores, torch threads, device."""
    import torch

    name = device
    if device.startswith("cuda") and torch.cuda.is_available():
        name = f"{device}:{torch.cuda.get_device_name(torch.device(device))}"
    return "|".join((platform.node(), platform.machine(), str(os.cpu_count()), str(torch.get_num_threads()), name))


def model_key(hyper: Hyperparameters, *, channels: int, resolution: int, num_classes: int, batch: int) -> str:
    """The model shape and batch a step time was measured for (the preset's network, not its name)."""
    parts = (hyper.channels, hyper.blocks_per_level, hyper.attention_levels, hyper.draws_per_record,
             hyper.microbatch_size, channels, resolution, num_classes, batch)
    return "|".join(str(part) for part in parts)


def _read_cache() -> dict[str, Any]:
    try:
        cached = json.loads((cache_dir() / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def measure_denoise_step(hyper: Hyperparameters, *, channels: int, resolution: int, num_classes: int, device: str,
                         batch: int) -> float:
    """Seconds of one DP denoising step of this network at ``batch`` images, timed on random data."""
    import torch

    from dpsad_core.diffusion import DiffusionSchedule
    from dpsad_core.models import UNet, UNetConfig
    from dpsad_core.privacy import Mechanism
    from dpsad_core.privacy.randomness import SecretRandomness
    from dpsad_core.training.steps import DataTensors, denoise_step, draw_batch

    torch.manual_seed(0)
    count = 2 * batch
    data = DataTensors(images=torch.rand(count, channels, resolution, resolution, device=device) * 2 - 1,
                       labels=torch.randint(0, num_classes, (count,), device=device),
                       unit_of_record=torch.arange(count), num_units=count, has_units=False)
    model = UNet(UNetConfig(image_channels=channels, resolution=resolution, num_classes=num_classes,
                            channels=hyper.channels, blocks_per_level=hyper.blocks_per_level,
                            attention_levels=hyper.attention_levels)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    schedule = DiffusionSchedule(hyper.diffusion_steps, hyper.schedule)
    mechanism = Mechanism(part="teacher", noise_multiplier=1.0, sample_rate=0.5, steps=1,
                          clip_norm=hyper.denoiser_clip_norm)
    randomness = SecretRandomness.fresh()  # the same secure noise a run draws, so it is timed too
    loss_generator = torch.Generator(device=device).manual_seed(0)
    times = []
    for _ in range(1 + TIMED_STEPS):  # the first step pays one-time costs (allocations, vmap tracing)
        began = time.perf_counter()
        drawn = draw_batch(data, sample_rate=0.5, schedule=schedule, draws_per_record=hyper.draws_per_record,
                           label_dropout=hyper.label_dropout, null_label=num_classes,
                           sampling=randomness.stream("sampling"), loss_generator=loss_generator)
        denoise_step(model, optimizer, drawn, mechanism=mechanism, expected_batch_size=float(batch),
                     microbatch_size=hyper.microbatch_size, stream=randomness.stream("noise"))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def _fresh_entry(entry: Any, now: float) -> dict[str, Any] | None:
    """The cache entry if it still prices a plan: a positive time measured less than ``MAX_AGE_SECONDS`` ago.

    Entries of the first cache format (a bare number, no date) count as stale: they are measured again.
    """
    if not isinstance(entry, dict):
        return None
    seconds, measured = entry.get("seconds"), entry.get("measured")
    if not isinstance(seconds, (int, float)) or seconds <= 0 or not isinstance(measured, (int, float)):
        return None
    if not 0 <= now - measured <= MAX_AGE_SECONDS:  # too old, or from the future (the clock was set back)
        return None
    return entry


def _write_entry(machine: str, model: str, entry: dict[str, Any]) -> None:
    cached = _read_cache()  # another process may have written meanwhile: keep its entries
    if not isinstance(cached.get(machine), dict):
        cached[machine] = {}
    cached[machine][model] = entry
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache_dir() / CACHE_FILE, cached)
    except OSError:
        pass  # a read-only cache only costs a measurement next time


def cached_step(hyper: Hyperparameters, *, channels: int, resolution: int, num_classes: int, device: str,
                batch: int) -> dict[str, Any] | None:
    """The fresh cache entry for this machine and model (``{"seconds", "measured", "source"}``), or None."""
    machine = machine_key(device)
    model = model_key(hyper, channels=channels, resolution=resolution, num_classes=num_classes, batch=batch)
    machine_entries = _read_cache().get(machine)
    if not isinstance(machine_entries, dict):
        return None
    return _fresh_entry(machine_entries.get(model), time.time())


def denoise_step_seconds(hyper: Hyperparameters, *, channels: int, resolution: int, num_classes: int, device: str,
                         batch: int) -> tuple[float, bool]:
    """``(seconds per denoising step, whether it came from the cache)``; measures and caches when the cache
    has no fresh entry."""
    shape: dict[str, Any] = {"channels": channels, "resolution": resolution, "num_classes": num_classes,
                             "device": device}
    entry = cached_step(hyper, batch=batch, **shape)
    if entry is not None:
        return float(entry["seconds"]), True
    seconds = measure_denoise_step(hyper, batch=batch, **shape)
    _write_entry(machine_key(device), model_key(hyper, channels=channels, resolution=resolution,
                                                num_classes=num_classes, batch=batch),
                 {"seconds": seconds, "measured": time.time(), "source": "timed"})
    return seconds, False


def plan_batch(plan: Mapping[str, Any]) -> int:
    """The batch a plan's step is priced at: its largest expected denoising batch."""
    denoise = [p for p in plan["phases"] if p["kind"] == "denoise"] or plan["phases"]
    return max(1, int(round(max(p["expected_batch_size"] for p in denoise))))


def learn_from_run(folder: Path, device: str, overhead_seconds: float | None = None) -> dict[str, Any] | None:
    """Record what a run's steps took on this machine (``device`` as the engine resolved it) in the cache.

    ``overhead_seconds``: what the run spent besides its timed steps (loading the data, building the
    models, sample grids, checkpoints, the released model), for a run that went from start to end in one
    go; kept per recipe beside the step time, and added to the plans of that recipe and model. A 4-step
    run was priced at 2 s and took 20 s without it.

    The run's denoising-step time is the one that would have priced its trained steps exactly: its
    measured step seconds over its steps counted in denoising steps (``PHASE_COST_RATIO``). It replaces
    a missing, stale or disagreeing (by more than ``REFRESH_FRACTION``) entry; an agreeing one is kept and
    its age starts again. Returns the entry now cached, or None when the run has no timed step to learn from.
    """
    try:
        return _learn_from_run(folder, device, overhead_seconds)
    except (OSError, ValueError, KeyError, TypeError, RunError):  # a folder without what it takes: nothing to learn
        return None


def _learn_from_run(folder: Path, device: str, overhead_seconds: float | None) -> dict[str, Any] | None:
    from dpsad_core.training.config import TrainConfig
    from dpsad_core.training.engine import PHASE_COST_RATIO

    stored = RunConfigRecord.from_dict(json.loads((folder / "config.json").read_text(encoding="utf-8")),
                                       source=folder / "config.json")
    kinds = {p["name"]: p["kind"] for p in stored.phases}
    seconds = priced = 0.0
    with open(folder / "metrics.jsonl", encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            kind = kinds.get(record.get("phase"))
            if kind in PHASE_COST_RATIO and isinstance(record.get("seconds"), (int, float)):
                seconds += float(record["seconds"])
                priced += PHASE_COST_RATIO[kind]
    if priced == 0 or seconds <= 0:
        return None
    measured = seconds / priced
    hyper = TrainConfig.from_dict(stored.config).hyper
    channels, resolution, classes = stored.channels, stored.resolution, stored.num_classes
    if channels is None or resolution is None or classes is None:
        return None  # a dataset summary without the model's shape: nothing to learn
    machine = machine_key(device)
    model = model_key(hyper, channels=channels, resolution=resolution, num_classes=classes,
                      batch=plan_batch(stored.plan))
    now = time.time()
    machine_entries = _read_cache().get(machine)
    previous = _fresh_entry(machine_entries.get(model) if isinstance(machine_entries, dict) else None, now)
    entry = previous
    if entry is None or abs(measured - entry["seconds"]) > REFRESH_FRACTION * entry["seconds"]:
        entry = {"seconds": measured, "source": "run"}
    overheads = dict((previous or {}).get("overhead") or {})
    if overhead_seconds is not None and overhead_seconds >= 0:
        overheads[stored.recipe] = round(float(overhead_seconds), 2)
    entry = dict(entry, measured=now, **({"overhead": overheads} if overheads else {}))
    _write_entry(machine, model, entry)
    return entry


def _age_text(entry: dict[str, Any] | None) -> str:
    """``measured just now``, ``timed 3 h ago``, ``from a run 20 min ago``: where a cached step time came from."""
    if entry is None:
        return "measured just now"
    minutes = max(0, int((time.time() - entry["measured"]) // 60))
    age = "under a minute" if minutes == 0 else f"{minutes} min" if minutes < 60 else f"{minutes // 60} h"
    return f"{'from a run' if entry.get('source') == 'run' else 'timed'} {age} ago"


def estimate_plan_seconds(plan: dict[str, Any], steps: dict[str, int], hyper: Hyperparameters, *, channels: int,
                          resolution: int, num_classes: int, device: str, measure: bool = True) -> dict[str, Any]:
    """Seconds for the plan (``TrainingPlan.to_dict()``, steps per phase after --max-steps), per phase, and its basis.

    Returns ``{"seconds", "phases": {phase name: seconds}, "step_seconds", "source", "age_seconds", "basis"}``
    (``source``: "timed" or "run", what measured the step time ``age_seconds`` ago). With ``measure=False``
    nothing is timed: without a fresh cached step, ``seconds`` is None (the workbench then times the step in
    its helper process, after showing the plan).
    """
    from dpsad_core.devices import resolve_device
    from dpsad_core.training.engine import PHASE_COST_RATIO

    device = resolve_device(device)
    batch = plan_batch(plan)
    shape: dict[str, Any] = {"channels": channels, "resolution": resolution, "num_classes": num_classes,
                             "device": device}
    entry = cached_step(hyper, batch=batch, **shape)
    if entry is not None:
        step = float(entry["seconds"])
    elif measure:
        step, _ = denoise_step_seconds(hyper, batch=batch, **shape)
    else:
        return {"seconds": None, "phases": {}, "step_seconds": None,
                "basis": "no recent measurement of this model on this machine"}
    phases = {p["name"]: steps.get(p["name"], p["steps"]) * step * PHASE_COST_RATIO.get(p["kind"], 1.0)
              for p in plan["phases"]}
    overhead = ((entry or {}).get("overhead") or {}).get(plan.get("recipe"))
    overhead = float(overhead) if isinstance(overhead, (int, float)) else None
    when = _age_text(entry)
    origin = {"source": "timed", "age_seconds": 0.0} if entry is None else {
        "source": entry.get("source", "timed"), "age_seconds": max(0.0, time.time() - entry["measured"])}
    rest = ("samples and checkpoints add a little" if overhead is None else
            f"plus {overhead:.0f} s to load the data, build the models, draw samples and save (from a run)")
    return {"seconds": sum(phases.values()) + (overhead or 0.0), "phases": phases, "step_seconds": step,
            "overhead_seconds": overhead, **origin,
            "basis": f"one step of this model at a batch of {batch}, measured on this machine's {device} ({when}): "
                     f"{step:.2f} s per denoising step; {rest}"}
