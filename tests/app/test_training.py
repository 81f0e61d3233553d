"""Training through the window: live plots, sample grid, pause/resume, cancel, close during a run."""

from __future__ import annotations

import json

import pytest

from dpsad_core.events import (
    CheckpointWritten,
    PhaseStarted,
    RunFinished,
    RunInterrupted,
    RunStarted,
    SampleGrid,
    StepCompleted,
)

pytestmark = pytest.mark.slow


def tiny_form(window, *, max_steps: int = 2, epsilon: float = 8.0) -> None:
    screen = window.new_run
    screen.select_data("demo")
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpsad-split"))
    screen.preset.setCurrentIndex(screen.preset.findData("tiny"))
    screen.epsilon.setValue(epsilon)
    screen.max_steps.setValue(max_steps)


def wait_state(qtbot, controller, state: str, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: controller.state == state, timeout=timeout)


def test_a_tiny_run_plots_losses_and_epsilon_and_shows_samples(window, qtbot):
    tiny_form(window, max_steps=2)
    events = []
    window.controller.run_event.connect(events.append)
    states = []
    window.controller.state_changed.connect(states.append)
    window.new_run.start_button.click()
    assert window.current_screen() == "training"
    wait_state(qtbot, window.controller, "finished")
    qtbot.waitUntil(lambda: not window.training._dirty, timeout=5_000)  # the timer pushed the last points
    kinds = [type(e) for e in events]
    # The order the engine promises, relayed unchanged through the worker thread.
    assert kinds[0] is RunStarted and kinds[1] is PhaseStarted and kinds[-1] is RunFinished
    assert kinds.count(StepCompleted) == 4 and SampleGrid in kinds and CheckpointWritten in kinds
    assert states == ["starting", "running", "finished"]
    screen = window.training
    assert set(screen.losses) == {"teacher_loss", "student_loss", "student_distillation_loss",
                                  "student_adversarial_loss", "disc_loss"}
    assert len(screen.losses["teacher_loss"][1]) == 2 and len(screen.losses["student_loss"][1]) == 2
    spent = screen.epsilon_y
    assert len(spent) == 4 and spent == sorted(spent) and spent[0] > 0  # epsilon rises with every step
    assert spent[-1] <= 8.0
    curve_x, curve_y = screen.epsilon_curve.getData()
    assert list(curve_y) == spent  # the plot shows what the events carried
    assert screen._curves["teacher_loss"].getData()[1] is not None
    assert screen.samples.has_image()
    assert screen.target_line.value() == 8.0
    result = events[-1].result
    from dpsad_workbench.core import format_epsilon

    note = screen.epsilon_note.text()
    assert f"({format_epsilon(result['epsilon'])}, 1e-05)-differentially private" in note
    assert f"PRV {format_epsilon(result['accountant_values']['prv'])}" in note
    window.show_screen("runs")
    assert window.runs.runs[0]["run_id"] == result["run_id"] and window.runs.runs[0]["state"] == "finished"


def test_pause_resume_then_cancel_ends_the_run(window, qtbot, workspace):
    from dpsad_core.training import RunFolder

    tiny_form(window, max_steps=0)  # all planned steps: 4 teacher + 4 student in the tiny preset
    controller = window.controller
    paused = []

    def pause_after_first_step(event):
        if isinstance(event, StepCompleted) and not paused:
            paused.append(event.epsilon_spent)
            controller.pause()

    controller.run_event.connect(pause_after_first_step)
    window.new_run.start_button.click()
    wait_state(qtbot, controller, "paused")
    controller.run_event.disconnect(pause_after_first_step)
    run = RunFolder.open(workspace, controller.run_id)
    assert run.status()["state"] == "interrupted" and run.checkpoint_path.is_file()
    steps_before = len(window.training.epsilon_y)
    assert window.training.resume_button.isEnabled() and not window.training.pause_button.isEnabled()

    # Resume, then cancel after the next step.
    def cancel_after_a_step(event):
        if isinstance(event, StepCompleted):
            controller.cancel()

    started = []
    controller.run_event.connect(lambda e: started.append(e) if isinstance(e, RunStarted) else None)
    controller.run_event.connect(cancel_after_a_step)
    window.training.resume_button.click()
    wait_state(qtbot, controller, "cancelled")
    controller.run_event.disconnect(cancel_after_a_step)
    assert started and started[0].resumed
    # The plot continues the run's history instead of starting again at step 1.
    assert len(window.training.epsilon_y) > steps_before
    assert window.training.epsilon_y == sorted(window.training.epsilon_y)
    assert run.status()["state"] == "cancelled"

    # Cancel ended the run: the Runs screen no longer offers to resume it (Pause is the resumable stop).
    window.show_screen("runs")
    window.runs.select(controller.run_id)
    assert window.runs.selected_run()["state"] == "cancelled"
    assert not window.runs.resume_button.isEnabled() and not window.training.resume_button.isEnabled()
    privacy = json.loads((run.path / "privacy.json").read_text())
    # Every step plotted was counted once by the accountant, across the pause and the resume.
    counted = sum(m["steps"] for m in privacy["accountant"]["mechanisms"])
    assert counted == len(window.training.epsilon_y)


def test_closing_during_training_asks_and_writes_a_checkpoint(window, qtbot, answers, workspace):
    from dpsad_core.training import RunFolder

    tiny_form(window, max_steps=0)
    controller = window.controller
    seen = []
    controller.run_event.connect(seen.append)
    window.new_run.start_button.click()
    qtbot.waitUntil(lambda: any(isinstance(e, StepCompleted) for e in seen), timeout=120_000)
    answers["answers"].append(False)
    window.close()
    assert window.isVisible() and controller.is_active  # "No" keeps the window and the run
    answers["answers"].append(True)
    window.close()
    assert not window.isVisible()
    assert answers["questions"] == ["Training in progress", "Training in progress"]
    qtbot.waitUntil(lambda: controller.state == "interrupted", timeout=30_000)
    run = RunFolder.open(workspace, controller.run_id)
    status = run.status()
    assert status["state"] == "interrupted" and run.checkpoint_path.is_file()
    assert any(isinstance(e, RunInterrupted) for e in seen)


def test_a_core_error_during_training_becomes_a_dialog(window, qtbot):
    from PySide6.QtWidgets import QMessageBox

    screen = window.new_run
    screen.select_data("no-such-dataset")
    with qtbot.waitSignal(window.error_shown, timeout=60_000) as blocker:
        screen.start_button.click()
    text = blocker.args[0]
    assert "no-such-dataset" in text and "What to do:" in text
    assert window.controller.state == "failed"
    for box in window.findChildren(QMessageBox):
        box.close()
