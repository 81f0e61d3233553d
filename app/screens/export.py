"""Export screen: choose counts, preview the privacy report, export the signed bundle, verify bundles.

Exporting samples from the released model (torch) runs in a worker thread. Verifying needs no torch
and is quick, but reads every file of the bundle, so it runs in a worker too. Any bundle dropped on
this screen is verified.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dpsad_core.errors import DpsadError
from dpsad_core.export.names import size_text
from dpsad_core.export.report import dataset_section
from dpsad_core.runs.folder import RunFolder
from dpsad_core.runs.records import RunConfigRecord, RunResult, RunState
from dpsad_workbench.core import format_epsilon
from dpsad_workbench.settings import AppSettings
from dpsad_workbench.widgets import WrapLabel
from dpsad_workbench.worker import GeneratorWorker, ProcessGeneratorWorker, WorkerOwner, call_in_worker


class ExportScreen(WorkerOwner, QWidget):
    """Signals: ``exported(dict)`` with the bundle path and summary, ``verified(object)`` (a VerifyResult)."""

    exported = Signal(dict)
    verified = Signal(object)
    error = Signal(object)

    def __init__(self, settings: Callable[[], AppSettings], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._workers: set = set()
        self.runs: list[dict[str, Any]] = []
        self.setAcceptDrops(True)
        self._build()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QHBoxLayout(self)
        left = QVBoxLayout()
        export_box = QGroupBox("Export a synthetic dataset")
        form = QFormLayout(export_box)
        self.run = QComboBox()
        self.run.currentIndexChanged.connect(self.preview_report)
        form.addRow("&Run:", self.run)
        self.per_class = QSpinBox()
        self.per_class.setRange(1, 1_000_000)
        self.per_class.setValue(100)
        form.addRow("Images per &class:", self.per_class)
        # A dpsad run releases a few-step student and keeps the DP teacher it was distilled from: either
        # samples for free (both are computed from the teacher alone). Shown only for such runs.
        self.generator = QComboBox()
        self.generator.setToolTip("Which network makes the images. Both cost no privacy beyond the run's "
                                  "epsilon; the teacher is slower and often a little more faithful.")
        self._generators_for: str | None = None  # the run the choice was offered for
        self.generator.currentIndexChanged.connect(self.preview_report)  # the report says which network
        self.generator_label = QLabel("Images &from:")
        self.generator_label.setBuddy(self.generator)
        form.addRow(self.generator_label, self.generator)
        self.zip = QCheckBox("Write the bundle as one .zip file")
        form.addRow("", self.zip)
        self.research = QCheckBox("Research export of a NOT private run")
        self.research.setToolTip("Only for runs of the dpsad-paper recipe, whose bundle is stamped NOT "
                                 "DIFFERENTIALLY PRIVATE; private runs never need it")
        form.addRow("", self.research)
        out_row = QHBoxLayout()
        self.out = QLineEdit()
        self.out.setPlaceholderText("default: <workspace>/exports/<run id>")
        browse = QPushButton("&Browse...")
        browse.clicked.connect(self._browse_out)
        out_row.addWidget(self.out, 1)
        out_row.addWidget(browse)
        out_label = QLabel("&Bundle path:")
        out_label.setBuddy(self.out)
        form.addRow(out_label, out_row)
        self.export_button = QPushButton("&Export signed bundle")
        self.export_button.clicked.connect(self.export)
        form.addRow(self.export_button)
        self.export_status = WrapLabel("")
        self.export_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.export_status)
        self.open_report_button = QPushButton("&Open report")
        self.open_report_button.setToolTip("The exported bundle's privacy report, in your web browser")
        self.open_report_button.setEnabled(False)
        self.open_report_button.clicked.connect(self.open_report)
        self.last_export: dict[str, Any] | None = None
        form.addRow(self.open_report_button)
        left.addWidget(export_box)

        verify_box = QGroupBox("Verify a bundle (or drop one on this window)")
        verify_form = QFormLayout(verify_box)
        key_row = QHBoxLayout()
        self.expected_key = QLineEdit()
        self.expected_key.setPlaceholderText("optional: the signer's public key file")
        key_browse = QPushButton("Bro&wse...")
        key_browse.clicked.connect(self._browse_key)
        key_row.addWidget(self.expected_key, 1)
        key_row.addWidget(key_browse)
        key_label = QLabel("Expected &key:")
        key_label.setBuddy(self.expected_key)
        verify_form.addRow(key_label, key_row)
        buttons = QHBoxLayout()
        self.verify_folder_button = QPushButton("Verify &folder...")
        self.verify_zip_button = QPushButton("Verify .&zip...")
        self.verify_folder_button.clicked.connect(self._choose_verify_folder)
        self.verify_zip_button.clicked.connect(self._choose_verify_zip)
        buttons.addWidget(self.verify_folder_button)
        buttons.addWidget(self.verify_zip_button)
        verify_form.addRow(buttons)
        self.verify_result = WrapLabel("")
        self.verify_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        verify_form.addRow(self.verify_result)
        left.addWidget(verify_box)
        left.addStretch(1)
        layout.addLayout(left, 1)

        report_box = QGroupBox("Privacy report (preview)")
        outer_report = QVBoxLayout(report_box)
        self.report_scroll = QScrollArea()  # the report is long: it scrolls instead of being cut off
        self.report_scroll.setWidgetResizable(True)
        self.report_scroll.setFrameShape(QFrame.Shape.NoFrame)
        report_inner = QWidget()
        report_layout = QVBoxLayout(report_inner)
        self.report_scroll.setWidget(report_inner)
        outer_report.addWidget(self.report_scroll)
        self.report = QLabel("")
        self.report.setWordWrap(True)
        self.report.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.report.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        report_layout.addWidget(self.report)
        self.report_details_button = QPushButton("&Details (exact values)")
        self.report_details_button.setCheckable(True)
        self.report_details = QLabel("")
        self.report_details.setWordWrap(True)
        self.report_details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report_details.hide()
        self.report_details_button.toggled.connect(self.report_details.setVisible)
        report_layout.addWidget(self.report_details_button, 0, Qt.AlignmentFlag.AlignLeft)
        report_layout.addWidget(self.report_details)
        report_layout.addStretch(1)
        layout.addWidget(report_box, 1)

    # -- runs and report ---------------------------------------------------------------------------
    def refresh(self) -> None:
        from dpsad_workbench.core import list_runs

        current = self.run.currentData()
        try:
            self.runs = [r for r in list_runs(self._settings().workspace_path()) if r["state"] == RunState.FINISHED]
        except Exception as error:  # noqa: BLE001 - a dialog, not a crash
            self.error.emit(error)
            return
        self.run.blockSignals(True)
        self.run.clear()
        for run in self.runs:
            epsilon = format_epsilon(run["epsilon"] if run["private"] else float("inf"))
            label = f"{run['run_id']}  on {run['dataset']}  (epsilon {epsilon})"
            self.run.addItem(label, run["run_id"])
        if current is not None and self.run.findData(current) >= 0:
            self.run.setCurrentIndex(self.run.findData(current))
        self.run.blockSignals(False)
        self.preview_report()

    def select_run(self, run_id: str) -> None:
        index = self.run.findData(run_id)
        if index >= 0:
            self.run.setCurrentIndex(index)

    def preview_report(self) -> None:
        run = next((r for r in self.runs if r["run_id"] == self.run.currentData()), None)
        if run is None:
            self.report.setText("No finished run yet: a run must finish before its model can be exported.")
            self.report_details.setText("")
            self._generators_for = None
            self.generator.hide()
            self.generator_label.hide()
            return
        try:
            folder = RunFolder(Path(run["path"]))
            # Privacy from the plan as well as the accountant, as the export itself decides it.
            config = folder.config()
            result = folder.result().with_plan(config)
        except (OSError, ValueError, DpsadError) as error:
            self.report.setText(f"The run's result cannot be read: {html.escape(str(error))}")
            self.report_details.setText("")
            return
        if run["run_id"] != self._generators_for:
            self._offer_generators(run["recipe"], config)
            self._generators_for = run["run_id"]
        self.report.setText(render_report(result, config, self.generator.currentData() or "release"))
        self.report_details.setText(render_report_details(result))

    def _offer_generators(self, recipe: str, config: RunConfigRecord) -> None:
        """The student / teacher choice for a run that distilled a few-step student, hidden otherwise."""
        from dpsad_core.training.config import Recipe, TrainConfig

        try:
            few_step = Recipe(recipe).distills_for_free
            hyper = TrainConfig.from_dict(dict(config.config)).hyper if few_step else None
        except (KeyError, TypeError, ValueError, DpsadError):
            few_step, hyper = False, None
        self.generator.blockSignals(True)  # the caller renders the report once, for the first choice
        self.generator.clear()
        if hyper is not None:
            self.generator.addItem(f"the few-step student ({hyper.student_sample_steps} network evaluations "
                                   "per image)", "release")
            self.generator.addItem(f"its DP teacher ({hyper.sample_steps} DDIM steps per image: slower)", "teacher")
        self.generator.blockSignals(False)
        self.generator.setVisible(few_step)
        self.generator_label.setVisible(few_step)

    # -- export ------------------------------------------------------------------------------------
    def export(self) -> GeneratorWorker | None:
        """Export the chosen run in a worker; returns it (tests wait on ``exported``)."""
        run_id = self.run.currentData()
        if run_id is None:
            return None
        workspace = self._settings().workspace_path()
        out = self.out.text().strip() or None
        settings = self._settings()
        options = {"per_class": self.per_class.value(), "zip": self.zip.isChecked(),
                   "research": self.research.isChecked(), "device": settings.device,
                   "generator": self.generator.currentData() or "release"}
        worker = ProcessGeneratorWorker("dpsad_workbench.core:export_job",
                                        dict(run_id=run_id, workspace=workspace, out=out, **options),
                                        torch_threads=settings.torch_threads, parent=self)
        queued = Qt.ConnectionType.QueuedConnection
        worker.yielded.connect(self._on_export_event, queued)
        worker.errored.connect(self._on_export_error, queued)
        worker.finished_work.connect(lambda: self.export_button.setEnabled(True), queued)
        self.export_button.setEnabled(False)
        self.export_status.setText(f"Exporting {run_id}...")
        self.verify_result.setText("")  # an earlier bundle's verdict must not stand under this export
        self.open_report_button.setEnabled(False)
        self._keep(worker)
        worker.start()
        return worker

    def _on_export_event(self, event: Any) -> None:
        name = type(event).__name__
        if name == "ExportFinished":
            summary = dict(getattr(event, "summary", {}) or {})
            path = str(getattr(event, "bundle_path", ""))
            self.export_status.setText(f"Exported and signed: <b>{html.escape(path)}</b>")
            self.last_export = {"bundle_path": path, "summary": summary}
            self.open_report_button.setEnabled(True)
            self.verify_result.setText("Not verified yet: Verify folder... (or drop the bundle here) checks it.")
            self.export_button.setEnabled(True)  # the child may take a moment longer to exit
            self.exported.emit({"bundle_path": path, "summary": summary})
        elif name == "ExportProgress":
            self.export_status.setText(f"{html.escape(event.stage)}: {event.done} of {event.total}")
        elif name == "ExportStarted":
            self.export_status.setText(f"Exporting {event.total_images} images from {html.escape(event.run_id)}...")

    def _on_export_error(self, error: BaseException) -> None:
        self.export_status.setText("The export failed: see the message.")
        self.error.emit(error)

    def report_path(self) -> Path | None:
        """The last export's HTML report (taken out of a .zip bundle into a private temporary folder)."""
        from dpsad_core.export.layout import REPORT_HTML

        if self.last_export is None:
            return None
        bundle = Path(self.last_export["bundle_path"])
        if bundle.is_dir():
            return bundle / REPORT_HTML
        import tempfile
        import zipfile

        with zipfile.ZipFile(bundle) as archive:
            member = next((n for n in archive.namelist() if n.rsplit("/", 1)[-1] == REPORT_HTML), None)
            if member is None:
                return None
            folder = Path(tempfile.mkdtemp(prefix="dpsad-report-"))
            target = folder / REPORT_HTML
            target.write_bytes(archive.read(member))
            return target

    def open_report(self) -> None:
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        try:
            path = self.report_path()
        except OSError as error:
            self.error.emit(error)
            return
        if path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def exports_dir(self) -> Path:
        """Where file dialogs open: the workspace's exports folder (the workspace until one exists)."""
        from dpsad_workbench.folders import exports_folder

        return exports_folder(self._settings().workspace_path())

    # -- verify ------------------------------------------------------------------------------------
    def verify(self, path: str | Path) -> GeneratorWorker:
        """Verify the bundle at ``path`` in a worker; the result arrives as ``verified``."""
        key = self.expected_key.text().strip() or None

        self.verify_result.setText(f"Verifying {html.escape(str(path))}...")
        worker = call_in_worker("dpsad_workbench.core:verify_bundle", str(path), key, parent=self)
        queued = Qt.ConnectionType.QueuedConnection
        worker.yielded.connect(self._on_verified, queued)
        worker.errored.connect(self._on_verify_error, queued)
        self._keep(worker)
        worker.start()
        return worker

    def _on_verified(self, result: Any) -> None:
        self.verify_result.setText(render_verification(result))
        self.verified.emit(result)

    def _on_verify_error(self, error: BaseException) -> None:
        from dpsad_workbench.dialogs import describe_error

        _, text, _ = describe_error(error)
        self.verify_result.setText("<b style='color:#b00020'>Cannot verify:</b> "
                                   + html.escape(text, quote=False).replace("\n", "<br>"))
        self.error.emit(error)

    # -- helpers -----------------------------------------------------------------------------------
    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Where to save the bundle", str(self.exports_dir()))
        if path:
            self.out.setText(path)

    def _browse_key(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "The signer's public key", str(self.exports_dir()),
                                              "Keys (*.pem *.pub *.txt);;All (*)")
        if path:
            self.expected_key.setText(path)

    def _choose_verify_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "A bundle folder to verify", str(self.exports_dir()))
        if path:
            self.verify(path)

    def _choose_verify_zip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A bundle .zip to verify", str(self.exports_dir()),
                                              "Zip files (*.zip)")
        if path:
            self.verify(path)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.verify(paths[0])


