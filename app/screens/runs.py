"""Runs screen: every run with its state, recipe and epsilon; resume, evaluate, open its folder, delete it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dpsad_core.commands.plan_time import format_duration
from dpsad_core.errors import DpsadError
from dpsad_core.runs.folder import RunFolder
from dpsad_core.runs.records import RunKind, RunState
from dpsad_core.training.config import Recipe  # no torch
from dpsad_workbench import dialogs
from dpsad_workbench.core import format_epsilon
from dpsad_workbench.images import ImageLabel
from dpsad_workbench.settings import AppSettings
from dpsad_workbench.widgets import WrapLabel
from dpsad_workbench.worker import ProcessGeneratorWorker, WorkerOwner

if TYPE_CHECKING:
    from dpsad_workbench.screens.evaluate_dialog import EvaluateDialog


COLUMNS = ("run", "state", "progress", "recipe", "dataset", "epsilon spent", "target", "created")
# A cancelled run has ended (Cancel is the final stop; Pause the resumable one). "running" is a run
# whose process died without saying so: resumable unless this app is training it right now.
RESUMABLE = tuple(state.value for state in RunState if state.resumable)
FINISHED = RunState.FINISHED.value


class RunsScreen(WorkerOwner, QWidget):
    """Emits ``resume_requested(run_id)`` and ``export_requested(run_id)``; the window acts on them.

    Evaluation runs here, in a child process: ``evaluated(result)`` when it has written the run's
    evaluation.json, ``error`` when it failed.
    """

    resume_requested = Signal(str)
    export_requested = Signal(str)
    evaluated = Signal(dict)
    error = Signal(object)

    def __init__(self, settings: Callable[[], AppSettings], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._workers = set()
        self._evaluation: tuple[str, ProcessGeneratorWorker] | None = None  # (run id, worker) while one runs
        self.runs: list[dict[str, Any]] = []
        self.is_training: Callable[[str], bool] = lambda run_id: False
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        buttons = QHBoxLayout()
        self.refresh_button = QPushButton("Re&fresh")
        self.resume_button = QPushButton("&Resume")
        self.open_button = QPushButton("&Open folder")
        self.evaluate_button = QPushButton("E&valuate...")
        self.export_button = QPushButton("E&xport...")
        self.delete_button = QPushButton("&Delete...")
        self.refresh_button.clicked.connect(self.refresh)
        self.resume_button.clicked.connect(self._resume)
        self.open_button.clicked.connect(self._open_folder)
        self.evaluate_button.clicked.connect(self._evaluate_clicked)
        self.export_button.clicked.connect(self._export)
        self.delete_button.clicked.connect(self.delete_selected)
        for button in (self.refresh_button, self.resume_button, self.open_button, self.evaluate_button,
                       self.export_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        layout.addLayout(buttons)
        self.evaluation_status = WrapLabel("")
        self.evaluation_status.hide()
        layout.addWidget(self.evaluation_status)
        splitter = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        splitter.addWidget(self.table)
        detail = QGroupBox("Selected run")
        detail_layout = QHBoxLayout(detail)
        self.summary = QLabel("Select a run.")
        self.summary.setWordWrap(True)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.grid = ImageLabel("")
        self.image_choice = QComboBox()
        self.image_choice.addItem("Samples from the model", "samples")
        self.image_choice.addItem("Closest training records (memorisation check)", "pairs")
        self.image_choice.setToolTip("Each synthetic image from the evaluation beside its nearest private training "
                                     "image: near-identical pairs would be copies. Shown only on this machine.")
        self.image_choice.currentIndexChanged.connect(lambda _: self._show_image(self.selected_run()))
        images = QVBoxLayout()
        images.addWidget(self.image_choice)
        images.addWidget(self.grid, 1)
        detail_layout.addWidget(self.summary, 3)
        detail_layout.addLayout(images, 2)
        splitter.addWidget(detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout.addWidget(splitter, 1)
        self._selection_changed()

    # -- listing -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        from dpsad_workbench.core import list_runs

        selected = self.selected_run_id()
        try:
            self.runs = list_runs(self._settings().workspace_path())
        except Exception as error:  # noqa: BLE001 - a dialog, not a crash
            self.error.emit(error)
            return
        from dpsad_workbench.core import run_progress

        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            epsilon = run["epsilon"] if run["private"] else float("inf")
            progress = run_progress(Path(run["path"]))
            run["progress"] = progress
            done = "-" if progress is None else f"{progress[0]:,} of {progress[1]:,} steps"
            state = run.get("shown_state", run["state"])
            values = (run["run_id"], state, done, run["recipe"], run["dataset"], format_epsilon(epsilon),
                      f"{run['epsilon_target']:g}", (run.get("created") or "-").replace("T", " ")[:19])
            for column, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                item.setData(Qt.ItemDataRole.UserRole, run["run_id"])
                self.table.setItem(row, column, item)
        if selected:
            self.select(selected)
        elif self.runs:
            self.table.selectRow(0)
        self._selection_changed()

    def select(self, run_id: str) -> None:
        for row, run in enumerate(self.runs):
            if run["run_id"] == run_id:
                self.table.selectRow(row)
                return

    def selected_run(self) -> dict[str, Any] | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.runs):
            return None
        return self.runs[rows[0].row()]

    def selected_run_id(self) -> str | None:
        run = self.selected_run()
        return run["run_id"] if run else None

    def _selection_changed(self) -> None:
        run = self.selected_run()
        for button in (self.open_button, self.delete_button):
            button.setEnabled(run is not None)
        self.resume_button.setEnabled(run is not None and run["state"] in RESUMABLE
                                      and not self.is_training(run["run_id"]))
        self.export_button.setEnabled(run is not None and run["state"] == FINISHED)
        if self._evaluation is not None:
            self.evaluate_button.setText("Cancel e&valuation")
            self.evaluate_button.setEnabled(True)
        else:
            self.evaluate_button.setText("E&valuate...")
            self.evaluate_button.setEnabled(run is not None and run["state"] == FINISHED)
        if run is None:
            self.summary.setText("Select a run." if self.runs else "No runs yet: start one on the New run screen.")
            self.grid.set_array(None)
            return
        self.summary.setText(self._describe(run))
        self._show_image(run)

    def _show_image(self, run: dict[str, Any] | None) -> None:
        """The run's latest sample grid, or the evaluation's closest pairs (synthetic | nearest training)."""
        from dpsad_core.evaluation.report import CLOSEST_PAIRS_FILE

        self.grid.set_array(None)
        if run is None:
            return
        if self.image_choice.currentData() == "pairs":
            path, missing = Path(run["path"]) / CLOSEST_PAIRS_FILE, "Not evaluated yet: Evaluate... makes them."
        else:
            path, missing = Path(run["path"]) / "samples" / "latest.png", "No samples yet."
        if not path.is_file():
            self.grid.setText(missing)
            return
        import numpy as np
        from PIL import Image

        try:
            with Image.open(path) as image:
                pixels = np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"))
            if self.image_choice.currentData() == "samples":  # one row per class: name the rows
                from dpsad_workbench.core import label_rows, run_class_names

                pixels = label_rows(pixels, run_class_names(Path(run["path"])))
            self.grid.set_array(pixels)
        except OSError:
            self.grid.setText(f"{path.name} cannot be read.")

    def _describe(self, run: dict[str, Any]) -> str:
        lines = [f"<b>{run['run_id']}</b>", f"state: {run.get('shown_state', run['state'])}",
                 f"recipe: {run['recipe']}", f"dataset: {run['dataset']}"]
        if run.get("progress") and run["state"] != FINISHED:
            done, total = run["progress"]
            lines.append(f"progress: {done:,} of {total:,} steps done"
                         + (" (Resume continues from there)" if run["state"] in RESUMABLE else ""))
        if run["private"]:
            lines.append(f"epsilon spent: {format_epsilon(run['epsilon'])} of target {run['epsilon_target']:g}")
        else:
            lines.append("<b style='color:#b00020'>NOT differentially private (epsilon = infinity)</b>")
        folder = RunFolder(Path(run["path"]))
        if folder.has_result:
            try:
                result = folder.result()
            except DpsadError:
                result = None  # the list shows the run; the folder itself says what is wrong
            if result is not None:
                lines.append(f"delta: {result.delta:.3g}; unit of privacy: {result.unit_of_privacy}")
                if result.kind is RunKind.DP_RDM and result.generate_seconds is not None:
                    lines.append(f"generated in {result.generate_seconds:.0f} s")
                elif result.train_seconds is not None:
                    lines.append(f"trained in {format_duration(result.train_seconds)} on {result.device}")
        lines.extend(_evaluation_lines(Path(run["path"])))
        lines.append(f"folder: {run['path']}")
        return "<br>".join(lines)

    # -- actions -----------------------------------------------------------------------------------
    def _resume(self) -> None:
        run_id = self.selected_run_id()
        if run_id:
            self.resume_requested.emit(run_id)

    def _export(self) -> None:
        run_id = self.selected_run_id()
        if run_id:
            self.export_requested.emit(run_id)

    def _open_folder(self) -> None:
        run = self.selected_run()
        if run:
            QDesktopServices.openUrl(QUrl.fromLocalFile(run["path"]))

    def delete_selected(self) -> bool:
        """Delete the selected run after confirmation; True when it was deleted."""
        from dpsad_workbench.core import delete_run

        run = self.selected_run()
        if run is None:
            return False
        if self.is_training(run["run_id"]):
            from dpsad_core.errors import RunError

            self.error.emit(RunError(f"run {run['run_id']} is training", remedy="cancel it on the Training screen "
                                                                                 "first"))
            return False
        if self.evaluating() == run["run_id"]:
            from dpsad_core.errors import RunError

            self.error.emit(RunError(f"run {run['run_id']} is being evaluated", remedy="cancel the evaluation first"))
            return False
        question = (f"Delete run {run['run_id']} and everything in its folder (checkpoint, model, samples)?\n\n"
                    "This cannot be undone. Privacy already spent on the dataset stays spent.")
        if not dialogs.confirm(self, "Delete run", question):
            return False
        try:
            delete_run(self._settings().workspace_path(), run["run_id"])
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.error.emit(error)
            return False
        self.refresh()
        return True


    # -- evaluation ------------------------------------------------------------------------------------
    def evaluating(self) -> str | None:
        """The id of the run being evaluated, if any."""
        return self._evaluation[0] if self._evaluation is not None else None

    def _evaluate_clicked(self) -> None:
        if self._evaluation is not None:
            self.cancel_evaluation()
            return
        run_id, dialog = self.selected_run_id(), self.evaluate_dialog()
        if run_id is not None and dialog is not None and dialog.exec():
            self.start_evaluation(run_id, test=dialog.test_data(), per_class=dialog.per_class(),
                                  generator=dialog.generator())

    def evaluate_dialog(self) -> EvaluateDialog | None:
        """The dialog asking what to evaluate the selected run against (None without a finished run)."""

        from dpsad_workbench.core import list_datasets
        from dpsad_workbench.screens.evaluate_dialog import EvaluateDialog

        run = self.selected_run()
        if run is None or run["state"] != FINISHED:
            return None
        try:
            data_spec = RunFolder(Path(run["path"])).config().data or ""
        except (OSError, ValueError, DpsadError):
            data_spec = ""
        try:
            saved = list_datasets(self._settings().workspace_path())
        except Exception:  # noqa: BLE001 - the names are only suggestions
            saved = []
        rdm = RunKind.of_recipe(run["recipe"]) is RunKind.DP_RDM
        try:
            few_step = Recipe(run["recipe"]).distills_for_free
        except ValueError:  # a DP-RDM run
            few_step = False
        return EvaluateDialog(run, data_spec=data_spec, saved_datasets=saved, rdm=rdm, few_step=few_step,
                              parent=self)

    def start_evaluation(self, run_id: str, *, test: str, per_class: int | None,
                         generator: str = "release") -> ProcessGeneratorWorker | None:
        """Evaluate ``run_id``'s images (``generator``: "release" or a few-step run's "teacher") against ``test``
        in a child process; returns the worker."""
        from dpsad_core.errors import ConfigError

        test = test.strip()
        if self._evaluation is not None:
            return None
        if not test:
            self.error.emit(ConfigError("no test data was given", field="test", value=test,
                                        remedy="name real images the model never saw: 'demo', a saved dataset, "
                                               "or a folder or file"))
            return None
        settings = self._settings()
        worker = ProcessGeneratorWorker(
            "dpsad_workbench.core:evaluate_job",
            dict(run_id=run_id, workspace=settings.workspace_path(), test=test, per_class=per_class,
                 device=settings.device, generator=generator),
            torch_threads=settings.torch_threads, parent=self,
            lost=("the evaluation process", "the run is unchanged: evaluate it again"))
        queued = Qt.ConnectionType.QueuedConnection
        worker.yielded.connect(lambda event: self._on_evaluation_event(run_id, event), queued)
        worker.errored.connect(self.error.emit, queued)
        worker.finished_work.connect(self._on_evaluation_done, queued)
        self._evaluation = (run_id, worker)
        self._show_evaluation_status(f"Evaluating {run_id} against {test}: starting...")
        self._keep(worker)
        worker.start()
        self._selection_changed()
        return worker

    def cancel_evaluation(self) -> None:
        """Stop the evaluation after its current stage; the run keeps its earlier evaluation, if any."""
        if self._evaluation is not None:
            self._evaluation[1].request_stop()
            self._show_evaluation_status(f"Cancelling the evaluation of {self._evaluation[0]} after this stage...")

    def _on_evaluation_event(self, run_id: str, event: Any) -> None:
        name = type(event).__name__
        if name == "EvaluationStage":
            self._show_evaluation_status(f"Evaluating {run_id}: step {event.index} of {event.total}, {event.detail}")
        elif name == "EvaluationFinished":
            self.evaluated.emit(dict(event.result))

    def _on_evaluation_done(self) -> None:
        if self._evaluation is None:
            return
        run_id, worker = self._evaluation
        self._evaluation = None
        if worker.error is not None:
            self._show_evaluation_status(f"The evaluation of {run_id} failed (see the message).")
        elif worker.stop_requested:
            self._show_evaluation_status(f"The evaluation of {run_id} was cancelled.")
        else:
            self._show_evaluation_status(f"Evaluated {run_id}: the numbers are below.")
        self.refresh()
        self.select(run_id)

    def _show_evaluation_status(self, text: str) -> None:
        self.evaluation_status.setText(text)
        self.evaluation_status.setVisible(bool(text))


def _evaluation_lines(run_dir: Path) -> list[str]:
    """The headline of ``dpsad-core evaluate`` when the run has been evaluated (local numbers only)."""
    from dpsad_core.errors import DpsadError
    from dpsad_core.evaluation.report import headline, read_evaluation

    try:
        evaluation = read_evaluation(run_dir)
    except DpsadError as error:
        return [f"evaluation: {error}"]
    if evaluation is None:
        return ["evaluation: none yet (Evaluate... measures how useful and how private the images are)"]
    numbers = headline(evaluation)

    def show(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    return [
        f"evaluation: real-test accuracy of a CNN trained on synthetic images {show(numbers['cnn_accuracy'], '.3f')}"
        f", of a logistic regression {show(numbers['logistic_accuracy'], '.3f')}",
        "Frechet distance (classifier features, not FID) "
        f"{show(numbers['frechet_distance_classifier_features'], '.3g')}"
        f"; precision {show(numbers['precision'], '.2f')}, recall {show(numbers['recall'], '.2f')}",
        f"memorisation: {show(numbers['dcr_share_closer_to_training_than_holdout'], '.0%')} of synthetic images "
        f"closer to training than real held-out ones (about 50% is good); near-copies flagged: "
        f"{numbers['near_copy_count']} of {numbers['synthetic_count']}",
    ]
