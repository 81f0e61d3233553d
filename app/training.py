"""The training controller: starts, pauses, resumes and cancels runs through a worker thread.

It owns the :class:`~dpsad_workbench.worker.ProcessGeneratorWorker` whose thread relays the events
of the core's ``start_training`` / ``resume_training`` generator (run in a child process, so torch
never holds this process's GIL) and turns its events into a small state machine
the screens observe:

``idle -> starting -> running -> (pausing -> paused -> starting ...) | (cancelling -> cancelled) | finished | failed``

Pause and cancel both ask the engine to stop at the next step boundary; the engine writes a
checkpoint and records the spend in the ledger before it returns. Pause is the resumable stop;
cancel ends the run for good (the screens ask first, and no longer offer to resume it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from dpsad_core.runs.records import RunState
from dpsad_workbench.settings import AppSettings
from dpsad_workbench.worker import GeneratorWorker, ProcessGeneratorWorker

# The controller's own states, and the run states (status.json) it ends in, spelt as the core spells them.
IDLE, STARTING, PAUSING, PAUSED, CANCELLING = "idle", "starting", "pausing", "paused", "cancelling"
RUNNING, CANCELLED, FINISHED, FAILED, INTERRUPTED = (state.value for state in (
    RunState.RUNNING, RunState.CANCELLED, RunState.FINISHED, RunState.FAILED, RunState.INTERRUPTED))
ACTIVE_STATES = (STARTING, RUNNING, PAUSING, CANCELLING)


class TrainingController(QObject):
    """One training run at a time.

    Signals
    -------
    run_event(object)
        Every event the core yields (RunStarted, PhaseStarted, StepCompleted, SampleGrid, ...).
    state_changed(str)
        The new state (one of the module-level state names).
    failed(object)
        The exception that ended a run; the window shows it in a dialog.
    """

    run_event = Signal(object)  # not `event`: that name is QObject.event(), the virtual event handler
    state_changed = Signal(str)
    failed = Signal(object)

    def __init__(self, settings: Callable[[], AppSettings], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._worker: GeneratorWorker | None = None
        self._intent: str | None = None
        self._saw_finish = False
        self.state = IDLE
        self.run_id: str | None = None
        self.config = None

    # -- commands ----------------------------------------------------------------------------------
    def start(self, config) -> None:
        """Start a new run of ``config`` (a :class:`dpsad_core.training.TrainConfig`)."""
        self._refuse_if_active()
        settings = self._settings()
        workspace = settings.workspace_path()
        self.config, self.run_id = config, None
        self._launch("dpsad_workbench.core:train_job",
                     {"config": config, "workspace": workspace, "all_gpus": settings.all_gpus}, settings)

    def resume(self, run_id: str | None = None) -> None:
        """Resume ``run_id`` (default: the paused or interrupted run of this session)."""
        self._refuse_if_active()
        run_id = run_id or self.run_id
        if run_id is None:
            from dpsad_core.errors import RunError

            raise RunError("there is no run to resume", remedy="pick one on the Runs screen")
        settings = self._settings()
        workspace = settings.workspace_path()
        self.run_id = run_id
        # On the devices the Settings choose now (a run paused on a GPU continues on the CPU when asked to).
        self._launch("dpsad_workbench.core:resume_job",
                     {"run_id": run_id, "workspace": workspace, "device": settings.device}, settings)

    def pause(self) -> None:
        if self.state in (STARTING, RUNNING) and self._worker is not None:
            self._intent = "pause"
            self._worker.request_stop()
            self._set_state(PAUSING)

    def cancel(self) -> None:
        if self.state in (STARTING, RUNNING, PAUSING) and self._worker is not None:
            self._intent = "cancel"
            self._worker.request_stop()
            self._set_state(CANCELLING)
        elif self.state in (PAUSED, INTERRUPTED) and self.run_id is not None:
            self._mark_cancelled(self.run_id)
            self._set_state(CANCELLED)

    def stop_and_wait(self, timeout_ms: int = 600_000) -> bool:
        """Stop the running run and block until its checkpoint is written (used when closing)."""
        worker = self._worker
        if worker is None:
            return True
        if self._intent is None:
            self._intent = "close"
        worker.request_stop()
        return worker.wait(timeout_ms)

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def worker(self) -> GeneratorWorker | None:
        return self._worker

    # -- internals ---------------------------------------------------------------------------------
    def _refuse_if_active(self) -> None:
        if self.is_active:
            from dpsad_core.errors import RunError

            raise RunError(f"run {self.run_id or '(starting)'} is still training",
                           remedy="pause or cancel it first, or wait for it to finish")

    def _launch(self, target: str, kwargs: dict[str, Any], settings: AppSettings) -> None:
        self._intent, self._saw_finish = None, False
        worker = ProcessGeneratorWorker(target, kwargs, torch_threads=settings.torch_threads, parent=self)
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_error)
        worker.finished_work.connect(self._on_finished)
        self._worker = worker
        self._set_state(STARTING)
        worker.start()

    def _on_event(self, event: Any) -> None:
        from dpsad_core.events import RunFinished, RunInterrupted, RunStarted

        if isinstance(event, RunStarted):
            self.run_id = event.run_id
            if self.state == STARTING:
                self._set_state(RUNNING)
        elif isinstance(event, RunInterrupted):
            self.run_id = event.run_id
        elif isinstance(event, RunFinished):
            self._saw_finish = True
        self.run_event.emit(event)

    def _on_error(self, error: BaseException) -> None:
        self._set_state(FAILED)
        self.failed.emit(error)

    def _on_finished(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.wait()  # the thread's run() has returned; let it end before it is collected
            worker.deleteLater()
        if self.state == FAILED:
            return
        if self._saw_finish:
            self._set_state(FINISHED)
        elif self._intent == "pause":
            self._set_state(PAUSED)
        elif self._intent == "cancel":
            if self.run_id is not None:
                self._mark_cancelled(self.run_id)
            self._set_state(CANCELLED)
        else:
            self._set_state(INTERRUPTED)

    def _mark_cancelled(self, run_id: str) -> None:
        from dpsad_workbench.core import mark_cancelled

        try:
            mark_cancelled(self._settings().workspace_path(), run_id)
        except Exception as error:  # noqa: BLE001 - the run is stopped either way; tell the user
            self.failed.emit(error)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)