def render_report(result: RunResult, config: RunConfigRecord, generator: str = "release") -> str:
    """The run's privacy guarantee as the report will state it, in an analyst's words (``config``: config.json;
    ``generator``: the network the export samples from)."""
    lines = [f"<b>{html.escape(result.run_id)}</b> ({html.escape(result.recipe)})"]
    if result.private:
        lines.append(f"<b>({format_epsilon(result.epsilon)}, {result.delta:.3g})-differentially private</b>: "
                     f"epsilon {format_epsilon(result.epsilon)}, delta {result.delta:.3g}")
    else:
        lines.append("<b style='color:#b00020'>NOT differentially private (epsilon = infinity)</b>: parts "
                     f"trained without protection: {html.escape(', '.join(result.nonprivate_parts))}. "
                     "Export refuses it unless a research export is asked for.")
    unit = result.unit_of_privacy
    lines.append("protects: " + {"patient": "each patient (all of a patient's images together)",
                                 "image": "each image with its label"}.get(unit, str(unit)))
    # The data's name and size as the bundle's report states them: the exact count only where declared public.
    summary = dict(config.dataset)
    dataset = dataset_section(summary, dict(result.dataset), result, plan=dict(config.plan))
    lines.append(f"dataset: {html.escape(str(dataset['name']))} ({html.escape(size_text(dataset))})")
    local = summary.get("name")
    if local and local != dataset["name"]:
        lines.append(f"(its name here, {html.escape(str(local))}, stays on this machine: it was not declared "
                     "public at import)")
    lines.extend(_plain_language_lines(result, generator))
    return "<br>".join(lines)


