"""Calibration never overshoots the target and is near-tight; steps_for_budget is the largest count."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpsad_core.errors import ConfigError, PrivacyBudgetError
from dpsad_core.privacy import Mechanism, calibrate_noise_multiplier, epsilon_prv, epsilon_rdp, steps_for_budget

DELTA = 1e-5
TOLERANCE = 0.01


def rdp(mechanisms: list[Mechanism]) -> float:
    return epsilon_rdp(mechanisms, delta=DELTA)[0]


def calibrated(sigma: float, rate: float, steps: int) -> Mechanism:
    return Mechanism(part="calibrated", noise_multiplier=sigma, sample_rate=rate, steps=steps)


priors = st.one_of(
    st.just(()),
    st.builds(lambda sigma, rate, steps: (Mechanism(part="teacher", noise_multiplier=sigma, sample_rate=rate,
                                                    steps=steps),),
              st.floats(0.5, 5.0), st.floats(0.001, 0.1), st.integers(1, 2000)),
)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(rate=st.floats(0.001, 0.5), steps=st.integers(1, 5000), target=st.floats(0.5, 20.0), prior=priors)
def test_rdp_calibration_never_overshoots_and_is_tight(rate: float, steps: int, target: float,
                                                       prior: tuple[Mechanism, ...]) -> None:
    if prior and rdp(list(prior)) > target:
        with pytest.raises(PrivacyBudgetError, match="already spend"):
            calibrate_noise_multiplier(target_epsilon=target, delta=DELTA, sample_rate=rate, steps=steps,
                                       prior=prior, tolerance=TOLERANCE)
        return
    sigma = calibrate_noise_multiplier(target_epsilon=target, delta=DELTA, sample_rate=rate, steps=steps,
                                       prior=prior, tolerance=TOLERANCE)
    assert 0.1 <= sigma <= 1000.0
    assert rdp([*prior, calibrated(sigma, rate, steps)]) <= target
    if sigma > 0.1:
        # Near-tight: a few percent less noise would overshoot.
        assert rdp([*prior, calibrated(sigma * (1 - 2 * TOLERANCE), rate, steps)]) > target


def test_calibration_clamps_at_sigma_min() -> None:
    sigma = calibrate_noise_multiplier(target_epsilon=100.0, delta=DELTA, sample_rate=0.001, steps=1)
    assert sigma == 0.1
    assert calibrate_noise_multiplier(target_epsilon=1.0, delta=DELTA, sample_rate=0.01, steps=0) == 0.1


def test_calibration_with_a_prior_needs_more_noise() -> None:
    teacher = Mechanism(part="teacher", noise_multiplier=1.0, sample_rate=0.01, steps=1000)
    alone = calibrate_noise_multiplier(target_epsilon=4.0, delta=DELTA, sample_rate=0.01, steps=500)
    after_teacher = calibrate_noise_multiplier(target_epsilon=4.0, delta=DELTA, sample_rate=0.01, steps=500,
                                               prior=[teacher])
    assert after_teacher > alone
    assert rdp([teacher, calibrated(after_teacher, 0.01, 500)]) <= 4.0


def test_prv_calibration_never_overshoots_and_is_tight() -> None:
    rate, steps, target = 256 / 60000, 2000, 8.0
    sigma = calibrate_noise_multiplier(target_epsilon=target, delta=DELTA, sample_rate=rate, steps=steps,
                                       accountant="prv")
    assert epsilon_prv([calibrated(sigma, rate, steps)], delta=DELTA) <= target
    assert epsilon_prv([calibrated(sigma * (1 - 2 * TOLERANCE), rate, steps)], delta=DELTA) > target
    # PRV is tighter than RDP here, so it affords less noise than the RDP calibration.
    assert sigma < calibrate_noise_multiplier(target_epsilon=target, delta=DELTA, sample_rate=rate, steps=steps)


def test_infeasible_budget_raises_with_the_numbers() -> None:
    with pytest.raises(PrivacyBudgetError) as caught:
        calibrate_noise_multiplier(target_epsilon=0.5, delta=DELTA, sample_rate=1.0, steps=5000, sigma_max=10.0)
    message = str(caught.value)
    assert "10" in message and "5000" in message and "0.5" in message
    assert caught.value.remedy and "epsilon" in caught.value.remedy
    spent = Mechanism(part="teacher", noise_multiplier=0.5, sample_rate=0.1, steps=1000)
    with pytest.raises(PrivacyBudgetError, match="already spend"):
        calibrate_noise_multiplier(target_epsilon=1.0, delta=DELTA, sample_rate=0.01, steps=10, prior=[spent])


@pytest.mark.parametrize(("change", "field"), [
    ({"target_epsilon": 0.0}, "target_epsilon"), ({"target_epsilon": -1.0}, "target_epsilon"),
    ({"delta": 0.0}, "delta"), ({"delta": 1.0}, "delta"),
    ({"sample_rate": 0.0}, "sample_rate"), ({"sample_rate": 2.0}, "sample_rate"),
    ({"steps": -5}, "steps"), ({"accountant": "pld"}, "accountant"),
    ({"sigma_min": 0.0}, "sigma_min"), ({"sigma_max": 0.05}, "sigma_max"), ({"tolerance": 0.0}, "tolerance"),
    ({"prior": ["teacher"]}, "prior"),
])
def test_calibration_rejects_bad_arguments(change: dict, field: str) -> None:
    arguments = {"target_epsilon": 1.0, "delta": DELTA, "sample_rate": 0.01, "steps": 100, **change}
    with pytest.raises(ConfigError) as caught:
        calibrate_noise_multiplier(**arguments)
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize(("sigma", "rate", "target"), [(1.0, 256 / 60000, 8.0), (0.8, 0.05, 3.0), (4.0, 0.5, 1.0)])
def test_steps_for_budget_is_the_largest_count(sigma: float, rate: float, target: float) -> None:
    steps = steps_for_budget(target_epsilon=target, delta=DELTA, sample_rate=rate, noise_multiplier=sigma)
    assert steps > 0
    assert rdp([calibrated(sigma, rate, steps)]) <= target
    assert rdp([calibrated(sigma, rate, steps + 1)]) > target


def test_steps_for_budget_with_prv_is_certified_and_near_largest() -> None:
    sigma, rate, target = 1.0, 0.01, 2.0
    steps = steps_for_budget(target_epsilon=target, delta=DELTA, sample_rate=rate, noise_multiplier=sigma,
                             accountant="prv")
    by_rdp = steps_for_budget(target_epsilon=target, delta=DELTA, sample_rate=rate, noise_multiplier=sigma)
    assert steps >= by_rdp
    assert epsilon_prv([calibrated(sigma, rate, steps)], delta=DELTA) <= target
    assert epsilon_prv([calibrated(sigma, rate, math.ceil(steps * 1.002) + 1)], delta=DELTA) > target


def test_steps_for_budget_edges() -> None:
    assert steps_for_budget(target_epsilon=0.01, delta=DELTA, sample_rate=1.0, noise_multiplier=0.5) == 0
    spent = Mechanism(part="teacher", noise_multiplier=0.5, sample_rate=0.1, steps=1000)
    with pytest.raises(PrivacyBudgetError):
        steps_for_budget(target_epsilon=1.0, delta=DELTA, sample_rate=0.01, noise_multiplier=1.0, prior=[spent])
    with pytest.raises(ConfigError) as caught:
        steps_for_budget(target_epsilon=1.0, delta=DELTA, sample_rate=0.01, noise_multiplier=0.0)
    assert caught.value.field == "noise_multiplier"
