"""Training screen: live loss and epsilon plots, the latest sample grid, progress, pause/resume/cancel.

Events arrive at every step, but the plots redraw on a timer (``REDRAW_HZ``), never per event: the
slots only append numbers to lists, which keeps the event loop free however fast the steps come.
"""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from dpsad_core.commands.plan_time import format_duration
from dpsad_core.runs.records import RunResult
from dpsad_workbench.core import format_epsilon
from dpsad_workbench.images import ImageLabel
from dpsad_workbench.time_left import TimeLeft
from dpsad_workbench.training import (
    ACTIVE_STATES,
    CANCELLED,
    CANCELLING,
    FAILED,
    FINISHED,
    IDLE,
    INTERRUPTED,
    PAUSED,
    PAUSING,
    RUNNING,
    STARTING,
    TrainingController,
)
from dpsad_workbench.widgets import WrapLabel

REDRAW_HZ = 15
LOSS_LABELS = {
    "teacher_loss": "teacher (denoising)",
    "denoiser_loss": "DPDM model (denoising)",
    "pretrain_loss": "public pre-training",
    "student_loss": "student (total)",
    "student_distillation_loss": "student: distillation term",
    "student_adversarial_loss": "student: adversarial term",
    "disc_loss": "discriminator",
}
LOSS_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
STATE_TEXT = {
    IDLE: "No run yet: start one on the New run screen, or resume one on the Runs screen.",
    STARTING: "Loading the data and building the models...",
    RUNNING: "Training.",
    PAUSING: "Pausing: finishing this step and writing a checkpoint...",
    PAUSED: "Paused. A checkpoint is written; Resume continues from it.",
    CANCELLING: "Cancelling: finishing this step...",
    CANCELLED: "Cancelled: the run has ended. The privacy it spent stays counted on its dataset.",
    FINISHED: "Finished. The released model and its privacy report are in the run folder.",
    FAILED: "Failed: see the message. The last checkpoint is kept.",
    INTERRUPTED: "Stopped. Resume continues from the last checkpoint.",
}


