"""Datasets screen: import by dialog or drag-and-drop, then see counts, size, fingerprint and budget.

Reading a dataset can take seconds (MNIST, DICOM folders), so imports and previews run in worker
threads. The preview shows private images: it stays on this screen and is never written anywhere.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dpsad_workbench.core import format_epsilon
from dpsad_workbench.folders import data_folder, remember_data
from dpsad_workbench.images import ImageLabel
from dpsad_workbench.screens.new_run import overlap_text
from dpsad_workbench.settings import AppSettings
from dpsad_workbench.widgets import LongValue, WrapLabel
from dpsad_workbench.worker import WorkerOwner, call_in_worker

FILE_FILTER = "Datasets (*.csv *.npz *.gz *idx*-ubyte *idx3-ubyte);;All files (*)"


class DatasetsScreen(WorkerOwner, QWidget):
    """Lists saved datasets; ``import_path`` imports one (the dialog and drops both call it)."""

    imported = Signal(dict)
    import_failed = Signal(object)
    datasets_changed = Signal(list)
    preview_ready = Signal(str)
    cap_changed = Signal(dict)
    error = Signal(object)

    def __init__(self, settings: Callable[[], AppSettings], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._workers: set = set()
        self.datasets: list[dict[str, Any]] = []
        self._last_path = ""  # the path of the last import, for "Import again with these classes"
        self.setAcceptDrops(True)
        self._build()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QHBoxLayout(self)
        splitter = QSplitter()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("<b>Imported datasets</b>"))
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.currentItemChanged.connect(self._selected)
        left_layout.addWidget(self.list, 1)
        manage = QHBoxLayout()
        self.rename_button = QPushButton("Rena&me...")
        self.delete_button = QPushButton("&Delete...")
        self.rename_button.clicked.connect(self._ask_rename)
        self.delete_button.clicked.connect(self.delete_selected)
        manage.addWidget(self.rename_button)
        manage.addWidget(self.delete_button)
        manage.addStretch(1)
        left_layout.addLayout(manage)
        hint = WrapLabel("Drop a folder of class subfolders, a CSV manifest, MNIST IDX files or a MedMNIST .npz "
                      "on this window to import it.")
        hint.setWordWrap(True)
        left_layout.addWidget(hint)
        options = QGroupBox("Import options")
        form = QFormLayout(options)
        self.name = QLineEdit()
        self.name.setPlaceholderText("derived from the file or folder name")
        form.addRow("&Name:", self.name)
        self.classes = QLineEdit()
        self.classes.setPlaceholderText("e.g. normal,pneumonia")
        self.classes.setToolTip("The class names, in label order, that you declare public: every release shows "
                                "them. Needed for class folders, CSV manifests and DICOM; records with another "
                                "label are refused. MNIST and MedMNIST files bring their own.")
        form.addRow("C&lasses:", self.classes)
        self.resolution = QSpinBox()
        self.resolution.setRange(0, 512)
        self.resolution.setSpecialValueText("keep")
        self.resolution.setToolTip("Resize every image to this size (needed when sizes differ)")
        form.addRow("&Resize to:", self.resolution)
        self.grey = QCheckBox("Convert colour to grey")
        form.addRow("", self.grey)
        self.skip_corrupt = QCheckBox("Skip unreadable files")
        self.skip_corrupt.setToolTip("Import the readable images; the skipped files are listed after the import")
        form.addRow("", self.skip_corrupt)
        self.split = QComboBox()
        self.split.addItems(["train", "val", "test"])
        self.split.setToolTip("Which split of an MNIST IDX folder or a MedMNIST .npz")
        form.addRow("S&plit:", self.split)
        self.min_records = QSpinBox()
        self.min_records.setRange(1, 10_000_000)
        self.min_records.setValue(100)
        form.addRow("Fewest &units:", self.min_records)
        left_layout.addWidget(options)
        buttons = QHBoxLayout()
        self.import_folder_button = QPushButton("Import &folder...")
        self.import_file_button = QPushButton("Import f&ile...")
        self.import_folder_button.clicked.connect(self._choose_folder)
        self.import_file_button.clicked.connect(self._choose_file)
        buttons.addWidget(self.import_folder_button)
        buttons.addWidget(self.import_file_button)
        left_layout.addLayout(buttons)
        self.retry_button = QPushButton("Import a&gain with these classes")
        self.retry_button.clicked.connect(lambda: self.import_path(self._last_path))
        self.retry_button.hide()
        left_layout.addWidget(self.retry_button)
        self.status = WrapLabel("")
        left_layout.addWidget(self.status)
        splitter.addWidget(left)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        details = QGroupBox("Details")
        self.details_form = QFormLayout(details)
        self.fields: dict[str, QLabel | LongValue] = {}
        for key, label in (("name", "Name"), ("records", "Images"), ("units", "Privacy units"),
                           ("size", "Image size"), ("classes", "Classes"), ("fingerprint", "Fingerprint"),
                           ("budget", "Privacy budget spent"), ("source", "Imported from")):
            value: QLabel | LongValue
            if key in ("fingerprint", "source"):  # no spaces to wrap at: a label this long widens the window
                value = LongValue("-")
            else:
                value = QLabel("-")
                value.setWordWrap(True)
                value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = value
            self.details_form.addRow(f"{label}:", value)
        right_layout.addWidget(details)
        right_layout.addWidget(self._build_budget())
        lower = QHBoxLayout()
        self.counts = QTableWidget(0, 2)
        self.counts.setHorizontalHeaderLabels(["class", "images"])
        self.counts.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.counts.verticalHeader().hide()
        self.counts.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.counts.setMaximumWidth(260)
        self.counts.setMinimumWidth(120)  # narrow windows: the class names elide rather than force a scrollbar
        lower.addWidget(self.counts)
        preview_box = QGroupBox("Preview (shown only here)")  # a short title: a group box is as wide as its title
        preview_box.setToolTip("The first images of each class, one row per class; they stay on this screen")
        preview_layout = QVBoxLayout(preview_box)
        self.preview = ImageLabel("Select a dataset to preview it.")
        self.preview.setObjectName("datasetPreview")
        preview_layout.addWidget(self.preview)
        lower.addWidget(preview_box, 1)
        right_layout.addLayout(lower, 1)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        outer.addWidget(splitter)

    def _build_budget(self) -> QGroupBox:
        """The budget panel: each run's epsilon, the composed total (and why it is below the sum), the cap."""
        box = QGroupBox("Privacy budget of this dataset")
        layout = QVBoxLayout(box)
        self.budget_runs = QTableWidget(0, 4)
        self.budget_runs.setHorizontalHeaderLabels(["run", "recipe", "epsilon", "state"])
        self.budget_runs.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.budget_runs.verticalHeader().hide()
        self.budget_runs.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.budget_runs.setMaximumHeight(120)
        layout.addWidget(self.budget_runs)
        self.budget_total = WrapLabel("")
        layout.addWidget(self.budget_total)
        cap_row = QHBoxLayout()
        cap_label = QLabel("C&ap:")
        cap_label.setToolTip("The largest total epsilon allowed on this dataset: runs that would go over are refused")
        cap_row.addWidget(cap_label)
        self.cap_edit = QLineEdit()
        cap_label.setBuddy(self.cap_edit)
        self.cap_edit.setPlaceholderText("no cap")
        self.cap_edit.setMaximumWidth(90)
        self.set_cap_button = QPushButton("Set &cap...")
        self.remove_cap_button = QPushButton("Remo&ve cap...")
        self.set_cap_button.clicked.connect(lambda: self.set_cap(self.cap_edit.text()))
        self.remove_cap_button.clicked.connect(lambda: self.set_cap(None))
        cap_row.addWidget(self.cap_edit)
        cap_row.addWidget(self.set_cap_button)
        cap_row.addWidget(self.remove_cap_button)
        cap_row.addStretch(1)
        layout.addLayout(cap_row)
        self._budget: dict[str, Any] | None = None
        self._show_budget(None)
        return box

    def _show_budget(self, budget: dict[str, Any] | None, problem: str | None = None) -> None:
        self._budget = budget
        runs = (budget or {}).get("run_list", [])
        self.budget_runs.setRowCount(len(runs))
        for row, run in enumerate(runs):
            state = "running (its plan is reserved)" if run["active"] else "ended"
            for column, value in enumerate((run["run_id"], run["recipe"] or run["kind"], format_epsilon(run["epsilon"]),
                                            state)):
                self.budget_runs.setItem(row, column, QTableWidgetItem(str(value)))
        self.set_cap_button.setEnabled(budget is not None)
        self.remove_cap_button.setEnabled(budget is not None and budget.get("cap_epsilon") is not None)
        if budget is None:
            self.budget_total.setText(problem or "")
            return
        cap = budget.get("cap_epsilon")
        self.cap_edit.setText("" if cap is None else f"{cap:g}")
        self.budget_total.setText(budget_panel_text(budget))

    def set_cap(self, text: str | None):
        """Set the dataset's cap (``None``: remove it) after a confirmation; returns the worker writing it."""
        from dpsad_core.errors import ConfigError
        from dpsad_workbench import dialogs

        meta = self.current_meta()
        if meta is None or self._budget is None:
            return None
        cap = None
        if text is not None:
            try:
                cap = float(text)
            except ValueError:
                cap = float("nan")
            if not (0 < cap < float("inf")):
                self.error.emit(ConfigError(f"cap {text!r} is not a positive epsilon", field="cap", value=text,
                                            remedy="type a number such as 8, or use Remove cap"))
                return None
        total = self._budget.get("total") or 0.0
        if cap is None:
            question = (f"Remove the privacy budget cap of {meta['name']}?\n\nRuns on it will no longer be refused "
                        "for the total they bring. Do this only if your data governance allows it.")
        else:
            question = (f"Set the privacy budget cap of {meta['name']} to epsilon {cap:g}?\n\nA new run is refused "
                        "when it would bring the dataset's total above the cap. Spent so far: "
                        f"{format_epsilon(total)}.")
            if total > cap:
                question += " That is already over this cap: no new run on this dataset will be allowed."
        if not dialogs.confirm(self, "Privacy budget cap", question):
            return None
        worker = call_in_worker("dpsad_workbench.core:set_budget_cap", self._settings().workspace_path(),
                                self._budget["dataset_fingerprint"], cap, meta["name"], parent=self)
        queued = Qt.ConnectionType.QueuedConnection
        worker.yielded.connect(self._on_cap_set, queued)
        worker.errored.connect(self.error, queued)
        self._keep(worker)
        worker.start()
        return worker

    def _on_cap_set(self, budget: dict[str, Any]) -> None:
        self._show_budget(budget)
        self.fields["budget"].setText(self._budget_text({"budget_error": None, "budget": budget}))
        self.cap_changed.emit(budget)

    def current_meta(self) -> dict[str, Any] | None:
        return next((m for m in self.datasets if m["name"] == self.current_name()), None)

    # -- listing -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        from dpsad_workbench.core import list_datasets

        current = self.current_name()
        try:
            self.datasets = list_datasets(self._settings().workspace_path())
        except Exception as error:  # noqa: BLE001 - a dialog, not a crash
            self.error.emit(error)
            return
        self.list.blockSignals(True)
        self.list.clear()
        for meta in self.datasets:
            item = QListWidgetItem(f"{meta['name']}  ({meta['num_records']} images, {meta['num_classes']} classes)")
            item.setData(Qt.ItemDataRole.UserRole, meta["name"])
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.datasets_changed.emit(list(self.datasets))
        # The demo is selected only by the analyst: reading it takes seconds, and it is not their data.
        saved = [meta["name"] for meta in self.datasets if not meta.get("builtin")]
        if current in self.names() or saved:
            self.select(current if current in self.names() else saved[0])
        else:
            self._show(None)

    def names(self) -> list[str]:
        return [meta["name"] for meta in self.datasets]

    def current_name(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def select(self, name: str) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentRow(row)
                self._selected(self.list.item(row), None)
                return

    def _selected(self, item, previous) -> None:  # Qt passes both
        if item is None:
            self._show(None)
            return
        if self.status.text().startswith("The import"):
            self.status.setText("")  # an old failure is not news once the analyst moves on
        name = item.data(Qt.ItemDataRole.UserRole)
        meta = next((m for m in self.datasets if m["name"] == name), None)
        self._show(meta)

    # -- rename and delete -------------------------------------------------------------------------
    def _ask_rename(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        name = self.current_name()
        if name is None:
            return
        new_name, accepted = QInputDialog.getText(self, "Rename dataset", f"New name for {name}:", text=name)
        if accepted and new_name.strip() and new_name.strip() != name:
            self.rename_selected(new_name.strip())

    def rename_selected(self, new_name: str) -> bool:
        """Rename the selected dataset; True when it was renamed (its spend in the ledger stays with it)."""
        from dpsad_workbench.core import rename_dataset

        meta = self.current_meta()
        if meta is None or meta.get("builtin"):
            return False
        try:
            rename_dataset(self._settings().workspace_path(), meta["name"], new_name)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.error.emit(error)
            return False
        self.refresh()
        self.select(new_name)
        return True

    def delete_selected(self) -> bool:
        """Delete the selected dataset after a confirmation; True when it was deleted."""
        from dpsad_workbench import dialogs
        from dpsad_workbench.core import delete_dataset

        meta = self.current_meta()
        if meta is None or meta.get("builtin"):
            return False
        question = (f"Delete the dataset {meta['name']} from the workspace?\n\nIts imported copy is removed (your "
                    "original files are not touched). The privacy its runs spent stays counted in the ledger: "
                    "importing the same images again brings that spend back with them.")
        if not dialogs.confirm(self, "Delete dataset", question):
            return False
        try:
            delete_dataset(self._settings().workspace_path(), meta["name"])
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.error.emit(error)
            return False
        self.refresh()
        return True

    def _show(self, meta: dict[str, Any] | None) -> None:
        builtin = meta is not None and bool(meta.get("builtin"))
        self.rename_button.setEnabled(meta is not None and not builtin)
        self.delete_button.setEnabled(meta is not None and not builtin)
        if meta is None:
            for value in self.fields.values():
                value.setText("-")
            self.counts.setRowCount(0)
            self.preview.set_array(None)
            self.preview.setText("No dataset of yours yet: import one with the buttons on the left, or drop it "
                                 "here. The demo data is in the list to try the workbench.")
            self._show_budget(None)
            return
        self.fields["name"].setText(meta["name"])
        self.fields["records"].setText(f"{meta['num_records']:,}"
                                       + (f" ({meta['skipped']} unreadable files skipped)"
                                          if meta.get("skipped") else ""))
        self.fields["units"].setText(f"{meta['num_privacy_units']:,} ({meta['unit']}s)")
        colour = "grey" if meta["channels"] == 1 else "colour"
        self.fields["size"].setText(f"{meta['resolution']} x {meta['resolution']} pixels, {colour}")
        self.fields["classes"].setText(str(meta["num_classes"]))
        self.fields["fingerprint"].setText(meta["fingerprint"] or "computing...")
        self.fields["source"].setText(str(meta.get("source", "-")))
        self._show_counts(meta.get("class_counts", {}))
        self._load_details(meta["name"], meta["fingerprint"])

    def _show_counts(self, counts: dict[str, int]) -> None:
        self.counts.setRowCount(len(counts))
        for row, (name, count) in enumerate(counts.items()):
            self.counts.setItem(row, 0, QTableWidgetItem(str(name)))
            number = QTableWidgetItem(f"{count:,}")
            number.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.counts.setItem(row, 1, number)

    def _budget_text(self, details: dict[str, Any]) -> str:
        from dpsad_workbench.screens.new_run import budget_text

        if details["budget_error"]:
            return f"could not be read ({details['budget_error']})"
        if not details["budget"]:
            return f"nothing yet (epsilon {format_epsilon(0.0)})"
        return budget_text(details["budget"]).removeprefix("Budget on this dataset: ")

    def _load_details(self, name: str, fingerprint: str) -> None:
        workspace = self._settings().workspace_path()
        self.preview.set_array(None)
        self.preview.setText("Loading the preview...")
        self.fields["budget"].setText("reading the privacy ledger...")
        self._show_budget(None, "Reading the privacy ledger...")
        worker = call_in_worker("dpsad_workbench.core:dataset_details", workspace, name, fingerprint, parent=self)
        queued = Qt.ConnectionType.QueuedConnection
        worker.yielded.connect(self._on_details, queued)
        worker.errored.connect(self.error, queued)
        self._keep(worker)
        worker.start()

    def _on_details(self, details: dict[str, Any]) -> None:
        if details["name"] != self.current_name():
            return  # the user moved on to another dataset
        if details.get("meta"):  # the demo: its fingerprint and counts were computed with the details
            meta = next((m for m in self.datasets if m["name"] == details["name"]), None)
            if meta is not None:
                meta.update(details["meta"])
                self.fields["fingerprint"].setText(meta["fingerprint"])
                self._show_counts(meta.get("class_counts", {}))
        self.fields["budget"].setText(self._budget_text(details))
        problem = details["budget_error"]
        self._show_budget(details["budget"], problem and f"The budget cannot be read: {problem}")
        if details["grid"] is not None:
            self.preview.set_array(details["grid"])
        else:
            self.preview.setText(f"No preview: {details['grid_error']}")
        self.preview_ready.emit(details["name"])

    # -- importing ---------------------------------------------------------------------------------
    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import a folder of class subfolders or MNIST IDX files",
                                                str(data_folder(self._settings().workspace_path())))
        if path:
            remember_data(path)
            self.import_path(path)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a CSV manifest, an IDX file or a MedMNIST .npz",
                                              str(data_folder(self._settings().workspace_path())), FILE_FILTER)
        if path:
            remember_data(path)
            self.import_path(path)

    def import_path(self, path: str | Path):
        """Import ``path`` with the options on screen; returns the worker doing it."""
        workspace = self._settings().workspace_path()
        self._last_path = str(path)
        self.retry_button.hide()
        options: dict[str, Any] = {
            "name": self.name.text().strip() or None, "resolution": self.resolution.value() or None,
            "grey": self.grey.isChecked(), "min_records": self.min_records.value(),
            "split": self.split.currentText(), "skip_corrupt": self.skip_corrupt.isChecked(),
            "classes": self.classes.text().strip() or None}
        self.status.setText(f"Importing {html.escape(str(path))}...")
        self._set_busy(True)
        worker = call_in_worker("dpsad_workbench.core:import_dataset", str(path), workspace=workspace, parent=self,
                                **options)
        queued = Qt.ConnectionType.QueuedConnection
        worker.yielded.connect(self._on_imported, queued)
        worker.errored.connect(self._on_import_error, queued)
        worker.finished_work.connect(lambda: self._set_busy(False), queued)
        self._keep(worker)
        worker.start()
        return worker

    def _on_imported(self, summary: dict[str, Any]) -> None:
        skipped = summary.get("skipped_files") or []
        listed = "".join(f"<br>{html.escape(path)}" for path in skipped[:50])
        more = f"<br>... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
        shared = "".join(f" {html.escape(overlap_text(overlap))}" for overlap in summary.get("overlaps") or [])
        self.status.setText(f"Imported '{summary['name']}': {summary['num_records']} images in "
                            f"{summary['num_classes']} classes." + shared
                            + (f" Skipped {len(skipped)} unreadable file(s):{listed}{more}" if skipped else ""))
        self.name.clear()
        self.classes.clear()
        self.refresh()
        self.select(summary["name"])
        self.imported.emit(summary)

    def _on_import_error(self, error: BaseException) -> None:
        found = getattr(error, "value", None)
        if getattr(error, "field", None) == "classes" and isinstance(found, list):
            self.ask_for_classes(found)
            self.import_failed.emit(error)
            return
        self.status.setText("The import failed: see the message.")
        self.import_failed.emit(error)
        self.error.emit(error)

    def ask_for_classes(self, found: list[str]) -> None:
        """The data's class names came from its folder or label names: ask the analyst to declare the list."""
        self.classes.setText(",".join(found))
        self.classes.setFocus()
        self.classes.selectAll()
        self.status.setText(
            "<b>Declare the class names before importing.</b> Every release shows the class list, so it must be "
            "one you may make public, not read off the data: one record with a rare label would otherwise add "
            f"its class to every release. The labels found are now in Classes ({html.escape(', '.join(found))}): "
            "keep those you may publish, in the order you want, and import again. A label left out stops the "
            "import, naming its records, so that they can be taken out of the data first.")
        self.retry_button.show()

    def _set_busy(self, busy: bool) -> None:
        self.import_folder_button.setEnabled(not busy)
        self.import_file_button.setEnabled(not busy)
        self.retry_button.setEnabled(not busy)

    # -- drag and drop -----------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.import_path(paths[0])


def budget_panel_text(budget: dict[str, Any]) -> str:
    """The budget panel's total, why it is below the sum of the runs, and the cap (HTML)."""
    runs = budget.get("run_list", [])
    total = budget.get("total") or 0.0
    if not runs:
        text = "Nothing spent on this dataset yet."
    else:
        text = f"<b>Total spent: epsilon {format_epsilon(total)}</b> over {len(runs)} run(s)"
        sum_of_runs = budget.get("sum_of_runs", total)
        if len(runs) > 1 and sum_of_runs > total:
            text += (f", less than the runs' epsilons added up ({format_epsilon(sum_of_runs)}): the ledger combines "
                     "all the noise the runs added on this dataset and bounds their joint privacy loss together, "
                     "which is tighter than adding each run's bound")
        text += f" (at delta {budget.get('total_delta', 0):.3g})."
    for overlap in budget.get("overlaps") or []:
        text += " " + html.escape(overlap_text(overlap))
    cap = budget.get("cap_epsilon")
    if cap is None:
        text += " No cap is set: runs are never refused for the total they bring."
    else:
        text += f" Cap: epsilon {format_epsilon(cap)}, about {format_epsilon(budget.get('remaining'))} left."
    return text
