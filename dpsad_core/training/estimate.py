"""Time estimates from a measured step of the run's own model, resolution and batch.

Used by the workbench's New run screen and by ``train --plan``: one DP denoising step of the
plan's network at its expected batch is timed on this machine (a warm-up step, then the median of
``TIMED_STEPS``), and a student + discriminator step is taken as ``DISTILL_COST_RATIO`` denoising steps
(bench/step_time.py). Measurements are cached per machine and model shape in the cache folder, so a
plan is timed once, not at every preview or start of the app. No Qt here.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import TYPE_CHECKING, Any

from dpsad_core.atomic import atomic_write_json
from dpsad_core.paths import cache_dir

if TYPE_CHECKING:
    from dpsad_core.training.config import Hyperparameters

CACHE_FILE = "step-times.json"
TIMED_STEPS = 3


def machine_key(device: str) -> str:
    """What makes a step time valid on this machine: host, processor, cores, torch threads, device."""
    import torch

    name = device
    if device.startswith("cuda") and torch.cuda.is_available():
        name = f"{device}:{torch.cuda.get_device_name(torch.device(device))}"
    return "|".join((platform.node(), platform.machine(), str(os.cpu_count()), str(torch.get_num_threads()), name))


def model_key(hyper: Hyperparameters, *, channels: int, resolution: int, num_classes: int, batch: int) -> str:
    """The model shape and batch a step time was measured for (the preset's network, not its name)."""
    parts = (hyper.channels, hyper.blocks_per_level, hyper.attention_levels, hyper.noise_multiplicity,
             hyper.microbatch_size, channels, resolution, num_classes, batch)
    return "|".join(str(part) for part in parts)


def _read_cache() -> dict[str, Any]:
    try:
        cached = json.loads((cache_dir() / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def measure_denoise_step(hyper: Hyperparameters, *, channels: int, resolution: int, num_classes: int,
                         device: str, batch: int) -> float:
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
                          clip_norm=hyper.teacher_clip_norm)
    randomness = SecretRandomness.fresh()  # the same secure noise a run draws, so it is timed too
    loss_generator = torch.Generator(device=device).manual_seed(0)
    times = []
    for _ in range(1 + TIMED_STEPS):  # the first step pays one-time costs (allocations, vmap tracing)
        began = time.perf_counter()
        drawn = draw_batch(data, sample_rate=0.5, schedule=schedule, multiplicity=hyper.noise_multiplicity,
                           label_dropout=hyper.label_dropout, null_label=num_classes,
                           sampling=randomness.stream("sampling"), loss_generator=loss_generator)
        denoise_step(model, optimizer, drawn, mechanism=mechanism, expected_batch_size=float(batch),
                     microbatch_size=hyper.microbatch_size, stream=randomness.stream("noise"))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def denoise_step_seconds(hyper: Hyperparameters, *, channels: int, resolution: int, num_classes: int,
                         device: str, batch: int) -> tuple[float, bool]:
    """``(seconds per denoising step, whether it came from the cache)``; measures and caches on a miss."""
    machine = machine_key(device)
    model = model_key(hyper, channels=channels, resolution=resolution, num_classes=num_classes, batch=batch)
    cached = _read_cache()
    seconds = cached.get(machine, {}).get(model)
    if isinstance(seconds, (int, float)) and seconds > 0:
        return float(seconds), True
    seconds = measure_denoise_step(hyper, channels=channels, resolution=resolution, num_classes=num_classes,
                                   device=device, batch=batch)
    cached = _read_cache()  # another process may have written meanwhile: keep its entries
    cached.setdefault(machine, {})[model] = seconds
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache_dir() / CACHE_FILE, cached)
    except OSError:
        pass  # a read-only cache only costs a measurement next time
    return seconds, False


def estimate_plan_seconds(plan: dict[str, Any], steps: dict[str, int], hyper: Hyperparameters, *, channels: int,
                          resolution: int, num_classes: int, device: str) -> dict[str, Any]:
    """Seconds for the plan (``TrainingPlan.to_dict()``, steps per phase after --max-steps), per phase, and its basis.

    Returns ``{"seconds", "phases": {phase name: seconds}, "step_seconds", "basis"}``.
    """
    from dpsad_core.devices import resolve_device
    from dpsad_core.training.engine import PHASE_COST_RATIO

    device = resolve_device(device)
    denoise = [p for p in plan["phases"] if p["kind"] == "denoise"] or plan["phases"]
    batch = max(1, int(round(max(p["expected_batch_size"] for p in denoise))))
    step, cached = denoise_step_seconds(hyper, channels=channels, resolution=resolution, num_classes=num_classes,
                                        device=device, batch=batch)
    phases = {p["name"]: steps.get(p["name"], p["steps"]) * step * PHASE_COST_RATIO.get(p["kind"], 1.0)
              for p in plan["phases"]}
    when = "an earlier measurement" if cached else "measured just now"
    return {"seconds": sum(phases.values()), "phases": phases, "step_seconds": step,
            "basis": f"one step of this model at a batch of {batch}, measured on this machine's {device} ({when}): "
                     f"{step:.2f} s per denoising step; samples and checkpoints add a little"}
