"""Training screen without training: what it shows for a given sequence of events and states (fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QMessageBox

from dpsad_core.events import PhaseStarted, RunFinished, RunStarted, SampleGrid, StepCompleted


def finished_run(screen, run_id: str = "run-old") -> None:
    """Feed the screen the events of a finished two-step run."""
    plan = {"recipe": "dpdm", "epsilon_target": 8.0}
    screen.on_event(RunStarted(run_id=run_id, run_dir=Path("/nowhere"), resumed=False, plan=plan))
    screen.on_event(PhaseStarted(phase="teacher", total_steps=2, start_step=0, privacy="dp"))
    for step in (1, 2):
        screen.on_event(StepCompleted(phase="teacher", step=step, total_steps=2, losses={"teacher_loss": 1.0 / step},
                                      epsilon_spent=3.0 * step, epsilon_target=8.0, seconds=0.1, eta_seconds=0.1))
    screen.on_event(SampleGrid(phase="teacher", step=2, path=Path("/nowhere"), image=np.zeros((8, 8), np.uint8)))
    result = {"epsilon": 6.32, "delta": 1e-5, "epsilon_target": 8.0, "private": True,
              "accountant_values": {"rdp": 6.5, "prv": 6.32}}
    screen.on_event(RunFinished(run_id=run_id, result=result))
    screen.redraw()


def test_a_failed_start_does_not_show_the_previous_run(window, qtbot):
    screen = window.training
    finished_run(screen)
    assert "run-old" in screen.title.text() and "Finished" in screen.epsilon_note.text()
    window.new_run.select_data("no-such-dataset")
    window.new_run.start_button.click()
    qtbot.waitUntil(lambda: window.controller.state == "failed", timeout=60_000)
    for box in window.findChildren(QMessageBox):
        box.close()
    assert "run-old" not in screen.title.text()
    assert screen.epsilon_note.text() == "" and "Failed" in screen.state_label.text()
    assert screen.epsilon_y == [] and screen.losses == {} and not screen.samples.has_image()
    assert screen.progress.value() == 0 and screen.eta_label.text() == "time left: -"
