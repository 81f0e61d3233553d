"""Every file dialog opens in a folder that makes sense, not where the app was started (issue 18, item 10).

Bundles and keys: the workspace's exports folder. The analyst's data: beside the data chosen last,
and the workspace before that. The dialogs are replaced by recorders of the folder they were given.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog


@pytest.fixture
def opened(monkeypatch):
    """Each dialog's (title, start folder); the dialogs answer with the path queued in ``opened.answers``."""

    class Recorder(list):
        answers: list[str] = []

        def folder(self, parent, title, start="", *args, **kwargs):
            self.append((title, str(start)))
            return self.answers.pop(0) if self.answers else ""

        def file(self, parent, title, start="", *args, **kwargs):
            self.append((title, str(start)))
            return (self.answers.pop(0) if self.answers else "", "")

    recorder = Recorder()
    recorder.answers = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", recorder.folder)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", recorder.file)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", recorder.file)
    return recorder


def starts(recorder) -> list[Path]:
    return [Path(start) if Path(start).is_dir() else Path(start).parent for _title, start in recorder]


def test_keys_and_bundles_open_in_the_exports_folder(window, workspace, opened, answers):
    exports = workspace / "exports"
    keys = window.settings_screen.keys
    keys._choose_export()
    answers["answers"].append(True)  # yes, import an organisation key
    keys._choose_import()
    window.export._browse_out()
    assert starts(opened) == [workspace] * 3  # no exports folder yet: the workspace
    exports.mkdir()
    opened.clear()
    keys._choose_export()
    answers["answers"].append(True)
    keys._choose_import()
    window.export._choose_verify_folder()
    window.export._choose_verify_zip()
    window.export._browse_key()
    assert starts(opened) == [exports] * 5
    assert opened[0][1] == str(exports / "dpsad-public-key.pem")


def test_data_dialogs_open_beside_the_data_chosen_last(window, workspace, opened, tmp_path, monkeypatch):
    from dpsad_workbench import folders
    from dpsad_workbench.screens.evaluate_dialog import EvaluateDialog

    monkeypatch.setattr(folders, "_last_data_folder", None)
    screen = window.datasets
    imported = []
    monkeypatch.setattr(screen, "import_path", imported.append)
    screen._choose_folder()  # cancelled: nothing chosen, nothing remembered
    data = tmp_path / "hospital" / "xrays"
    data.mkdir(parents=True)
    opened.answers.append(str(data))
    screen._choose_folder()
    assert imported == [str(data)]
    screen._choose_file()
    dialog = EvaluateDialog({"run_id": "run-1"}, data_spec="demo", saved_datasets=[], rdm=False, parent=window)
    dialog._choose_folder()
    dialog._choose_file()
    dialog.deleteLater()
    assert starts(opened) == [workspace, workspace] + [tmp_path / "hospital"] * 3
