"""New run: each preset's name says what it costs at this data's size once estimated (issue 18, item 3).

The helper process is replaced by a thread that answers with a fixed plan and a fixed measured step
time, so the test is about the screen, not about calibration or timing (those have their own tests).
"""

from __future__ import annotations

import pytest

STEPS = {"tiny": 4, "quick": 400, "standard": 2000}  # the planned steps of the one phase, per preset
STEP_SECONDS = 0.9


def fake_plan(config, *, workspace):  # noqa: ARG001 - the real one reads the workspace
    steps = STEPS[config.preset] if config.max_steps is None else min(STEPS[config.preset], config.max_steps)
    phase = {"name": "denoiser", "kind": "denoise", "privacy": "dp", "data": "private", "steps": STEPS[config.preset],
             "expected_batch_size": 64.0, "sample_rate": 0.04, "noise_multiplier": 1.2, "disc_private": False}
    return {"plan": {"phases": [phase], "planned_epsilon": {"certified": 9.9, "rdp": 9.9}, "epsilon_target": 10.0,
                     "delta": 1e-5},
            "dataset": {"name": config.data, "num_records": 1500, "num_privacy_units": 1500, "unit": "image",
                        "num_classes": 10, "resolution": 8, "channels": 1},
            "steps": {"denoiser": steps}, "warnings": [], "raw_warnings": [], "private": True,
            "estimate": {"seconds": None, "basis": "no earlier run with this preset and image size on this machine"},
            "budget": None, "budget_error": None, "ledger": True}


def fake_measure(*, plan, steps, **shape):  # noqa: ARG001
    phases = {name: count * STEP_SECONDS for name, count in steps.items()}
    return {"seconds": sum(phases.values()), "phases": phases, "basis": "one step of this model, measured"}


@pytest.fixture
def screen(window, monkeypatch):
    """The New run screen, its previews answered in a thread by ``fake_plan`` and ``fake_measure``."""
    from dpsad_workbench.screens import new_run
    from dpsad_workbench.worker import GeneratorWorker

    targets = {"dpsad_workbench.core:plan_preview": fake_plan, "dpsad_workbench.core:measure_plan_seconds": fake_measure}

    def in_thread(target, *args, parent=None, **kwargs):
        return GeneratorWorker(lambda stop: iter([targets[target](*args, **kwargs)]), parent=parent)  # noqa: ARG005

    monkeypatch.setattr(new_run, "call_in_worker", in_thread)
    window.new_run.stop_previews()  # only the previews this test asks for
    return window.new_run


def labels(screen) -> dict[str, str]:
    return {screen.preset.itemData(i): screen.preset.itemText(i) for i in range(screen.preset.count())}


def preview(qtbot, screen, preset: str) -> None:
    screen.preset.setCurrentIndex(screen.preset.findData(preset))
    with qtbot.waitSignal(screen.estimate_ready, timeout=10_000):
        screen.update_preview()


def test_a_preset_is_named_with_its_time_here_once_estimated(screen, qtbot):
    from dpsad_workbench.screens.new_run import PRESETS

    screen.select_data("demo")
    assert labels(screen) == PRESETS  # nothing estimated yet: no time is claimed
    assert not any("min" in label or "second" in label for label in PRESETS.values())
    preview(qtbot, screen, "quick")
    assert labels(screen) == dict(PRESETS, quick="quick - about 6 min 00 s here")  # 400 steps of 0.9 s
    assert screen.preset.currentText() == "quick - about 6 min 00 s here"
    preview(qtbot, screen, "tiny")
    assert labels(screen) == dict(PRESETS, quick="quick - about 6 min 00 s here", tiny="tiny - about 4 s here")
    # The plan says what each part will take.
    assert "<th>time</th>" in screen.plan_text.text() and "about 4 s</td>" in screen.plan_text.text()

    # Other data (or fewer steps) is another cost: the names are neutral again until it is estimated...
    screen.max_steps.setValue(100)
    screen.update_preview()
    assert labels(screen) == PRESETS
    with qtbot.waitSignal(screen.estimate_ready, timeout=10_000):
        pass
    assert labels(screen)["tiny"] == "tiny - about 4 s here" and labels(screen)["quick"] == PRESETS["quick"]
    # ... and coming back shows what was estimated for it.
    screen.max_steps.setValue(0)
    screen.update_preview()
    assert labels(screen)["quick"] == "quick - about 6 min 00 s here"
    with qtbot.waitSignal(screen.estimate_ready, timeout=10_000):
        pass
