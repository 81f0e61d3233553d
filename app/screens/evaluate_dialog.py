"""The Runs screen's "Evaluate..." dialog: which real held-out data to test against, how many images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dpsad_workbench.folders import data_folder, remember_data, workspace_of
from dpsad_workbench.screens.datasets import FILE_FILTER
from dpsad_workbench.widgets import WrapLabel

DEFAULT_PER_CLASS = 100  # EvaluationOptions' default


HELD_OUT_WORDS = ("test", "held", "val")  # names that say a dataset was set aside for testing


def _classes(meta: dict[str, Any]) -> tuple[str, ...] | None:
    names = meta.get("class_names") or list(meta.get("class_counts") or ())
    return tuple(names) or None


def suggested_test_data(data_spec: str, saved: Sequence[dict[str, Any]] = ()) -> str:
    """What to test a run on when the user has not said: real images other than the training data.

    "demo" and a path (an MNIST folder, a MedMNIST file) have a test split that ``evaluate`` reads
    instead of the training split. A saved dataset is one set: another saved dataset with the same
    classes and other images (another fingerprint) is suggested, one named as held out first.
    """
    if data_spec == "demo" or Path(data_spec).expanduser().exists():
        return data_spec
    trained = next((meta for meta in saved if meta["name"] == data_spec), None)
    if trained is None or _classes(trained) is None:
        return ""
    others = [meta for meta in saved if meta["name"] != data_spec and not meta.get("builtin")
              and _classes(meta) == _classes(trained) and meta.get("fingerprint") != trained.get("fingerprint")]
    others.sort(key=lambda meta: not any(word in meta["name"].lower() for word in HELD_OUT_WORDS))
    return others[0]["name"] if others else ""


class EvaluateDialog(QDialog):
    """``test_data()``, ``per_class()`` and ``generator()`` once accepted; ``per_class()`` is None for a DP-RDM
    run; ``few_step``: the run distilled a few-step student, so its DP teacher can be evaluated instead."""

    def __init__(self, run: dict[str, Any], *, data_spec: str, saved_datasets: Sequence[dict[str, Any]], rdm: bool,
                 few_step: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Evaluate {run['run_id']}")
        layout = QVBoxLayout(self)
        intro = WrapLabel(
            "Samples synthetic images from the run's released model (free in privacy), trains classifiers on "
            "them and tests those on <b>real images the model never saw</b>; also measures fidelity and "
            "memorisation. The numbers are computed from the private training data without noise: they stay "
            "on this machine and are not covered by the run's epsilon.")
        intro.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(intro)
        form = QFormLayout()
        self.test = QComboBox()
        edit = QLineEdit()  # the combo's own editor (setLineEdit makes it editable), with a hint when empty
        edit.setPlaceholderText("a saved dataset's name, or a folder or file of real test images")
        self.test.setLineEdit(edit)
        self.test.addItem("demo")
        # The training data itself is not offered: a model tested on what it trained on looks better than it is.
        self.test.addItems([meta["name"] for meta in saved_datasets if meta["name"] not in ("demo", data_spec)])
        self.test.setEditText(suggested_test_data(data_spec, saved_datasets))
        row = QHBoxLayout()
        row.addWidget(self.test, 1)
        folder, file = QPushButton("Folder..."), QPushButton("File...")
        folder.clicked.connect(self._choose_folder)
        file.clicked.connect(self._choose_file)
        row.addWidget(folder)
        row.addWidget(file)
        label = QLabel("Real &test data:")
        label.setBuddy(self.test)  # a row of several widgets gets no buddy of its own: Alt+T needs one
        form.addRow(label, row)
        self.per_class_box = QSpinBox()
        self.per_class_box.setRange(1, 100_000)
        self.per_class_box.setValue(DEFAULT_PER_CLASS)
        self.per_class_box.setEnabled(not rdm)
        if rdm:
            self.per_class_box.setToolTip("A DP-RDM run is evaluated on the images it generated: making more "
                                          "would spend privacy.")
        form.addRow("Synthetic images per &class:", self.per_class_box)
        self.generator_box = QComboBox()
        self.generator_box.addItem("the few-step student (what the run releases)", "release")
        self.generator_box.addItem("its DP teacher, with DDIM (slower)", "teacher")
        self._few_step = few_step
        if few_step:
            form.addRow("Images &from:", self.generator_box)
        layout.addLayout(form)
        layout.addStretch(1)
        self._rdm = rdm
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("&Evaluate")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(560, self.sizeHint().height())

    def test_data(self) -> str:
        return self.test.currentText().strip()

    def per_class(self) -> int | None:
        return None if self._rdm else self.per_class_box.value()

    def generator(self) -> str:
        """The network whose images are evaluated: "release" unless a few-step run's teacher was chosen."""
        return str(self.generator_box.currentData()) if self._few_step else "release"

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Real test images: an MNIST folder or class subfolders",
                                                str(data_folder(workspace_of(self))))
        if path:
            remember_data(path)
            self.test.setEditText(path)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Real test images", str(data_folder(workspace_of(self))),
                                              FILE_FILTER)
        if path:
            remember_data(path)
            self.test.setEditText(path)
