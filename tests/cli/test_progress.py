"""The one terminal view of every command's events (dpsad_core/commands/progress.py; issue 14 item 3)."""

from __future__ import annotations

from pathlib import Path

from dpsad_core.commands.progress import PLAIN_LINE_SECONDS, resume_hint, show_progress
from dpsad_core.evaluation.report import EvaluationStage
from dpsad_core.events import (
    ExportFinished,
    ExportProgress,
    ExportStarted,
    PhaseStarted,
    RunFinished,
    RunInterrupted,
    RunStarted,
    StepCompleted,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _step(step: int, total: int = 100) -> StepCompleted:
    return StepCompleted(phase="denoiser", step=step, total_steps=total, losses={"denoiser_loss": 0.5},
                         epsilon_spent=1.25, epsilon_target=10.0, seconds=1.0, eta_seconds=120.0)


def test_every_event_is_relayed_in_order(capsys):
    events = [RunStarted(run_id="r1", run_dir=Path("/w/runs/r1"), resumed=False, plan={"warnings": ["few records"]}),
              PhaseStarted(phase="denoiser", total_steps=2, start_step=0, privacy="dp"),
              _step(1, 2), _step(2, 2), RunFinished(run_id="r1", result={"epsilon": 1.0})]
    assert list(show_progress(iter(events))) == events
    err = capsys.readouterr().err
    assert "started run r1 in /w/runs/r1" in err
    assert "warning: few records" in err


def test_off_a_terminal_one_line_per_interval_and_one_at_the_end_of_a_phase(capsys):
    clock = FakeClock()
    events = show_progress(iter([PhaseStarted(phase="denoiser", total_steps=100, start_step=0, privacy="dp")]
                                + [_step(step) for step in range(1, 101)]), clock=clock)
    next(events)  # the phase
    for _ in range(99):
        next(events)
        clock.now += PLAIN_LINE_SECONDS / 10  # ten steps per interval
    next(events)
    lines = [line for line in capsys.readouterr().err.splitlines() if " step " in line]
    # The first step, one per ten steps after it, and the last step of the phase.
    assert len(lines) == 11
    assert lines[0] == "denoiser step 1/100: loss 0.5000 eps 1.25/10, about 2.0 min left"
    assert lines[-1].startswith("denoiser step 100/100:")


def test_a_stopped_run_prints_the_commands_own_next_step(capsys):
    stop = RunInterrupted(run_id="r2", phase="teacher", step=7, message="stopped by request")
    list(show_progress(iter([stop])))
    expected = "run r2 stopped at teacher step 7; resume with: dpsad-core train --resume r2"
    assert capsys.readouterr().err.strip() == expected
    assert resume_hint(stop).endswith("dpsad-core train --resume r2")
    list(show_progress(iter([stop]), interrupted=lambda event: event.message))
    assert capsys.readouterr().err.strip() == "stopped by request"


def test_export_and_evaluation_progress(capsys, tmp_path):
    events = [ExportStarted(run_id="r3", total_images=20, private=False, partial_path=tmp_path / "partial"),
              ExportProgress(stage="sampling", done=10, total=20), ExportProgress(stage="sampling", done=20, total=20),
              ExportFinished(bundle_path=tmp_path / "bundle", summary={}),
              EvaluationStage("downstream", 3, 5, "training a CNN")]
    assert list(show_progress(iter(events))) == events
    err = capsys.readouterr().err
    assert "exporting 20 images from run r3" in err
    assert "NOT differentially private" in err
    assert "sampling: 20/20" in err
    assert "[3/5] training a CNN" in err
