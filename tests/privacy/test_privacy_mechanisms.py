"""Mechanisms: validation, JSON round trip, noise multipliers of releases sharing one subsample, DP-RDM."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpsad_core.errors import ConfigError
from dpsad_core.privacy import Mechanism, combined_noise_multiplier, rdm_query_mechanism, split_noise_multiplier


def test_mechanism_round_trips_through_json() -> None:
    mechanism = Mechanism(part="student+discriminator", noise_multiplier=0.7, sample_rate=0.01, steps=42,
                          components=({"part": "student", "noise_multiplier": 1.0, "clip_norm": 0.1},
                                      {"part": "discriminator", "noise_multiplier": 0.98, "clip_norm": 1.0}))
    restored = Mechanism.from_dict(json.loads(json.dumps(mechanism.to_dict())))
    assert restored == mechanism
    assert hash(restored) == hash(mechanism)
    assert isinstance(restored.components, tuple)


def test_mechanism_copies_components() -> None:
    component = {"part": "student", "noise_multiplier": 1.0}
    mechanism = Mechanism(part="joint", noise_multiplier=0.7, sample_rate=0.01, steps=1, components=(component,))
    component["noise_multiplier"] = 99.0
    assert mechanism.components[0]["noise_multiplier"] == 1.0


@pytest.mark.parametrize(("changes", "field"), [
    ({"noise_multiplier": 0.0}, "noise_multiplier"),
    ({"noise_multiplier": -1.0}, "noise_multiplier"),
    ({"noise_multiplier": math.nan}, "noise_multiplier"),
    ({"sample_rate": 0.0}, "sample_rate"),
    ({"sample_rate": 1.5}, "sample_rate"),
    ({"sample_rate": -0.1}, "sample_rate"),
    ({"steps": -1}, "steps"),
    ({"steps": 1.5}, "steps"),
    ({"part": ""}, "part"),
    ({"clip_norm": 0.0}, "clip_norm"),
    ({"components": ({"part": object()},)}, "components"),
])
def test_mechanism_rejects_bad_values(changes: dict, field: str) -> None:
    arguments = {"part": "teacher", "noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 10, **changes}
    with pytest.raises(ConfigError) as caught:
        Mechanism(**arguments)
    assert caught.value.field == field
    assert field in str(caught.value)
    value = changes[field]
    assert caught.value.value is value or caught.value.field == "components"


def test_from_dict_rejects_missing_and_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="missing"):
        Mechanism.from_dict({"part": "teacher", "noise_multiplier": 1.0, "sample_rate": 0.01})
    with pytest.raises(ConfigError, match="unknown"):
        Mechanism.from_dict({"part": "teacher", "noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 1,
                             "sigma": 2.0})


def test_combined_noise_multiplier_of_two_equal_releases() -> None:
    assert combined_noise_multiplier([2.0, 2.0]) == pytest.approx(2.0 / math.sqrt(2.0), rel=1e-15)
    assert combined_noise_multiplier([1.3]) == pytest.approx(1.3, rel=1e-15)
    # (1^-2 + 2^-2)^(-1/2) = (5/4)^(-1/2)
    assert combined_noise_multiplier([1.0, 2.0]) == pytest.approx(2.0 / math.sqrt(5.0), rel=1e-15)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(sigma=st.floats(0.05, 500.0),
       weights=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4))
def test_split_then_combine_round_trips(sigma: float, weights: list[float]) -> None:
    shares = [weight / math.fsum(weights) for weight in weights]
    if abs(math.fsum(shares) - 1.0) > 1e-12:
        return
    parts = split_noise_multiplier(sigma, shares=shares)
    assert len(parts) == len(shares)
    assert all(part >= sigma for part in parts)  # each release alone is noisier than the combination
    assert combined_noise_multiplier(parts) == pytest.approx(sigma, rel=1e-12)


def test_split_gives_more_noise_to_the_smaller_share() -> None:
    student, discriminator = split_noise_multiplier(1.0, shares=(0.75, 0.25))
    assert student == pytest.approx(1.0 / math.sqrt(0.75))
    assert discriminator == pytest.approx(2.0)


@pytest.mark.parametrize(("call", "field"), [
    (lambda: combined_noise_multiplier([1.0, 0.0]), "noise_multipliers[1]"),
    (lambda: combined_noise_multiplier([-1.0]), "noise_multipliers[0]"),
    (lambda: combined_noise_multiplier([]), "noise_multipliers"),
    (lambda: split_noise_multiplier(0.0, shares=(1.0,)), "sigma_eff"),
    (lambda: split_noise_multiplier(1.0, shares=(0.5, 0.4)), "shares"),
    (lambda: split_noise_multiplier(1.0, shares=(1.5, -0.5)), "shares[1]"),
    (lambda: rdm_query_mechanism(k=0, sigma=0.2, sample_rate=0.01, queries=10), "k"),
    (lambda: rdm_query_mechanism(k=18, sigma=0.0, sample_rate=0.01, queries=10), "sigma"),
    (lambda: rdm_query_mechanism(k=18, sigma=0.2, sample_rate=0.01, queries=-1), "steps"),
])
def test_noise_helpers_reject_bad_values(call, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        call()
    assert caught.value.field == field


def test_rdm_query_mechanism_noise_multiplier() -> None:
    # Sensitivity of the mean of k unit vectors under add/remove of one record is 2/k (docs/method.md §2).
    mechanism = rdm_query_mechanism(k=18, sigma=0.2, sample_rate=0.01, queries=1000)
    assert mechanism.part == "rdm-retrieval"
    assert mechanism.noise_multiplier == pytest.approx(1.8, rel=1e-15)
    assert mechanism.sample_rate == 0.01
    assert mechanism.steps == 1000
    assert mechanism.components[0]["k"] == 18
