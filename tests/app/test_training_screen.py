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
    result = {"run_id": run_id, "recipe": "dpdm", "epsilon": 6.32, "delta": 1e-5, "epsilon_target": 8.0,
              "private": True, "accountant_values": {"rdp": 6.5, "prv": 6.32}}
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


def two_phase_run(screen, run_dir: Path) -> None:
    """A teacher and a student phase of two steps each, with a 2-class sample grid."""
    import json

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"dataset": {"class_counts": {"normal": 60, "pneumonia": 40}}}))
    screen.on_event(RunStarted(run_id="run-x", run_dir=run_dir, resumed=False,
                               plan={"recipe": "dpsad-split", "epsilon_target": 8.0}))
    spent = 3.5
    for phase, loss in (("teacher", "teacher_loss"), ("student", "student_loss")):
        screen.on_event(PhaseStarted(phase=phase, total_steps=2, start_step=0, privacy="dp"))
        for step in (1, 2):
            spent += 0.5
            screen.on_event(StepCompleted(phase=phase, step=step, total_steps=2, losses={loss: 1.0},
                                          epsilon_spent=spent, epsilon_target=8.0, seconds=0.1, eta_seconds=1.0))
    grid = np.zeros((2 * 34 + 2, 4 * 34 + 2), np.uint8)  # the core's grid: one 34-pixel row per class
    screen.on_event(SampleGrid(phase="student", step=2, path=run_dir / "latest.png", image=grid))
    screen.redraw()


def test_plots_count_whole_steps_per_phase_from_an_epsilon_of_0_with_labelled_axes(window, tmp_path):
    screen = window.training
    two_phase_run(screen, tmp_path / "run-x")
    # The student's steps are numbered 1 and 2 again, as the progress bar shows them.
    assert screen.progress.value() == 2 and screen.progress.maximum() == 2
    xs = screen.epsilon_x
    assert screen.epsilon_axis.tickStrings(xs, 1.0, 1.0) == ["1", "2", "1", "2"]
    for spacing, values in screen.epsilon_axis.tickValues(0.0, 4.5, 600):
        assert spacing >= 1 and all(float(v).is_integer() for v in values)
    assert screen.epsilon_plot.getViewBox().viewRange()[1][0] == 0.0  # not 3.5, where the curve starts
    for plot, words in ((screen.loss_plot, "loss"), (screen.epsilon_plot, "epsilon spent")):
        assert words in plot.getAxis("left").labelText
        assert "step within the phase" in plot.getAxis("bottom").labelText


def test_the_sample_grid_names_the_class_of_each_row(window, tmp_path):
    screen = window.training
    two_phase_run(screen, tmp_path / "run-x")
    assert screen.class_names == ["normal", "pneumonia"]
    shown = screen.samples._source
    assert shown.width() > 4 * 34 + 2  # a margin for the names
    assert "class names beside their rows" in screen.samples_caption.text()


def test_label_rows_writes_each_name_beside_its_row():
    from dpsad_workbench.core import label_rows

    grid = np.full((2 * 34 + 2, 70), 255, np.uint8)
    labelled = label_rows(grid, ["normal", "pneumonia"])
    margin = labelled[:, : labelled.shape[1] - grid.shape[1]]
    for row in range(2):  # ink in the margin beside both rows
        assert margin[row * 35 + 5: row * 35 + 30].min() < 128
    assert label_rows(grid, ["a", "b", "c", "d", "e", "f", "g", "h"]) is grid  # rows too small: unchanged


def test_the_loss_axis_shows_the_losses_as_they_are_not_in_thousandths(window, qtbot):
    """Found in the walk-through: losses of 0.92-0.995 read "995 ... 920" under "loss ... (x0.001)"."""
    screen = window.training
    plan = {"recipe": "dpdm", "epsilon_target": 8.0}
    screen.on_event(RunStarted(run_id="run-l", run_dir=Path("/nowhere"), resumed=False, plan=plan))
    screen.on_event(PhaseStarted(phase="denoiser", total_steps=4, start_step=0, privacy="dp"))
    for step, loss in enumerate((0.995, 0.98, 0.94, 0.92), start=1):
        screen.on_event(StepCompleted(phase="denoiser", step=step, total_steps=4, losses={"denoiser_loss": loss},
                                      epsilon_spent=step, epsilon_target=8.0, seconds=0.1, eta_seconds=0.1))
    screen.redraw()
    axis = screen.loss_plot.getAxis("left")
    qtbot.waitUntil(lambda: screen.loss_plot.getViewBox().viewRange()[1][1] < 1.1, timeout=5_000)
    screen.loss_plot.getViewBox().updateAutoRange()
    axis.linkedViewChanged(screen.loss_plot.getViewBox())
    assert "x0.001" not in axis.labelString()
    assert screen.epsilon_plot.getAxis("left").autoSIPrefix is False  # an epsilon of 0.03 reads 0.03 too
    assert any("0.9" in text for text in axis.tickStrings([0.92, 0.94, 0.96], axis.scale, 0.02))


def test_a_long_loss_legend_wraps_instead_of_widening_the_screen(window):
    """Found on the screenshots: five losses on one line pushed Cancel run and the time left off the window."""
    screen = window.training
    screen.on_event(RunStarted(run_id="run-w", run_dir=Path("/nowhere"), resumed=False,
                               plan={"recipe": "dpsad-public-teacher", "epsilon_target": 8.0}))
    screen.on_event(PhaseStarted(phase="student", total_steps=2, start_step=0, privacy="dp"))
    losses = {key: 0.5 for key in ("teacher_loss", "student_loss", "student_distillation_loss",
                                   "student_adversarial_loss", "disc_loss")}
    screen.on_event(StepCompleted(phase="student", step=1, total_steps=2, losses=losses, epsilon_spent=1.0,
                                  epsilon_target=8.0, seconds=0.1, eta_seconds=0.1))
    screen.redraw()
    assert "discriminator" in screen.loss_legend.text()
    assert screen.loss_legend.minimumSizeHint().width() < 300
