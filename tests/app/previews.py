"""New run previews answered in a thread with a fixed plan, instead of the helper process (fast GUI tests).

``answer_previews(window, monkeypatch)`` makes the screen's plan previews return :func:`fake_plan` (its
``budget`` from ``budget``) and its step timings :func:`fake_measure`.
"""

from __future__ import annotations

from typing import Any

STEPS = {"tiny": 4, "quick": 400, "standard": 2000}  # the planned steps of the one phase, per preset
STEP_SECONDS = 0.9


def fake_plan(config, *, workspace, budget: dict[str, Any] | None = None,
              all_gpus: bool = False) -> dict[str, Any]:  # the real one reads them
    steps = STEPS[config.preset] if config.max_steps is None else min(STEPS[config.preset], config.max_steps)
    phase = {"name": "denoiser", "kind": "denoise", "privacy": "dp", "data": "private", "steps": STEPS[config.preset],
             "expected_batch_size": 64.0, "sample_rate": 0.04, "noise_multiplier": 1.2, "disc_private": False}
    return {"plan": {"phases": [phase], "planned_epsilon": {"certified": 9.9, "rdp": 9.9}, "epsilon_target": 10.0,
                     "delta": 1e-5},
            "dataset": {"name": config.data, "num_records": 1500, "num_privacy_units": 1500, "unit": "image",
                        "num_classes": 10, "resolution": 8, "channels": 1},
            "steps": {"denoiser": steps}, "warnings": [], "raw_warnings": [], "private": True,
            "estimate": {"seconds": None, "basis": "no earlier run with this preset and image size on this machine"},
            "budget": budget, "budget_error": None}


def fake_measure(*, plan, steps, **shape) -> dict[str, Any]:
    phases = {name: count * STEP_SECONDS for name, count in steps.items()}
    return {"seconds": sum(phases.values()), "phases": phases, "basis": "one step of this model, measured"}


def answer_previews(window, monkeypatch, *, budget: dict[str, Any] | None = None):
    """The window's New run screen, its previews answered in a thread; automatic previews are off."""
    from dpsad_workbench.screens import new_run
    from dpsad_workbench.worker import GeneratorWorker

    targets = {"dpsad_workbench.core:plan_preview": lambda *a, **k: fake_plan(*a, budget=budget, **k),
               "dpsad_workbench.core:measure_plan_seconds": fake_measure}

    def in_thread(target, *args, parent=None, **kwargs):
        return GeneratorWorker(lambda stop: iter([targets[target](*args, **kwargs)]), parent=parent)

    monkeypatch.setattr(new_run, "call_in_worker", in_thread)
    window.new_run.stop_previews()  # only the previews the test asks for
    return window.new_run