class PhaseStepAxis(pg.AxisItem):
    """The step axis: whole steps only, numbered within each phase as the progress bar counts them.

    The curves run on one continuous x (so a phase follows the one before it); ``phase_starts``
    maps each phase's first x back to step 1 of that phase.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.phase_starts: list[tuple[float, str]] = []  # (x of the phase's step 0, phase name), in order

    def tickSpacing(self, minVal, maxVal, size):
        levels = super().tickSpacing(minVal, maxVal, size)
        return [(max(1.0, round(spacing)), offset) for spacing, offset in levels]  # no fractional steps

    def tickValues(self, minVal, maxVal, size):
        return [(spacing, [v for v in values if float(v).is_integer()])
                for spacing, values in super().tickValues(minVal, maxVal, size)]

    def tickStrings(self, values, scale, spacing):
        return [str(int(round(self.phase_step(v)))) for v in values]

    def phase_step(self, x: float) -> float:
        start = 0.0
        for begin, _name in self.phase_starts:
            if x > begin:
                start = begin
        return x - start


class TrainingScreen(QWidget):
    """Observes a :class:`TrainingController`; buttons call its pause/resume/cancel."""

    redrawn = Signal()

    def __init__(self, controller: TrainingController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.losses: dict[str, tuple[list[float], list[float]]] = {}
        self.epsilon_x: list[float] = []
        self.epsilon_y: list[float] = []
        self.epsilon_target: float | None = None
        self.step_index = 0
        self.class_names: list[str] = []
        self._phase_offsets: dict[str, float] = {}
        self._phase_lines: list[Any] = []
        self._dirty = False
        self._curves: dict[str, Any] = {}
        self._legend: list[str] = []
        self.time_left = TimeLeft()  # the engine's time left, steadied (app/time_left.py)
        self._build()
        controller.run_event.connect(self.on_event)
        controller.state_changed.connect(self.on_state)
        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / REDRAW_HZ))
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        self.on_state(controller.state)

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        pg.setConfigOptions(antialias=True, background="w", foreground="#333")
        layout = QVBoxLayout(self)
        header = QHBoxLayout()
        self.title = QLabel("<b>Training</b>")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        header.addWidget(self.title, 1)
        self.pause_button = QPushButton("&Pause")
        self.resume_button = QPushButton("&Resume")
        self.cancel_button = QPushButton("&Cancel run")
        for button, tip in ((self.pause_button, "Stop after this step and write a checkpoint"),
                            (self.resume_button, "Continue from the last checkpoint"),
                            (self.cancel_button, "End the run for good (asks first); what it spent stays counted")):
            button.setToolTip(tip)
            header.addWidget(button)
        self.pause_button.clicked.connect(self.controller.pause)
        self.resume_button.clicked.connect(self._resume)
        self.cancel_button.clicked.connect(self.confirm_cancel)
        layout.addLayout(header)

        self.state_label = WrapLabel()
        layout.addWidget(self.state_label)
        progress = QHBoxLayout()
        self.phase_label = QLabel("-")
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps")
        self.eta_label = QLabel("time left: -")
        progress.addWidget(self.phase_label)
        progress.addWidget(self.progress, 1)
        progress.addWidget(self.eta_label)
        layout.addLayout(progress)

        grid = QGridLayout()
        self.loss_axis, self.epsilon_axis = PhaseStepAxis("bottom"), PhaseStepAxis("bottom")
        self.loss_plot = pg.PlotWidget(title="Losses (per step)", axisItems={"bottom": self.loss_axis})
        self.loss_plot.setLabel("bottom", "step within the phase (as on the progress bar)")
        self.loss_plot.setLabel("left", "loss (mean squared error, no unit)")
        # No grid: its translucent lines tripled the cost of each redraw (40 ms against 13 ms on the
        # 2-core development machine), which showed up as event-loop gaps while training.
        self.epsilon_plot = pg.PlotWidget(title="Privacy spent after each step",
                                          axisItems={"bottom": self.epsilon_axis})
        self.epsilon_plot.setLabel("bottom", "step within the phase (as on the progress bar)")
        self.epsilon_plot.setLabel("left", "epsilon spent (no unit; 0 = no privacy spent)")
        self.epsilon_plot.getViewBox().setLimits(yMin=0)
        self.epsilon_curve = self.epsilon_plot.plot([], [], pen=pg.mkPen("#d62728", width=2))
        self.target_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#555", style=Qt.PenStyle.DashLine))
        self.target_line.hide()
        self.epsilon_plot.addItem(self.target_line)
        for plot in (self.loss_plot, self.epsilon_plot):
            # The values as they are: pyqtgraph's SI prefix read a loss of 0.995 as "995 (x0.001)".
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.setMinimumSize(240, 180)
            plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.epsilon_note = WrapLabel("")
        samples_box = QGroupBox("Samples from the model being trained")
        samples_layout = QVBoxLayout(samples_box)
        self.samples = ImageLabel("The first sample grid appears after a few steps.")
        self.samples.setObjectName("sampleGrid")
        self.samples_caption = QLabel("")
        samples_layout.addWidget(self.samples, 1)
        samples_layout.addWidget(self.samples_caption)
        # Legends as labels under the plots: pyqtgraph's legend sits on top of the curves.
        self.loss_legend = QLabel("")
        self.epsilon_legend = QLabel("<span style='color:#d62728'>━━</span> epsilon spent &nbsp;&nbsp; "
                                     "<span style='color:#555'>╍╍</span> target")
        for legend in (self.loss_legend, self.epsilon_legend):
            legend.setWordWrap(True)  # five losses on one line widened the screen past the window
        plots = QVBoxLayout()
        plots.addWidget(self.loss_plot, 1)
        plots.addWidget(self.loss_legend)
        plots.addWidget(self.epsilon_plot, 1)
        plots.addWidget(self.epsilon_legend)
        plots.addWidget(self.epsilon_note)
        grid.addLayout(plots, 0, 0)
        grid.addWidget(samples_box, 0, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        layout.addLayout(grid, 1)

    # -- events ------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.losses.clear()
        for curve in self._curves.values():
            self.loss_plot.removeItem(curve)
        self.loss_legend.setText("")
        self._curves.clear()
        self._legend.clear()
        self.epsilon_x.clear()
        self.epsilon_y.clear()
        self.step_index = 0
        self._phase_offsets.clear()
        for axis in (self.loss_axis, self.epsilon_axis):
            axis.phase_starts = []
        for plot, line in self._phase_lines:
            plot.removeItem(line)
        self._phase_lines.clear()
        self.samples.set_array(None)
        self.samples.setText("The first sample grid appears after a few steps.")
        self.samples_caption.setText("")
        self.epsilon_note.setText("")
        self.epsilon_target = None
        self.target_line.hide()
        self.phase_label.setText("-")
        self.progress.setMaximum(1)
        self.progress.setValue(0)
        self.eta_label.setText("time left: -")
        self.time_left.reset()
        self._dirty = True

    def on_event(self, event: Any) -> None:
        from dpsad_core.events import PhaseStarted, RunFinished, RunInterrupted, RunStarted, SampleGrid, StepCompleted

        if isinstance(event, StepCompleted):
            self._add_point(event.losses, event.epsilon_spent, event.phase, event.step)
            self.progress.setMaximum(event.total_steps)
            self.progress.setValue(event.step)
            left = self.time_left.update(phase=event.phase, seconds=event.seconds, eta_seconds=event.eta_seconds)
            self.eta_label.setText("time left: estimating from the first steps..." if left is None
                                   else f"time left: about {format_duration(left)}")
            self.epsilon_target = event.epsilon_target
        elif isinstance(event, SampleGrid):
            from dpsad_workbench.core import label_rows

            self.samples.set_array(label_rows(event.image, self.class_names))
            rows = "class names beside their rows" if self.class_names else "one row per class"
            self.samples_caption.setText(f"{event.phase} model after step {event.step} ({rows})")
        elif isinstance(event, PhaseStarted):
            privacy = {"dp": "differentially private", "public": "public data, no privacy cost",
                       "postprocess": "learns from the teacher's own images only, no privacy cost",
                       "nonprivate": "NOT PRIVATE"}.get(event.privacy, event.privacy)
            self.phase_label.setText(f"{event.phase} ({privacy})")
            self.progress.setMaximum(max(event.total_steps, 1))
            self.progress.setValue(event.start_step)
        elif isinstance(event, RunStarted):
            self.reset()
            from dpsad_workbench.core import run_class_names

            self.title.setText(f"<b>Run {event.run_id}</b> ({event.plan.get('recipe')})")
            self.time_left.reset({p["name"]: p["kind"] for p in event.plan.get("phases", []) if "kind" in p})
            self.class_names = run_class_names(event.run_dir)
            self.epsilon_target = event.plan.get("epsilon_target")
            if event.resumed:
                self._load_history(event.run_dir)
            if event.plan.get("nonprivate_parts"):
                self.epsilon_note.setText("<b>This recipe is NOT differentially private</b>: parts train on the "
                                          "private data without protection, so epsilon is infinite.")
        elif isinstance(event, RunFinished):
            result = RunResult.from_dict(event.result, source=f"the result of run {event.run_id}")
            values = result.accountant_values
            self.epsilon_note.setText(
                f"Finished: <b>({format_epsilon(result.epsilon)}, {result.delta:.3g})-differentially "
                f"private</b>, target epsilon {result.epsilon_target:g}. The certified epsilon is the "
                f"smaller of two bounds: RDP {format_epsilon(values.get('rdp'))} (the curve) and PRV "
                f"{format_epsilon(values.get('prv'))}."
                if result.private else "Finished: NOT differentially private (epsilon = infinity).")
            self.eta_label.setText("time left: 0 s")
        elif isinstance(event, RunInterrupted):
            self.eta_label.setText(f"stopped at {event.phase} step {event.step}")

    def on_state(self, state: str) -> None:
        if state == STARTING:
            # Every start and resume clears the previous run: a start that fails before its first
            # event must not leave that run's id, plots and "Finished" note under "Failed".
            self.reset()
            resuming = self.controller.run_id
            self.title.setText(f"<b>Resuming run {resuming}</b>" if resuming else "<b>Starting a new run</b>")
        self.state_label.setText(STATE_TEXT.get(state, state))
        active = state in ACTIVE_STATES
        self.pause_button.setEnabled(state in (STARTING, RUNNING))
        self.cancel_button.setEnabled(active and state != CANCELLING or state in (PAUSED, INTERRUPTED))
        self.resume_button.setEnabled(not active and self.controller.run_id is not None
                                      and state in (PAUSED, INTERRUPTED, FAILED))

    def confirm_cancel(self) -> bool:
        """Cancel the run after a confirmation (Cancel ends it; Pause is the stop to resume from)."""
        from dpsad_workbench import dialogs

        question = ("Cancel this run for good?\n\nIt cannot be resumed afterwards, and the privacy it has spent so "
                    "far stays counted on its dataset. To stop now and continue later, choose No and use Pause.")
        if not dialogs.confirm(self, "Cancel run", question, default_yes=False):
            return False
        self.controller.cancel()
        return True

    def _resume(self) -> None:
        try:
            self.controller.resume()
        except Exception as error:  # noqa: BLE001 - shown as a dialog by the window
            self.controller.failed.emit(error)

    def _add_point(self, losses: dict[str, float], epsilon: float, phase: str | None = None,
                   step: int | None = None) -> None:
        if phase is not None and step is not None:
            if phase not in self._phase_offsets:  # a new phase continues where the last one ended
                self._start_phase(phase, self.step_index - (step - 1))
            self.step_index = int(self._phase_offsets[phase]) + step
        else:
            self.step_index += 1
        x = float(self.step_index)
        for key, value in losses.items():
            if not key.endswith("_loss") or value is None or not math.isfinite(value):
                continue
            xs, ys = self.losses.setdefault(key, ([], []))
            xs.append(x)
            ys.append(float(value))
        if epsilon is not None and math.isfinite(epsilon):
            self.epsilon_x.append(x)
            self.epsilon_y.append(float(epsilon))
        self._dirty = True

    def _start_phase(self, phase: str, offset: float) -> None:
        """Mark where ``phase`` begins on both plots (a dashed line named after it)."""
        self._phase_offsets[phase] = offset
        for axis in (self.loss_axis, self.epsilon_axis):
            axis.phase_starts = axis.phase_starts + [(offset, phase)]
        for plot in (self.loss_plot, self.epsilon_plot):
            line = pg.InfiniteLine(pos=offset + 0.5, angle=90, label=phase,
                                   pen=pg.mkPen("#999", style=Qt.PenStyle.DotLine),
                                   labelOpts={"position": 0.95, "color": "#555"})
            plot.addItem(line)
            self._phase_lines.append((plot, line))

    def _load_history(self, run_dir) -> None:
        """A resumed run: plot what the run already logged, so the curves continue where they were."""
        from dpsad_core.training import RunFolder

        for record in RunFolder(run_dir).read_metrics():
            losses = {k: v for k, v in record.items() if k.endswith("_loss") and isinstance(v, (int, float))}
            epsilon = record.get("epsilon_rdp")
            step = record.get("step")
            self._add_point(losses, float("inf") if epsilon is None else epsilon, record.get("phase"),
                            step if isinstance(step, int) else None)

    def redraw(self) -> None:
        """Push the buffered points to the plots (called by the timer, at most ``REDRAW_HZ`` times a second)."""
        if not self._dirty:
            return
        self._dirty = False
        for key, (xs, ys) in sorted(self.losses.items()):
            curve = self._curves.get(key)
            if curve is None:
                colour = LOSS_COLOURS[len(self._curves) % len(LOSS_COLOURS)]
                curve = self.loss_plot.plot([], [], pen=pg.mkPen(colour, width=2))
                self._curves[key] = curve
                self._legend.append(f"<span style='color:{colour}'>━━</span> {LOSS_LABELS.get(key, key)}")
                self.loss_legend.setText(" &nbsp;&nbsp; ".join(self._legend))
            curve.setData(xs, ys)
        self.epsilon_curve.setData(self.epsilon_x, self.epsilon_y)
        # The epsilon axis starts at 0, so the curve's height is the share of the budget spent.
        top = max(self.epsilon_y + ([self.epsilon_target] if self.epsilon_target is not None else []) + [1.0])
        self.epsilon_plot.setYRange(0.0, top * 1.05, padding=0)
        if self.epsilon_target is not None:
            self.target_line.setValue(self.epsilon_target)
            self.epsilon_legend.setText(f"<span style='color:#d62728'>━━</span> epsilon spent &nbsp;&nbsp; "
                                        f"<span style='color:#555'>╍╍</span> target {self.epsilon_target:g}")
            self.target_line.show()
        self.redrawn.emit()
