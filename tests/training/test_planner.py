"""The privacy plan: every recipe's composed epsilon stays within the target; what it warns about."""

from __future__ import annotations

import math

import pytest

from dpsad_core.privacy import combined_noise_multiplier, compute_epsilon
from dpsad_core.privacy.calibration import default_delta
from dpsad_core.training import Recipe, plan_training, resolve_hyperparameters


@pytest.mark.parametrize("recipe", [Recipe.DPSAD_SPLIT, Recipe.DPDM, Recipe.DPSAD_PUBLIC_TEACHER])
@pytest.mark.parametrize("epsilon", [1.0, 10.0])
@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_sound_recipes_compose_to_at_most_the_target(recipe, epsilon, accountant):
    hyper = resolve_hyperparameters("quick", {"accountant": accountant})
    plan = plan_training(recipe=recipe, hyper=hyper, epsilon=epsilon, delta=1e-5, private_units=60_000,
                         public_records=10_000)
    assert plan.is_private
    values = compute_epsilon(plan.mechanisms(hyper), delta=1e-5, accountants=(accountant,))
    calibrated = getattr(values, accountant)
    assert calibrated <= epsilon
    assert calibrated > 0.95 * epsilon  # calibrated, not wastefully noisy (PRV bisection: within 4%)
    assert plan.planned_epsilon["certified"] <= epsilon
    for phase in plan.phases:
        if phase.kind == "distill":
            assert combined_noise_multiplier([phase.model_noise_multiplier, phase.disc_noise_multiplier]) == \
                pytest.approx(phase.noise_multiplier)


def test_quick_and_standard_calibrate_with_prv_tiny_with_rdp():
    assert [resolve_hyperparameters(p).accountant for p in ("tiny", "quick", "standard")] == ["rdp", "prv", "prv"]


def test_dpsad_teacher_gets_its_share_and_the_student_the_rest():
    hyper = resolve_hyperparameters("quick", {"accountant": "rdp"})
    plan = plan_training(recipe=Recipe.DPSAD_SPLIT, hyper=hyper, epsilon=10.0, delta=1e-5, private_units=60_000)
    teacher_only = compute_epsilon([plan.mechanisms(hyper)[0]], delta=1e-5, accountants=("rdp",))
    assert teacher_only.rdp <= 5.0 + 1e-9
    assert [m.part for m in plan.mechanisms(hyper)] == ["teacher", "student+discriminator"]


def test_paper_recipe_is_not_private_but_records_the_paper_claim():
    hyper = resolve_hyperparameters("quick")
    plan = plan_training(recipe=Recipe.DPSAD_PAPER, hyper=hyper, epsilon=10.0, delta=1e-5, private_units=60_000)
    assert not plan.is_private
    assert plan.planned_epsilon["certified"] is None and plan.planned_epsilon["private"] is False
    assert plan.claimed_epsilon_paper == 10.0
    assert any("NOT differentially private" in w for w in plan.warnings)


def test_warnings_for_weak_settings():
    hyper = resolve_hyperparameters("tiny")
    plan = plan_training(recipe=Recipe.DPDM, hyper=hyper, epsilon=10.0, delta=0.05, private_units=50)
    text = " ".join(plan.warnings)
    assert "1/N" in text and "privacy units" in text
    assert default_delta(60_000) == pytest.approx(0.1 / 60_000)
    assert default_delta(1_000) == 1e-5


def test_plan_round_trips_through_json():
    from dpsad_core.training import TrainingPlan

    hyper = resolve_hyperparameters("tiny")
    plan = plan_training(recipe=Recipe.DPSAD_SPLIT, hyper=hyper, epsilon=3.0, delta=1e-6, private_units=5_000)
    import json

    again = TrainingPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert math.isfinite(again.planned_epsilon["certified"])


@pytest.mark.parametrize("recipe", [Recipe.DPDM, Recipe.DPSAD])
def test_the_plan_shows_the_epsilon_the_finished_run_certifies(recipe):
    # A run certifies min(RDP, PRV) whatever accountant calibrated its noise; the plan (and the GUI's
    # "this run would bring the total to ...") must show that number, not the RDP bound alone (7.96
    # planned against 6.37 certified for an RDP-calibrated tiny run, before the fix).
    hyper = resolve_hyperparameters("tiny")
    assert hyper.accountant == "rdp"
    plan = plan_training(recipe=recipe, hyper=hyper, epsilon=8.0, delta=1e-5, private_units=1000)
    finished = compute_epsilon(plan.mechanisms(hyper), delta=1e-5, accountants=("rdp", "prv"))
    assert finished.certified < finished.rdp  # PRV is the tighter bound here: the case that differed
    assert plan.planned_epsilon["certified"] == pytest.approx(finished.certified)
    assert plan.planned_epsilon["prv"] == pytest.approx(finished.prv)
