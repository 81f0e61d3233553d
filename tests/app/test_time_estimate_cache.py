"""The New run plan's time comes from this machine's recent step time of the model (issue 18, item 3).

A step time ages (a day) and a finished run refreshes it; the preview uses a recent one at once and
leaves an old one to be timed again in the helper process, never pricing the plan with it.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_demo():
    import torch

    from dpsad_core.training import TrainConfig, resolve_hyperparameters

    torch.set_num_threads(1)
    return TrainConfig(data="demo", recipe="dpdm", epsilon=8.0, preset="tiny", hyper=resolve_hyperparameters("tiny"),
                       device="cpu")


def cache_step(config, preview, seconds: float, age: float, source: str = "run") -> None:
    """Put ``seconds`` in the cache for the preview's model and batch, measured ``age`` seconds ago."""
    import time

    from dpsad_core.training import estimate

    data = preview["dataset"]
    model = estimate.model_key(config.hyper, channels=data["channels"], resolution=data["resolution"],
                               num_classes=data["num_classes"], batch=estimate.plan_batch(preview["plan"]))
    estimate._write_entry(estimate.machine_key("cpu"), model,
                          {"seconds": seconds, "measured": time.time() - age, "source": source})


def test_the_plan_is_priced_by_a_recent_step_time_and_an_old_one_is_timed_again(tiny_demo, workspace, monkeypatch,
                                                                                tmp_path):
    from dpsad_core.training.estimate import MAX_AGE_SECONDS
    from dpsad_workbench.core import plan_preview

    # A cache of its own: the session's shared one holds the step times other tests measured.
    monkeypatch.setenv("DPSAD_CACHE_DIR", str(tmp_path / "cache"))
    first = plan_preview(tiny_demo, workspace=workspace)
    assert first["estimate"]["seconds"] is None  # nothing measured yet: the screen times a step
    steps = sum(first["steps"].values())

    cache_step(tiny_demo, first, 0.25, age=600)
    recent = plan_preview(tiny_demo, workspace=workspace)["estimate"]
    assert recent["seconds"] == pytest.approx(steps * 0.25)
    assert "(from a run 10 min ago)" in recent["basis"]

    cache_step(tiny_demo, first, 0.25, age=MAX_AGE_SECONDS + 60, source="timed")  # a busy day's measurement
    assert plan_preview(tiny_demo, workspace=workspace)["estimate"]["seconds"] is None


def test_a_run_cut_by_max_steps_shows_the_epsilon_it_will_spend(tiny_demo, workspace):
    """Found in the walk-through: 'guarantee of the whole run: epsilon 7.95' above 'would bring the total to 1.94'."""
    import dataclasses

    from dpsad_workbench.core import plan_preview
    from dpsad_workbench.screens.new_run import render_plan

    full = plan_preview(tiny_demo, workspace=workspace)
    assert full["run_epsilon"] is None  # every planned step runs: the plan's epsilon is the run's
    assert full["budget"] is not None
    # The ledger's projection and the plan print one number (both min(RDP, PRV)): 6.37 under a plan of 7.96 before.
    assert full["budget"]["after_this_run"] == pytest.approx(full["plan"]["planned_epsilon"]["certified"], rel=1e-6)
    cut = plan_preview(dataclasses.replace(tiny_demo, max_steps=1), workspace=workspace)
    planned = cut["plan"]["planned_epsilon"]["certified"]
    assert 0 < cut["run_epsilon"] < 0.9 * planned  # one of the tiny plan's 4 steps: 5.3 of 6.3
    if cut["budget"] is not None:  # the ledger's total after this run, on a dataset nothing was spent on yet
        assert cut["run_epsilon"] == pytest.approx(cut["budget"]["after_this_run"], rel=1e-6)
    text = render_plan(cut)
    assert f"this run: <b>epsilon {cut['run_epsilon']:.3g}</b>, as Max steps stops it early" in text
    assert f"all planned steps: epsilon {planned:.3g}" in text
