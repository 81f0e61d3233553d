"""Issue 13 in the workbench: declared class names at import, the ledger's shared records in plain words, and
no private data offered as public data."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.app.conftest import write_class_folder
from tests.app.previews import answer_previews
from tests.app.test_new_run_choices import public_offers, save_folder


def close_dialogs(window) -> list[str]:
    texts = []
    for box in window.findChildren(QMessageBox):
        if box.isVisible():
            texts.append(box.text())
        box.close()
    return texts


@pytest.mark.slow  # the helper process imports torch for the ledger
def test_an_import_asks_for_the_class_names_and_shows_the_records_it_shares(window, qtbot, tmp_path):
    screen = window.datasets
    folder = write_class_folder(tmp_path / "scans", classes=2, per_class=60)
    screen.name.setText("scans")
    with qtbot.waitSignal(screen.import_failed, timeout=60_000) as blocker:
        screen.import_path(folder)
    error = blocker.args[0]
    assert error.field == "classes" and "come from its folder or label names" in str(error)
    assert close_dialogs(window) == []  # asked on the screen, not in an error box
    assert screen.classes.text() == "class_0,class_1" and screen.retry_button.isVisible()
    assert "Declare the class names" in screen.status.text() and screen.names() == ["demo"]
    screen.classes.setText("class_1,class_0")  # the analyst's order is the label order
    qtbot.waitUntil(screen.retry_button.isEnabled, timeout=10_000)  # disabled while the import was running
    with qtbot.waitSignal(screen.imported, timeout=60_000) as blocker:
        screen.retry_button.click()
    summary = blocker.args[0]
    assert summary["class_names"] == ["class_1", "class_0"] and summary["class_names_from"] == "declared"
    assert not screen.retry_button.isVisible() and screen.classes.text() == ""

    # A label left out of the list stops the import, naming its records.
    screen.classes.setText("class_0")
    with qtbot.waitSignal(screen.import_failed, timeout=60_000) as blocker:
        screen.import_path(folder)
    assert "not among the declared classes ('class_1')" in str(blocker.args[0])
    assert len(close_dialogs(window)) == 1

    # A subset of the same images under another name: the ledger links them, and both screens say so.
    subset = tmp_path / "subset"
    for label in ("class_0", "class_1"):
        (subset / label).mkdir(parents=True)
        for image in sorted((folder / label).iterdir())[:50]:
            shutil.copy(image, subset / label / image.name)
    screen.name.setText("scans-subset")
    screen.classes.setText("class_1,class_0")
    with qtbot.waitSignal(screen.imported, timeout=60_000) as blocker:
        screen.import_path(subset)
    assert "Shares 100 record(s) with dataset scans: a run on either is charged to both." in screen.status.text()
    with qtbot.waitSignal(screen.preview_ready, timeout=120_000):
        screen.select("scans")
    assert ("Shares 100 record(s) with dataset scans-subset: a run on either is charged to both."
            in screen.budget_total.text())


def test_shared_records_in_plain_words():
    from dpsad_workbench.screens.datasets import budget_panel_text
    from dpsad_workbench.screens.new_run import overlap_text

    exact = {"fingerprint": "hmac-sha256:" + "a" * 64, "name": "xrays-2019", "identical": 1200, "resized": 0.0}
    resized = {"fingerprint": "hmac-sha256:" + "b" * 64, "name": None, "identical": 0, "resized": 0.97}
    assert overlap_text(exact) == "Shares 1,200 record(s) with dataset xrays-2019: a run on either is charged to both."
    assert overlap_text(resized) == ("Shares about 97% of its records, at another image size, with a dataset no longer "
                                     "in the workspace (hmac-sha256:bbbbbbbbbbbb...): a run on either is charged to "
                                     "both.")
    text = budget_panel_text({"run_list": [], "overlaps": [exact], "cap_epsilon": None})
    assert "Nothing spent on this dataset yet. Shares 1,200 record(s) with dataset xrays-2019" in text


def test_new_run_never_offers_the_private_data_or_data_that_shares_its_records(window, qtbot, workspace, tmp_path,
                                                                              monkeypatch):
    xrays = write_class_folder(tmp_path / "xrays", classes=2, per_class=15)
    save_folder(workspace, xrays, "xrays")
    save_folder(workspace, xrays, "xrays-copy")  # the same images: the same fingerprint
    half = save_folder(workspace, write_class_folder(tmp_path / "half", classes=2, per_class=10), "xrays-half")
    save_folder(workspace, write_class_folder(tmp_path / "atlas", classes=2, per_class=12, size=10), "atlas")
    # What the ledger says of xrays: xrays-half shares records with it (a subset, say).
    shared = {"fingerprint": half["fingerprint"], "name": "xrays-half", "identical": 20, "resized": 0.0}
    screen = answer_previews(window, monkeypatch, budget={"spent": 0.0, "runs": 0, "overlaps": [shared]})
    from dpsad_workbench.core import list_datasets

    screen.set_datasets(list_datasets(workspace))  # what the Datasets screen hands over (without its previews)
    names = ["xrays", "xrays-copy", "xrays-half", "atlas"]
    for recipe in ("dpdm", "dpsad-public-teacher"):
        screen.recipe.setCurrentIndex(screen.recipe.findData(recipe))
        for private in names:  # whichever is the private data, it is never its own public data
            screen.select_data(private)
            assert private not in public_offers(screen), (recipe, private)
        screen.select_data("xrays")
        assert public_offers(screen) == ["", "atlas", "xrays-half"]  # nothing known of shared records yet
        screen.public_data.setCurrentIndex(screen.public_data.findData("atlas"))  # one recipe needs public data
        with qtbot.waitSignal(screen.plan_ready, timeout=10_000):
            screen.update_preview()
        assert public_offers(screen) == ["", "atlas"]
        assert "Shares 20 record(s) with dataset xrays-half" in screen.plan_text.text()
        screen.select_data("atlas")
        assert "xrays-half" in public_offers(screen)  # it shares nothing with atlas
        screen.select_data("xrays")
        assert public_offers(screen) == ["", "atlas"]  # remembered for xrays
        screen._shares.clear()
