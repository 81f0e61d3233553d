"""RDP and PRV epsilon: golden values (docs/method.md §1.7, 2), composition, and agreement with Opacus."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest

from dpsad_core.errors import ConfigError, PrivacyBudgetError
from dpsad_core.privacy import (
    RDP_ORDERS,
    AccountantValues,
    Mechanism,
    compute_epsilon,
    epsilon_prv,
    epsilon_rdp,
    rdm_query_mechanism,
)


def mechanism(sigma: float, rate: float, steps: int, part: str = "dpdm") -> Mechanism:
    return Mechanism(part=part, noise_multiplier=sigma, sample_rate=rate, steps=steps)


def opacus_rdp_epsilon(history: list[tuple[float, float, int]], delta: float,
                       orders: list[float] | None = None) -> tuple[float, float]:
    """The independent computation: sum of Opacus' RDP curves over the full order list."""
    from opacus.accountants.analysis import rdp as analysis

    orders = list(RDP_ORDERS) if orders is None else orders
    curve = sum(analysis.compute_rdp(q=rate, noise_multiplier=sigma, steps=steps, orders=orders)
                for sigma, rate, steps in history)
    epsilon, order = analysis.get_privacy_spent(orders=orders, rdp=curve, delta=delta)
    return float(epsilon), float(order)


# -- golden values -----------------------------------------------------------------------------------
def test_rdp_golden_opacus_test_point() -> None:
    epsilon, order = epsilon_rdp([mechanism(1.5, 0.04, 2250)], delta=1e-5)
    assert round(epsilon, 4) == 7.3291
    assert order == 3.9


def test_rdp_golden_mnist_point() -> None:
    epsilon, _ = epsilon_rdp([mechanism(1.0, 256 / 60000, 10_000)], delta=1e-5)
    assert round(epsilon, 3) == 2.566


def test_prv_golden_opacus_test_point() -> None:
    epsilon = epsilon_prv([mechanism(1.5, 0.04, 2250)], delta=1e-5)
    assert epsilon == pytest.approx(6.7791, abs=0.01)


def test_prv_golden_mnist_point() -> None:
    epsilon = epsilon_prv([mechanism(1.0, 256 / 60000, 10_000)], delta=1e-5)
    assert epsilon == pytest.approx(2.355, abs=0.005)


def test_dp_rdm_worked_example() -> None:
    # Authors' notebook: N = 10M, k = 18, q = 0.01, sigma = 0.2, Q = 1000, delta = 1e-7 -> 0.997 at order 25.
    epsilon, order = epsilon_rdp([rdm_query_mechanism(k=18, sigma=0.2, sample_rate=0.01, queries=1000)],
                                 delta=1e-7)
    assert round(epsilon, 3) == 0.997
    assert order == 25


def test_orders_extend_opacus_defaults() -> None:
    from opacus.accountants import RDPAccountant

    assert set(map(float, RDPAccountant.DEFAULT_ALPHAS)) <= set(RDP_ORDERS)
    assert list(RDP_ORDERS) == sorted(RDP_ORDERS)
    assert max(RDP_ORDERS) >= 256


# -- agreement with Opacus ---------------------------------------------------------------------------
@pytest.mark.parametrize(("sigma", "rate", "steps", "delta"), [
    (0.5, 0.01, 100, 1e-5),       # optimum at a fractional order
    (0.3, 0.2, 5, 1e-5),          # large epsilon
    (8.0, 0.3, 20, 1e-6),         # slow fractional orders (large q and sigma)
    (3.0, 0.01, 10, 1e-5),        # small epsilon: optimum (80) beyond Opacus' default orders
    (1.0, 1.0, 50, 1e-5),         # no subsampling
])
def test_rdp_matches_full_opacus_computation(sigma: float, rate: float, steps: int, delta: float) -> None:
    # Our search skips fractional orders that cannot win; the minimum must equal the full computation's.
    expected = opacus_rdp_epsilon([(sigma, rate, steps)], delta)
    assert epsilon_rdp([mechanism(sigma, rate, steps)], delta=delta) == pytest.approx(expected, rel=1e-12)


def test_small_epsilon_uses_the_extended_orders() -> None:
    from opacus.accountants import RDPAccountant

    epsilon, order = epsilon_rdp([mechanism(3.0, 0.01, 10)], delta=1e-5)
    assert order > max(RDPAccountant.DEFAULT_ALPHAS)
    with pytest.warns(UserWarning, match="largest alpha"):
        default_epsilon, _ = opacus_rdp_epsilon([(3.0, 0.01, 10)], 1e-5, orders=RDPAccountant.DEFAULT_ALPHAS)
    assert epsilon < default_epsilon


def test_extreme_optimal_order_does_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    epsilon, order = epsilon_rdp([mechanism(20.0, 0.001, 10)], delta=1e-5)
    assert order == max(RDP_ORDERS) and epsilon < 0.01
    assert not [warning for warning in recwarn if "alpha" in str(warning.message)]


def test_prv_matches_opacus_prv_accountant_on_a_composition() -> None:
    from opacus.accountants import PRVAccountant

    accountant = PRVAccountant()
    accountant.history = [(1.2, 0.02, 300), (0.9, 0.01, 200)]
    expected = accountant.get_epsilon(delta=1e-5)
    mechanisms = [mechanism(1.2, 0.02, 300, "teacher"), mechanism(0.9, 0.01, 200, "student")]
    assert epsilon_prv(mechanisms, delta=1e-5) == pytest.approx(expected, rel=1e-12)


