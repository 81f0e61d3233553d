"""Runs (delete with confirmation), Export (bundle, verify, tampering), Settings (workspace, keys)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox


@pytest.fixture
def finished_run(workspace):
    """A tiny finished run, trained by the core directly (the GUI path is tested in test_training.py)."""
    import torch

    from dpsad_core.events import RunFinished
    from dpsad_core.training import TrainConfig, resolve_hyperparameters, start_training

    torch.set_num_threads(1)
    config = TrainConfig(data="demo", epsilon=8.0, preset="tiny", hyper=resolve_hyperparameters("tiny"),
                         max_steps=2, device="cpu")
    events = list(start_training(config, workspace=workspace))
    assert isinstance(events[-1], RunFinished)
    return events[-1].result


@pytest.mark.slow
def test_delete_a_run_only_after_confirmation(finished_run, window, answers):
    window.show_screen("runs")
    runs = window.runs
    runs.select(finished_run["run_id"])
    assert runs.selected_run_id() == finished_run["run_id"]
    assert runs.export_button.isEnabled() and not runs.resume_button.isEnabled()
    assert "of target 8" in runs.summary.text() and runs.grid.has_image()
    answers["answers"].append(False)
    assert runs.delete_selected() is False
    assert Path(finished_run["run_dir"]).is_dir()
    answers["answers"].append(True)
    assert runs.delete_selected() is True
    assert not Path(finished_run["run_dir"]).exists()
    assert runs.runs == []


@pytest.mark.slow
def test_export_a_signed_bundle_then_verify_it_and_catch_tampering(finished_run, window, qtbot, tmp_path):
    window.show_screen("export")
    screen = window.export
    screen.select_run(finished_run["run_id"])
    assert "differentially private" in screen.report.text()
    assert "What this guarantee means" in screen.report.text() and "What it does not mean" in screen.report.text()
    screen.per_class.setValue(2)
    screen.out.setText(str(tmp_path / "bundle"))
    with qtbot.waitSignal(screen.exported, timeout=120_000) as blocker:
        screen.export()
    bundle = Path(blocker.args[0]["bundle_path"])
    assert bundle == tmp_path / "bundle" and bundle.is_dir()
    with qtbot.waitSignal(screen.verified, timeout=60_000) as blocker:
        screen.verify(bundle)
    assert blocker.args[0].ok, blocker.args[0].problems
    assert "Valid" in screen.verify_result.text()
    # Change one byte of one image: the verifier must name the problem.
    image = next(p for p in sorted(bundle.rglob("*.png")) if "images" in p.parts)
    image.write_bytes(image.read_bytes() + b"\0")
    from tests.app.test_datasets_and_plan import drop

    with qtbot.waitSignal(screen.verified, timeout=60_000) as blocker:
        drop(screen, bundle)  # any bundle dropped on the Export screen is verified
    assert not blocker.args[0].ok
    assert "NOT valid" in screen.verify_result.text()


def test_settings_change_the_workspace(window, tmp_path):
    from dpsad_workbench.settings import load_settings

    window.show_screen("settings")
    screen = window.settings_screen
    new = tmp_path / "elsewhere"
    screen.workspace.setText(str(new))
    screen.devices.setCurrentIndex(screen.devices.findData("cpu"))
    screen.threads.setValue(2)
    saved = screen.save()
    assert saved is not None and new.is_dir()
    assert load_settings().workspace == str(new) and load_settings().torch_threads == 2
    assert window.settings.workspace_path() == new.resolve()
    assert str(new.resolve()) in window.workspace_label.text()


def test_an_invalid_settings_file_is_reported_at_startup(workspace, capsys):
    from dpsad_workbench.main import create_window
    from dpsad_workbench.settings import settings_path

    settings_path().write_text("{ not json")
    from dpsad_core.errors import ConfigError

    with pytest.raises(ConfigError, match="workbench settings cannot be read") as info:
        create_window()
    assert "delete the file" in info.value.remedy


def test_signing_key_fingerprint_export_and_import(window, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    keys = window.settings_screen.keys
    assert keys.fingerprint() is None and "No signing key yet" in keys.info.text()
    created = keys.create_key()
    assert created.startswith("sha256:") and created in keys.info.text()
    exported = keys.export_public_key(str(tmp_path / "public.pem"))
    assert exported == created and (tmp_path / "public.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    organisation = Ed25519PrivateKey.generate()
    pem = organisation.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    (tmp_path / "org.pem").write_bytes(pem)
    imported = keys.import_key(str(tmp_path / "org.pem"))
    assert imported != created and keys.fingerprint() == imported


def test_a_bad_key_file_is_an_error_dialog(window, qtbot, tmp_path):
    (tmp_path / "bad.pem").write_text("not a key")
    with qtbot.waitSignal(window.error_shown, timeout=10_000) as blocker:
        assert window.settings_screen.keys.import_key(str(tmp_path / "bad.pem")) is None
    assert "bad.pem" in blocker.args[0]
    for box in window.findChildren(QMessageBox):
        box.close()


@pytest.mark.slow
def test_the_run_page_shows_the_evaluation_once_there_is_one(finished_run, window):
    import json

    from dpsad_core.evaluation.report import EVALUATION_FILE, SCHEMA_VERSION

    window.show_screen("runs")
    window.runs.select(finished_run["run_id"])
    assert "evaluation: none yet" in window.runs.summary.text()
    window.runs.image_choice.setCurrentIndex(window.runs.image_choice.findData("pairs"))
    assert not window.runs.grid.has_image() and "Not evaluated yet" in window.runs.grid.text()
    window.runs.image_choice.setCurrentIndex(window.runs.image_choice.findData("samples"))
    assert window.runs.grid.has_image()
    evaluation = {"schema": SCHEMA_VERSION,
                  "downstream": {"cnn": {"accuracy": 0.8125}, "logistic": {"accuracy": 0.75}},
                  "fidelity": {"frechet_distance_classifier_features": 3.5, "fid": None, "precision": 0.9,
                               "recall": 0.4},
                  "memorisation": {"dcr_share_closer_to_training_than_holdout": 0.52, "near_copy_count": 3, "n": 100}}
    (Path(finished_run["run_dir"]) / EVALUATION_FILE).write_text(json.dumps(evaluation))
    window.runs.refresh()
    window.runs.select(finished_run["run_id"])
    text = window.runs.summary.text()
    assert "synthetic images 0.812" in text and "logistic regression 0.750" in text
    assert "near-copies flagged: 3 of 100" in text and "52%" in text


@pytest.mark.slow
def test_evaluate_a_run_from_the_runs_screen(finished_run, window, qtbot):
    from dpsad_core.evaluation.report import EVALUATION_FILE

    window.show_screen("runs")
    runs = window.runs
    runs.select(finished_run["run_id"])
    assert runs.evaluate_button.isEnabled() and runs.evaluate_button.text() == "E&valuate..."
    dialog = runs.evaluate_dialog()
    assert dialog.test_data() == "demo" and dialog.per_class() == 100  # the test split of what it trained on
    dialog.deleteLater()

    with qtbot.waitSignal(runs.evaluated, timeout=600_000) as finished:
        worker = runs.start_evaluation(finished_run["run_id"], test="demo", per_class=3)
        assert runs.evaluating() == finished_run["run_id"] and runs.evaluate_button.text() == "Cancel e&valuation"
        assert runs.delete_selected() is False  # refused while it is evaluated (an error, not a question)
    qtbot.waitUntil(lambda: runs.evaluating() is None, timeout=60_000)
    worker.wait()
    assert finished.args[0]["memorisation"]["n"] == 30
    assert (Path(finished_run["run_dir"]) / EVALUATION_FILE).is_file()
    assert "real-test accuracy of a CNN" in runs.summary.text()
    assert runs.evaluation_status.text().startswith("Evaluated ") and runs.evaluate_button.text() == "E&valuate..."
    runs.image_choice.setCurrentIndex(runs.image_choice.findData("pairs"))  # synthetic | nearest training image
    assert runs.grid.has_image() and runs.grid._source.height() > runs.grid._source.width()
    for box in window.findChildren(QMessageBox):  # the refused delete's message
        box.close()


@pytest.mark.slow
def test_evaluation_cancelled_or_failed_leaves_the_run_unevaluated(finished_run, window, qtbot):
    from dpsad_core.evaluation.report import EVALUATION_FILE

    window.show_screen("runs")
    runs = window.runs
    runs.select(finished_run["run_id"])
    worker = runs.start_evaluation(finished_run["run_id"], test="demo", per_class=3)
    runs.cancel_evaluation()
    qtbot.waitUntil(lambda: runs.evaluating() is None, timeout=300_000)
    worker.wait()
    assert runs.evaluation_status.text().endswith("was cancelled.")
    assert not (Path(finished_run["run_dir"]) / EVALUATION_FILE).exists()

    with qtbot.waitSignal(runs.error, timeout=300_000) as failed:
        worker = runs.start_evaluation(finished_run["run_id"], test="/no/such/data", per_class=3)
    qtbot.waitUntil(lambda: runs.evaluating() is None, timeout=60_000)
    worker.wait()
    assert "/no/such/data" in str(failed.args[0])
    assert runs.evaluation_status.text().endswith("failed (see the message).")
    assert runs.start_evaluation(finished_run["run_id"], test=" ", per_class=3) is None  # nothing named
    assert not (Path(finished_run["run_dir"]) / EVALUATION_FILE).exists()
    for box in window.findChildren(QMessageBox):
        box.close()


def test_the_evaluate_dialog_suggests_the_test_split_of_the_training_source(tmp_path):
    from dpsad_workbench.screens.evaluate_dialog import EvaluateDialog, suggested_test_data

    assert suggested_test_data("demo") == "demo"
    assert suggested_test_data(str(tmp_path)) == str(tmp_path)  # a folder or file: its test split
    assert suggested_test_data("chest-xrays") == ""  # a saved dataset is one set: nothing to suggest
    dialog = EvaluateDialog({"run_id": "r"}, data_spec="chest-xrays",
                            saved_datasets=[{"name": "chest-xrays"}, {"name": "held-out"}], rdm=True)
    assert dialog.test_data() == "" and dialog.per_class() is None  # DP-RDM: its own images, no count
    assert [dialog.test.itemText(i) for i in range(dialog.test.count())] == ["demo", "held-out"]  # not its data
    dialog.test.setEditText("  held-out ")
    assert dialog.test_data() == "held-out"
    dialog.deleteLater()


@pytest.fixture
def few_step_run(workspace):
    """A tiny finished ``dpsad`` run: a few-step student and the DP teacher it was distilled from."""
    import torch

    from dpsad_core.events import RunFinished
    from dpsad_core.training import TrainConfig, resolve_hyperparameters, start_training

    torch.set_num_threads(1)
    config = TrainConfig(data="demo", recipe="dpsad", epsilon=8.0, preset="tiny",
                         hyper=resolve_hyperparameters("tiny"), max_steps=2, device="cpu")
    events = list(start_training(config, workspace=workspace))
    assert isinstance(events[-1], RunFinished)
    return events[-1].result


@pytest.mark.slow
def test_export_offers_the_student_or_its_teacher_for_a_few_step_run(finished_run, few_step_run, window, qtbot,
                                                                      tmp_path):
    import json

    window.show_screen("export")
    screen = window.export
    screen.refresh()
    screen.select_run(finished_run["run_id"])  # dpdm: one model, no choice
    assert screen.generator.isHidden()
    screen.select_run(few_step_run["run_id"])
    assert not screen.generator.isHidden()
    assert [screen.generator.itemData(i) for i in range(screen.generator.count())] == ["release", "teacher"]
    assert "generator that makes an image in 4 steps" in screen.report.text()
    screen.generator.setCurrentIndex(1)
    assert "teacher itself" in screen.report.text() and "generator that makes an image" not in screen.report.text()
    screen.per_class.setValue(1)
    screen.out.setText(str(tmp_path / "bundle"))
    with qtbot.waitSignal(screen.exported, timeout=120_000) as blocker:
        screen.export()
    report = json.loads((Path(blocker.args[0]["bundle_path"]) / "privacy-report.json").read_text(encoding="utf-8"))
    assert report["bundle"]["generator"] == "teacher"


@pytest.mark.slow
def test_evaluate_offers_a_few_step_runs_teacher(finished_run, few_step_run, window, qtbot):
    window.show_screen("runs")
    runs = window.runs
    runs.refresh()
    runs.select(finished_run["run_id"])
    dialog = runs.evaluate_dialog()
    assert dialog.generator() == "release" and dialog.generator_box.parent() is None  # dpdm: not offered
    dialog.deleteLater()
    runs.select(few_step_run["run_id"])
    dialog = runs.evaluate_dialog()
    dialog.generator_box.setCurrentIndex(1)
    assert dialog.generator() == "teacher"
    dialog.deleteLater()
    with qtbot.waitSignal(runs.evaluated, timeout=600_000) as finished:
        runs.start_evaluation(few_step_run["run_id"], test="demo", per_class=3, generator=dialog.generator())
    qtbot.waitUntil(lambda: runs.evaluating() is None, timeout=60_000)
    assert finished.args[0]["config"]["generator"] == "teacher"
