"""How long a planned run will take, for ``train --plan``: the estimator the workbench's New run screen uses.

One DP step of the plan's own model, resolution and batch is timed on this machine on random data
(:mod:`dpsad_core.training.estimate`, cached per machine and model, so a second plan costs nothing), and
each phase's steps are priced at it. Not a command: ``train --plan`` (commands/train.py) calls it while printing a plan.
"""

from __future__ import annotations

import math
from typing import Any


def plan_time(config, dataset, plan) -> dict[str, Any]:
    """``{"seconds", "phases": {name: seconds}, "steps": {name: steps run}, "step_seconds", "basis"}``.

    ``seconds`` is None when a step cannot be timed.

    The steps are those the run will take (``--max-steps`` cuts every phase). A step that cannot be
    timed (the device runs out of memory, say) leaves the plan printable: the reason replaces the time.
    """
    from dpsad_core.training.estimate import estimate_plan_seconds

    steps = {p.name: p.steps if config.max_steps is None else min(p.steps, config.max_steps) for p in plan.phases}
    try:
        estimate = estimate_plan_seconds(plan.to_dict(), steps, config.hyper, channels=dataset.channels,
                                         resolution=dataset.resolution, num_classes=dataset.num_classes,
                                         device=config.device)
    except RuntimeError as error:  # torch's own failures (out of memory, a broken device) are RuntimeErrors
        estimate = {"seconds": None, "phases": {}, "step_seconds": None,
                    "basis": f"could not time one step on this machine ({str(error).splitlines()[0]})"}
    return estimate | {"steps": steps}


def format_duration(seconds: float | None) -> str:
    """``45 s``, ``5 min 03 s``, ``2 h 21 min``: the CLI's and the workbench's (Qt- and torch-free)."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def phase_time_text(estimate: dict[str, Any], phase) -> str:
    """``, about 3 min 10 s`` for a phase line of the plan, after the steps it will run if --max-steps cuts it."""
    seconds = estimate.get("phases", {}).get(phase.name)
    run = estimate.get("steps", {}).get(phase.name, phase.steps)
    cut = f", {run} of them run (--max-steps)" if run != phase.steps else ""
    return cut + ("" if seconds is None else f", about {format_duration(seconds)}")


def total_time_text(estimate: dict[str, Any]) -> str:
    """The plan's closing time line."""
    if estimate["seconds"] is None:
        return f"estimated time: unknown: {estimate['basis']}"
    return f"estimated time: about {format_duration(estimate['seconds'])} in all ({estimate['basis']})"