def render_report_details(result: RunResult) -> str:
    """The exact values behind the report (accountants, noise multipliers, sample rates)."""
    lines = []
    values = result.accountant_values
    if values:
        lines.append("epsilon by accountant (the guarantee is the smallest): "
                     + ", ".join(f"{name} {format_epsilon(value)}" for name, value in values.items()))
    for mechanism in result.mechanisms:
        lines.append(f"{html.escape(mechanism['part'])}: noise multiplier (sigma) {mechanism['noise_multiplier']:.4g}, "
                     f"sample rate {mechanism['sample_rate']:.4g}, {mechanism['steps']} steps")
    if result.secure_rng_note:
        lines.append(f"random number generator: {html.escape(result.secure_rng_note)}")
    return "<br>".join(lines) or "No further values recorded."


def _plain_language_lines(result: RunResult, generator: str) -> list[str]:
    """The report's own plain-language summary (the words the bundle will carry)."""
    from dpsad_core.export.report import plain_language

    try:
        text = plain_language(result, generator=generator)
    except (KeyError, TypeError, ValueError):
        return []  # a result from an older run lacks a field the summary needs: the numbers above stand
    lines = ["", "<b>What this guarantee means</b>"]
    lines.extend(f"&bull; {html.escape(sentence)}" for sentence in text["means"])
    lines.append("<b>What it does not mean</b>")
    lines.extend(f"&bull; {html.escape(sentence)}" for sentence in text["does_not_mean"])
    return lines


