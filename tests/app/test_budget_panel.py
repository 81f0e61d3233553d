"""The privacy budget per dataset: its runs, their epsilon, the composed total, the cap; the demo listed too."""

from __future__ import annotations

import pytest

from tests.app.conftest import write_class_folder


@pytest.fixture
def spent_dataset(workspace, tmp_path):
    """A saved dataset with two finished runs recorded in the ledger."""
    from dpsad_core.data import load_dataset, save_dataset
    from dpsad_core.privacy.ledger import PrivacyLedger
    from dpsad_core.privacy.mechanisms import Mechanism

    dataset = load_dataset(write_class_folder(tmp_path / "xrays", classes=2, per_class=60), min_records=100,
                           name="xrays")
    save_dataset(dataset, workspace)
    fingerprint = dataset.fingerprint()
    ledger = PrivacyLedger(workspace)
    for run_id, sigma in (("run-a", 1.0), ("run-b", 1.3)):
        ledger.record_spend(run_id=run_id, dataset_fingerprint=fingerprint, kind="train", delta=1e-5,
                            mechanisms=[Mechanism(part="dpdm", noise_multiplier=sigma, sample_rate=0.1, steps=200)],
                            dataset_name="xrays", recipe="dpdm", finished=True)
    return fingerprint


def wait_budget(qtbot, screen):
    qtbot.waitUntil(lambda: screen._budget is not None, timeout=60_000)
    return screen._budget


def test_the_panel_lists_each_run_and_explains_the_composed_total(window, qtbot, spent_dataset):
    screen = window.datasets
    screen.refresh()
    screen.select("xrays")
    budget = wait_budget(qtbot, screen)
    assert screen.budget_runs.rowCount() == 2
    assert [screen.budget_runs.item(r, 0).text() for r in range(2)] == ["run-a", "run-b"]
    epsilons = [float(screen.budget_runs.item(r, 2).text()) for r in range(2)]
    assert all(e > 0 for e in epsilons)
    assert budget["total"] < budget["sum_of_runs"]
    text = screen.budget_total.text()
    assert "less than the runs' epsilons added up" in text and "No cap is set" in text


def test_the_cap_is_set_only_after_a_confirmation(window, qtbot, answers, spent_dataset, workspace):
    from dpsad_core.privacy.ledger import PrivacyLedger

    screen = window.datasets
    screen.refresh()
    screen.select("xrays")
    wait_budget(qtbot, screen)
    answers["answers"].append(False)
    assert screen.set_cap("12") is None
    assert PrivacyLedger(workspace).summary(spent_dataset).cap_epsilon is None
    answers["answers"].append(True)
    with qtbot.waitSignal(screen.cap_changed, timeout=60_000):
        screen.set_cap("12")
    assert answers["questions"] == ["Privacy budget cap", "Privacy budget cap"]
    assert PrivacyLedger(workspace).summary(spent_dataset).cap_epsilon == 12.0
    assert "Cap: epsilon 12" in screen.budget_total.text() and screen.remove_cap_button.isEnabled()


def test_the_demo_data_is_listed_like_any_dataset(window, qtbot):
    screen = window.datasets
    assert "demo" in screen.names()
    screen.select("demo")
    qtbot.waitUntil(lambda: screen.fields["fingerprint"].text() not in ("-", "computing..."), timeout=120_000)
    assert screen.counts.rowCount() == 10 and screen._budget is not None
    assert "Nothing spent" in screen.budget_total.text()


def test_the_plan_says_what_this_run_would_bring_the_total_to(spent_dataset, workspace):
    from dpsad_core.training import TrainConfig, resolve_hyperparameters
    from dpsad_workbench.core import plan_preview
    from dpsad_workbench.screens.new_run import render_plan

    config = TrainConfig(data="xrays", recipe="dpdm", epsilon=2.0, preset="tiny", hyper=resolve_hyperparameters("tiny"))
    result = plan_preview(config, workspace=workspace)
    budget = result["budget"]
    spent = budget["spent"]["certified"]
    assert spent < budget["after_this_run"] < spent + 2.0 + 1e-9  # composed: below the sum
    assert "This run would bring the total to" in render_plan(result)
