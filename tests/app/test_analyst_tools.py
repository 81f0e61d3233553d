"""What an analyst expects: help, dataset rename/delete, run progress, export list and report, import errors."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tests.app.conftest import write_class_folder


def test_f1_and_the_help_menu_open_the_guide(window, qtbot):
    menus = [action.text().replace("&", "") for action in window.menuBar().actions()]
    assert "Help" in menus
    qtbot.keyClick(window, Qt.Key.Key_F1)
    guide = window.help_dialog
    assert guide is not None and guide.isVisible()
    text = guide.text.toPlainText()
    for words in ("Epsilon", "Delta", "The unit of privacy", "Recipes", "dpdm", "privacy budget"):
        assert words in text
    guide.close()


def save(workspace, folder, name):
    from dpsad_core.data import load_dataset, save_dataset

    dataset = load_dataset(folder, min_records=20, name=name)
    save_dataset(dataset, workspace)
    return dataset.fingerprint()


def test_rename_and_delete_a_dataset_keep_its_spend_in_the_ledger(window, answers, workspace, tmp_path):
    from dpsad_core.privacy.ledger import PrivacyLedger
    from dpsad_core.privacy.mechanisms import Mechanism

    fingerprint = save(workspace, write_class_folder(tmp_path / "scans", classes=2, per_class=12), "scans")
    PrivacyLedger(workspace).record_spend(run_id="run-a", dataset_fingerprint=fingerprint, kind="train", delta=1e-5,
                                          mechanisms=[Mechanism(part="dpdm", noise_multiplier=1.0, sample_rate=0.1,
                                                                steps=10)], finished=True)
    screen = window.datasets
    screen.refresh()
    screen.select("scans")
    assert screen.rename_selected("ward-7") is True
    assert screen.names() == ["ward-7", "demo"] and screen.current_name() == "ward-7"
    renamed = next(meta for meta in screen.datasets if meta["name"] == "ward-7")
    assert renamed["fingerprint"] == fingerprint and (workspace / "datasets" / "ward-7").is_dir()
    assert window.new_run.data.findData("ward-7") >= 0 and window.new_run.data.findData("scans") < 0
    answers["answers"] += [False, True]
    assert screen.delete_selected() is False and screen.names() == ["ward-7", "demo"]
    assert screen.delete_selected() is True and screen.names() == ["demo"]
    assert answers["questions"] == ["Delete dataset", "Delete dataset"]
    assert [entry.run_id for entry in PrivacyLedger(workspace).entries(fingerprint)] == ["run-a"]  # still counted
    screen.select("demo")
    assert not screen.delete_button.isEnabled() and not screen.rename_button.isEnabled()  # built in


def fake_run(tmp_path, run_id, state, *, phase=None, step=None, dataset="xrays"):
    folder = tmp_path / run_id
    folder.mkdir()
    plan = {"phases": [{"name": "teacher", "steps": 400}, {"name": "student", "steps": 400}]}
    (folder / "config.json").write_text(json.dumps({"config": {"max_steps": 4}, "plan": plan}))
    (folder / "status.json").write_text(json.dumps({"state": state, "phase": phase, "step": step}))
    return {"run_id": run_id, "state": state, "recipe": "dpsad-split", "dataset": dataset, "epsilon": 2.0,
            "private": True, "epsilon_target": 8.0, "path": str(folder), "created": "2026-12-03T10:00:00"}


def test_runs_show_how_far_an_interrupted_run_got(window, monkeypatch, tmp_path):
    runs = [fake_run(tmp_path, "stopped", "interrupted", phase="student", step=3)]
    monkeypatch.setattr("dpsad_workbench.core.list_runs", lambda workspace: runs)
    window.runs.refresh()
    column = list(window.runs.table.horizontalHeaderItem(c).text()
                  for c in range(window.runs.table.columnCount())).index("progress")
    assert window.runs.table.item(0, column).text() == "7 of 8 steps"  # 4 teacher steps, then 3 of 4
    assert "progress: 7 of 8 steps done" in window.runs.summary.text()


def test_export_names_the_dataset_of_each_run_opens_dialogs_in_exports_and_opens_the_report(
        window, monkeypatch, tmp_path, workspace):
    from dpsad_core.events import ExportFinished
    from dpsad_core.export.layout import REPORT_HTML

    runs = [fake_run(tmp_path, "done", "finished", dataset="chest-xrays")]
    monkeypatch.setattr("dpsad_workbench.core.list_runs", lambda workspace: runs)
    screen = window.export
    screen.refresh()
    assert "on chest-xrays" in screen.run.itemText(0)
    (workspace / "exports").mkdir(exist_ok=True)
    opened_at = []
    monkeypatch.setattr("dpsad_workbench.screens.export.QFileDialog.getExistingDirectory",
                        lambda parent, title, folder="": opened_at.append(folder) or "")
    screen._browse_out()
    screen._choose_verify_folder()
    assert opened_at == [str(workspace / "exports")] * 2
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / REPORT_HTML).write_text("<html></html>")
    assert not screen.open_report_button.isEnabled()
    screen._on_export_event(ExportFinished(bundle_path=bundle, summary={}))
    assert screen.open_report_button.isEnabled()
    urls = []
    monkeypatch.setattr("PySide6.QtGui.QDesktopServices.openUrl", lambda url: urls.append(url.toLocalFile()))
    screen.open_report_button.click()
    assert urls == [str(bundle / REPORT_HTML)]


def test_an_import_lists_every_unreadable_file(window, qtbot, tmp_path):
    folder = write_class_folder(tmp_path / "scans", classes=2, per_class=60)
    bad = [folder / "class_0" / "x1.png", folder / "class_0" / "x2.png", folder / "class_1" / "x3.png"]
    for path in bad:
        path.write_bytes(b"not an image")
    with qtbot.waitSignal(window.datasets.import_failed, timeout=60_000) as blocker:
        window.datasets.import_path(folder)
    for box in window.findChildren(QMessageBox):
        box.close()
    message = str(blocker.args[0])
    assert "3 file(s)" in message and all(str(path) in message for path in bad)
    window.datasets.skip_corrupt.setChecked(True)
    window.datasets.classes.setText("class_0,class_1")
    with qtbot.waitSignal(window.datasets.imported, timeout=60_000):
        window.datasets.import_path(folder)
    status = window.datasets.status.text()
    assert "Skipped 3 unreadable file(s)" in status and all(str(path) in status for path in bad)


def test_evaluate_suggests_other_real_data_than_the_training_data():
    from dpsad_workbench.screens.evaluate_dialog import suggested_test_data

    classes = {"normal": 10, "pneumonia": 10}
    saved = [{"name": "xrays", "fingerprint": "a", "class_counts": classes},
             {"name": "xrays-copy", "fingerprint": "a", "class_counts": classes},  # the same images
             {"name": "atlas", "fingerprint": "b", "class_counts": classes},
             {"name": "xrays-test", "fingerprint": "c", "class_counts": classes},
             {"name": "digits", "fingerprint": "d", "class_counts": {str(i): 5 for i in range(10)}}]
    assert suggested_test_data("xrays", saved) == "xrays-test"  # held out by name, same classes, other images
    assert suggested_test_data("xrays", saved[:3]) == "atlas"
    assert suggested_test_data("xrays", saved[:2]) == ""  # only copies of the training data