def render_verification(result: Any) -> str:
    summary = getattr(result, "summary", {}) or {}
    if getattr(result, "ok", False):
        head = "<b style='color:#1b7f3b'>Valid</b>: every file matches the signed manifest."
        if not getattr(result, "key_pinned", False):
            head += (" The signer's key was taken from the bundle itself: compare its fingerprint with the "
                     "one the sender gave you.")
    else:
        problems = getattr(result, "problems", ()) or ()
        head = ("<b style='color:#b00020'>NOT valid</b>:<ul>"
                + "".join(f"<li>{html.escape(str(p))}</li>" for p in list(problems)[:20]) + "</ul>")
    lines = [head]
    if "private" in summary:
        lines.append("differentially private: " + ("yes" if summary["private"] else "<b>NO</b>"))
    if isinstance(summary.get("epsilon"), (int, float)):
        delta = summary.get("delta")
        lines.append(f"guarantee: epsilon {format_epsilon(summary['epsilon'])}"
                     + (f", delta {delta:.3g}" if isinstance(delta, (int, float)) else ""))
    if "recipe" in summary:
        lines.append(f"recipe: {html.escape(str(summary['recipe']))}")
    fingerprint = getattr(result, "signer_fingerprint", None)
    if fingerprint:
        lines.append(f"signer: {html.escape(fingerprint)}")
    return "<br>".join(lines)
