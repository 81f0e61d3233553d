"""No stale or misleading status: keys after a signed export, verdicts, import failures, Resume, Cancel."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from tests.app.conftest import write_class_folder


def test_the_key_panel_shows_the_key_a_signed_export_created(window):
    from dpsad_core.export import signing

    keys = window.settings_screen.keys
    assert "No signing key yet" in keys.info.text()
    key = signing.load_or_create_signing_key()  # what the first export does in its child process
    window.export.exported.emit({"bundle_path": "/somewhere", "summary": {}})
    fingerprint = signing.signer_info(key.public_key()).fingerprint
    assert fingerprint in keys.info.text() and "No signing key yet" not in keys.info.text()


def test_opening_settings_rereads_the_key(window):
    from dpsad_core.export import signing

    signing.load_or_create_signing_key()  # created by another process (the CLI, an export)
    window.show_screen("settings")
    assert "No signing key yet" not in window.settings_screen.keys.info.text()


def test_a_fresh_export_does_not_sit_under_an_old_verdict(window, tmp_path):
    from dpsad_core.events import ExportFinished

    screen = window.export
    screen.verify_result.setText("<b>NOT valid</b>: images/0/001.png does not match")
    screen._on_export_event(ExportFinished(bundle_path=tmp_path / "bundle", summary={}))
    assert "NOT valid" not in screen.verify_result.text() and "Not verified yet" in screen.verify_result.text()


def test_an_import_failure_is_not_shown_for_the_rest_of_the_session(window, qtbot, workspace, tmp_path):
    from dpsad_core.data import load_dataset, save_dataset

    save_dataset(load_dataset(write_class_folder(tmp_path / "scans", classes=2, per_class=10), min_records=20),
                 workspace)
    window.datasets.refresh()
    with qtbot.waitSignal(window.datasets.import_failed, timeout=30_000):
        window.datasets.import_path(tmp_path / "missing")
    for box in window.findChildren(QMessageBox):
        box.close()
    assert "failed" in window.datasets.status.text()
    window.datasets.list.setCurrentRow(-1)
    window.datasets.list.setCurrentRow(0)  # the analyst moves on to a dataset
    assert window.datasets.status.text() == ""


def fake_runs(monkeypatch, tmp_path, states: dict[str, str]) -> None:
    runs = [{"run_id": run_id, "state": state, "recipe": "dpdm", "dataset": "demo", "epsilon": 1.0, "private": True,
             "epsilon_target": 8.0, "path": str(tmp_path / run_id), "created": "2026-12-03T10:00:00"}
            for run_id, state in states.items()]
    monkeypatch.setattr("dpsad_workbench.core.list_runs", lambda workspace: runs)


def test_resume_is_offered_only_for_runs_that_can_be_resumed(window, monkeypatch, tmp_path):
    fake_runs(monkeypatch, tmp_path, {"training-now": "running", "crashed": "running", "ended": "cancelled",
                                      "paused": "interrupted"})
    window.controller.state, window.controller.run_id = "running", "training-now"  # this app trains it
    runs = window.runs
    runs.refresh()
    offered = {}
    for run_id in ("training-now", "crashed", "ended", "paused"):
        runs.select(run_id)
        offered[run_id] = runs.resume_button.isEnabled()
    window.controller.state = "idle"
    assert offered == {"training-now": False, "crashed": True, "ended": False, "paused": True}


def test_cancel_ends_the_run_only_after_a_confirmation(window, answers, monkeypatch):
    calls = []
    monkeypatch.setattr(window.controller, "cancel", lambda: calls.append("cancel"))
    screen = window.training
    screen.cancel_button.setEnabled(True)
    answers["answers"].append(False)
    screen.cancel_button.click()
    assert calls == [] and answers["questions"] == ["Cancel run"]
    answers["answers"].append(True)
    screen.cancel_button.click()
    assert calls == ["cancel"]


def test_a_run_whose_process_died_reads_as_interrupted_not_running(window, workspace):
    """Found in the walk-through: a run whose app was killed showed "running, 0 of 30 steps" for good."""
    import os
    import subprocess
    import sys

    from dpsad_core.runs import RunState
    from dpsad_core.training import RunFolder, TrainConfig, resolve_hyperparameters
    from dpsad_workbench.core import ORPHANED_STATE_TEXT

    window.new_run.stop_previews()  # this test is about the Runs screen: no plan to time
    # The run folder as a process killed after its start leaves it (no training needed to make one).
    config = TrainConfig(data="demo", recipe="dpdm", epsilon=8.0, preset="tiny", device="cpu", max_steps=30,
                         hyper=resolve_hyperparameters("tiny"))
    run = RunFolder.create(workspace, "20261203-170632-dpdm-4752")
    phase = {"name": "denoiser", "kind": "denoise", "privacy": "dp", "steps": 400}
    run.write_json("config.json", {"config": config.to_dict(), "dataset": {"name": "chest-xrays"},
                                   "plan": {"phases": [phase], "nonprivate_parts": []}})
    run.set_status(RunState.RUNNING, phase="denoiser", step=0)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run.path / ".lock").write_text(gone.stdout.strip())
    screens = window.runs
    screens.refresh()
    screens.select(run.run_id)
    assert screens.table.item(0, 1).text() == ORPHANED_STATE_TEXT
    assert screens.table.item(0, 2).text() == "0 of 30 steps"
    assert f"state: {ORPHANED_STATE_TEXT}" in screens.summary.text()
    assert screens.resume_button.isEnabled()  # it is resumable, as an interrupted run is

    (run.path / ".lock").write_text(str(os.getpid()))  # a live process trains it (the CLI, say)
    screens.refresh()
    assert screens.table.item(0, 1).text() == "running"
