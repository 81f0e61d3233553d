"""New run screen: public data that can run (none by default, matching classes, never the private data)."""

from __future__ import annotations

from tests.app.conftest import write_class_folder


def save_folder(workspace, folder, name: str) -> dict:
    from dpsad_core.data import load_dataset, save_dataset

    dataset = load_dataset(folder, min_records=20, name=name)
    save_dataset(dataset, workspace)
    return dataset.summary()


def public_offers(screen) -> list[str]:
    return [screen.public_data.itemData(i) for i in range(screen.public_data.count())]


def test_public_data_defaults_to_none_and_offers_only_matching_other_data(window, workspace, tmp_path):
    xrays = write_class_folder(tmp_path / "xrays", classes=2, per_class=15)
    save_folder(workspace, xrays, "xrays")
    save_folder(workspace, xrays, "xrays-copy")  # the same images under another name: same fingerprint
    save_folder(workspace, write_class_folder(tmp_path / "atlas", classes=2, per_class=12, size=10), "atlas")
    save_folder(workspace, write_class_folder(tmp_path / "three", classes=3, per_class=10), "three")
    window.datasets.refresh()
    screen = window.new_run
    screen.select_data("xrays")
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpdm"))
    assert screen.public_data.currentIndex() == 0 and screen.public_data.currentText().startswith("None")
    assert screen.public_spec() is None and screen.build_config().public_data is None
    # 10 digit classes and 3 classes do not match 2; the private set and its copy are never public.
    assert public_offers(screen) == ["", "atlas"]
    # The demo (10 classes) gets the rendered digits, and every saved 2-class set is left out.
    screen.select_data("demo")
    assert public_offers(screen) == ["", "rendered-digits"]
    screen.select_data("xrays")
    screen.public_data.setCurrentIndex(screen.public_data.findData("atlas"))
    # The choice survives a recipe that hides it and coming back.
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpsad-split"))
    assert screen.public_spec() is None
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpdm"))
    assert screen.public_spec() == "atlas"
    window.datasets.refresh()  # a refresh (an import, a rename) keeps it too
    assert screen.public_spec() == "atlas"


def test_start_is_disabled_with_the_reason_while_the_plan_cannot_run(window, qtbot):
    screen = window.new_run
    screen.select_data("demo")
    screen.recipe.setCurrentIndex(screen.recipe.findData("dpsad-public-teacher"))
    screen.public_data.setCurrentIndex(0)  # none: this recipe needs public data
    with qtbot.waitSignal(screen.plan_failed, timeout=10_000):
        screen.update_preview()
    assert not screen.start_button.isEnabled()
    assert not screen.start_reason.isHidden() and "needs a public dataset" in screen.start_reason.text()