# -- composition -------------------------------------------------------------------------------------
def test_teacher_and_student_compose_by_adding_rdp_curves() -> None:
    teacher = mechanism(1.1, 0.02, 800, "teacher")
    student = mechanism(0.8, 0.01, 400, "student+discriminator")
    composed, order = epsilon_rdp([teacher, student], delta=1e-5)
    expected, expected_order = opacus_rdp_epsilon([(1.1, 0.02, 800), (0.8, 0.01, 400)], 1e-5)
    assert composed == pytest.approx(expected, rel=1e-12)
    assert order == expected_order
    teacher_alone = epsilon_rdp([teacher], delta=1e-5)[0]
    student_alone = epsilon_rdp([student], delta=1e-5)[0]
    assert composed > max(teacher_alone, student_alone)
    assert composed < teacher_alone + student_alone  # RDP composes tighter than basic composition


def test_equal_mechanisms_merge_regardless_of_part_and_order() -> None:
    split = [mechanism(1.0, 0.01, 100, "a"), mechanism(2.0, 0.05, 10, "b"), mechanism(1.0, 0.01, 50, "c")]
    merged = [mechanism(1.0, 0.01, 150), mechanism(2.0, 0.05, 10)]
    assert epsilon_rdp(split, delta=1e-5) == epsilon_rdp(merged, delta=1e-5)
    assert epsilon_prv(split, delta=1e-5) == epsilon_prv(merged, delta=1e-5)


def test_prv_is_at_most_rdp_and_certified_is_the_minimum() -> None:
    values = compute_epsilon([mechanism(1.5, 0.04, 2250)], delta=1e-5)
    assert values.prv < values.rdp
    assert values.certified == min(values.rdp, values.prv)
    assert values.rdp_order == 3.9
    assert values.to_dict() == {"rdp": values.rdp, "prv": values.prv, "certified": values.prv, "delta": 1e-5,
                                "rdp_order": 3.9, "private": True}


# -- edge cases --------------------------------------------------------------------------------------
def test_nothing_spent_is_zero() -> None:
    for mechanisms in ([], [mechanism(1.0, 0.01, 0)]):
        assert epsilon_rdp(mechanisms, delta=1e-5)[0] == 0.0
        assert epsilon_prv(mechanisms, delta=1e-5) == 0.0
        values = compute_epsilon(mechanisms, delta=1e-5)
        assert (values.rdp, values.prv, values.certified, values.rdp_order) == (0.0, 0.0, 0.0, None)
        assert values.to_dict()["private"] is True


def test_nonprivate_part_makes_everything_infinite() -> None:
    values = compute_epsilon([mechanism(5.0, 0.01, 10)], delta=1e-5, nonprivate_parts=("teacher",))
    assert values.rdp == values.prv == values.certified == math.inf
    assert not values.private
    as_dict = values.to_dict()
    assert as_dict["certified"] is None and as_dict["rdp"] is None and as_dict["prv"] is None
    assert as_dict["private"] is False
    json.dumps(as_dict, allow_nan=False)


def test_rdp_only_leaves_prv_uncomputed() -> None:
    values = compute_epsilon([mechanism(1.5, 0.04, 2250)], delta=1e-5, accountants=("rdp",))
    assert math.isnan(values.prv)
    assert values.certified == values.rdp
    assert values.to_dict()["prv"] is None and values.to_dict()["private"] is True


def test_prv_without_subsampling_matches_opacus_quietly(recwarn: pytest.WarningsRecorder) -> None:
    from opacus.accountants import PRVAccountant

    values = compute_epsilon([mechanism(2.0, 1.0, 100)], delta=1e-5)
    assert not [warning for warning in recwarn if issubclass(warning.category, RuntimeWarning)]
    accountant = PRVAccountant()
    accountant.history = [(2.0, 1.0, 100)]
    assert values.prv == pytest.approx(accountant.get_epsilon(delta=1e-5), rel=1e-12)
    assert values.rdp == pytest.approx(opacus_rdp_epsilon([(2.0, 1.0, 100)], 1e-5)[0], rel=1e-12)


def test_prv_refuses_a_grid_too_large_to_allocate() -> None:
    with pytest.raises(PrivacyBudgetError, match="grid") as caught:
        epsilon_prv([mechanism(0.6, 0.02, 100_000)], delta=1e-5)
    assert "rdp" in str(caught.value).lower()


@pytest.mark.parametrize("delta", [0.0, -1e-5, 1.0, 1.5, math.nan])
def test_bad_delta_is_rejected_everywhere(delta: float) -> None:
    for call in (lambda: epsilon_rdp([], delta=delta), lambda: epsilon_prv([], delta=delta),
                 lambda: compute_epsilon([], delta=delta)):
        with pytest.raises(ConfigError) as caught:
            call()
        assert caught.value.field == "delta"
        assert "delta" in str(caught.value)


@pytest.mark.parametrize("accountants", [(), ("pld",), ("rdp", "rdp")])
def test_unknown_accountant_is_rejected(accountants: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as caught:
        compute_epsilon([], delta=1e-5, accountants=accountants)
    assert caught.value.field == "accountants"


def test_accountant_values_validate() -> None:
    with pytest.raises(ConfigError):
        AccountantValues(rdp=-1.0, prv=1.0, certified=1.0, delta=1e-5, rdp_order=None)
    with pytest.raises(ConfigError):
        AccountantValues(rdp=math.nan, prv=math.nan, certified=math.nan, delta=1e-5, rdp_order=None)


def test_docstring_examples() -> None:
    from dpsad_core.privacy import accountant, analysis

    for module in (analysis, accountant):
        failures, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert failures == 0, module.__name__
    assert np.isfinite(epsilon_rdp([mechanism(1.0, 0.5, 1)], delta=1e-5)[0])
