"""The stateful accountant: merging, resume without reset or double count, nonprivate parts."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import pytest

from dpsad_core.errors import ConfigError
from dpsad_core.privacy import Mechanism, PrivacyAccountant, epsilon_rdp

TEACHER = {"part": "teacher", "noise_multiplier": 1.1, "sample_rate": 0.02, "clip_norm": 1.0}
JOINT = {"part": "student+discriminator", "noise_multiplier": 0.8, "sample_rate": 0.01, "clip_norm": None,
         "components": ({"part": "student", "noise_multiplier": 1.13, "clip_norm": 0.1},
                        {"part": "discriminator", "noise_multiplier": 1.13, "clip_norm": 1.0})}


def run(accountant: PrivacyAccountant, steps: int, **mechanism) -> None:
    for _ in range(steps):
        accountant.step(**mechanism)


def json_round_trip(accountant: PrivacyAccountant) -> PrivacyAccountant:
    return PrivacyAccountant.from_state_dict(json.loads(json.dumps(accountant.state_dict(), allow_nan=False)))


def test_identical_consecutive_steps_merge() -> None:
    accountant = PrivacyAccountant(delta=1e-5)
    run(accountant, 3, **TEACHER)
    run(accountant, 2, **JOINT)
    accountant.step(**TEACHER, steps=4)
    accountant.step(**TEACHER, steps=0)  # records nothing
    assert [(m.part, m.steps) for m in accountant.mechanisms] == [
        ("teacher", 3), ("student+discriminator", 2), ("teacher", 4)]
    assert accountant.mechanisms[1].components == JOINT["components"]


@pytest.mark.parametrize("change", [{"noise_multiplier": 1.2}, {"sample_rate": 0.03}, {"clip_norm": 0.5},
                                    {"part": "dpdm"}, {"components": ({"part": "x"},)}])
def test_any_difference_starts_a_new_entry(change: dict) -> None:
    accountant = PrivacyAccountant(delta=1e-5)
    accountant.step(**TEACHER)
    accountant.step(**{**TEACHER, **change})
    assert len(accountant.mechanisms) == 2


def test_state_dict_round_trips_exactly() -> None:
    accountant = PrivacyAccountant(delta=3e-6)
    run(accountant, 5, **TEACHER)
    run(accountant, 7, **JOINT)
    accountant.mark_nonprivate("discriminator")
    restored = json_round_trip(accountant)
    assert restored.state_dict() == accountant.state_dict()
    assert restored.mechanisms == accountant.mechanisms
    assert restored.nonprivate_parts == ("discriminator",)
    assert restored.delta == 3e-6


def test_resume_continues_the_history() -> None:
    first = PrivacyAccountant(delta=1e-5)
    run(first, 100, **TEACHER)
    resumed = json_round_trip(first)
    run(resumed, 50, **TEACHER)
    straight = PrivacyAccountant(delta=1e-5)
    run(straight, 150, **TEACHER)
    assert resumed.mechanisms == straight.mechanisms
    assert resumed.mechanisms[-1].steps == 150
    assert resumed.epsilon_rdp() == straight.epsilon_rdp()
    assert resumed.values() == straight.values()
    # Neither reset (the first run counts) nor counted twice.
    assert first.epsilon_rdp() < resumed.epsilon_rdp()
    assert resumed.epsilon_rdp() < epsilon_rdp([Mechanism(steps=250, **TEACHER)], delta=1e-5)[0]


def test_resume_into_a_new_phase_composes_both() -> None:
    first = PrivacyAccountant(delta=1e-5)
    run(first, 100, **TEACHER)
    resumed = json_round_trip(first)
    run(resumed, 60, **JOINT)
    expected = epsilon_rdp([Mechanism(steps=100, **TEACHER), Mechanism(steps=60, **JOINT)], delta=1e-5)[0]
    assert resumed.epsilon_rdp() == expected
    assert resumed.values(accountants=("rdp",)).rdp == expected


def test_epsilon_grows_with_every_step() -> None:
    accountant = PrivacyAccountant(delta=1e-5)
    seen = [accountant.epsilon_rdp()]
    for _ in range(5):
        accountant.step(**TEACHER, steps=10)
        seen.append(accountant.epsilon_rdp())
    assert seen[0] == 0.0
    assert all(later > earlier for earlier, later in pairwise(seen))


def test_nonprivate_part_makes_epsilon_infinite() -> None:
    accountant = PrivacyAccountant(delta=1e-5)
    run(accountant, 10, **JOINT)
    assert accountant.is_private
    accountant.mark_nonprivate("teacher")
    accountant.mark_nonprivate("teacher")
    assert not accountant.is_private
    assert accountant.nonprivate_parts == ("teacher",)
    assert accountant.epsilon_rdp() == math.inf
    values = accountant.values()
    assert values.certified == math.inf
    assert values.to_dict()["certified"] is None
    assert values.to_dict()["private"] is False
    assert json_round_trip(accountant).values() == values


@pytest.mark.parametrize(("arguments", "field"), [
    ({"delta": 0.0}, "delta"), ({"delta": 1.0}, "delta"), ({"delta": -1e-5}, "delta")])
def test_accountant_rejects_bad_delta(arguments: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PrivacyAccountant(**arguments)
    assert caught.value.field == field


@pytest.mark.parametrize(("change", "field"), [
    ({"noise_multiplier": 0.0}, "noise_multiplier"), ({"sample_rate": 1.01}, "sample_rate"),
    ({"steps": -1}, "steps")])
def test_step_rejects_bad_values(change: dict, field: str) -> None:
    accountant = PrivacyAccountant(delta=1e-5)
    with pytest.raises(ConfigError) as caught:
        accountant.step(**{**TEACHER, **change})
    assert caught.value.field == field
    assert accountant.mechanisms == ()


@pytest.mark.parametrize("state", [
    {}, {"format": "something-else", "version": 1},
    {"format": "dpsad-privacy-accountant", "version": 99, "delta": 1e-5, "mechanisms": [], "nonprivate_parts": []},
    {"format": "dpsad-privacy-accountant", "version": 1, "delta": 1e-5, "mechanisms": {}, "nonprivate_parts": []},
    {"format": "dpsad-privacy-accountant", "version": 1, "delta": 2.0, "mechanisms": [], "nonprivate_parts": []},
])
def test_from_state_dict_rejects_malformed_state(state: dict) -> None:
    with pytest.raises(ConfigError):
        PrivacyAccountant.from_state_dict(state)
