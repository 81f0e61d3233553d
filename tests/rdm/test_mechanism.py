"""DP-RDM's query mechanism: the 2/k sensitivity bound (property test) and the query's shape."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dpsad_core.errors import ConfigError
from dpsad_core.privacy.randomness import SecretRandomness
from dpsad_core.rdm.mechanism import answer_query, neighbour_mean, poisson_subsample
from dpsad_core.rdm.planner import RetrievalSettings

DIM = 4
finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@st.composite
def neighbouring(draw):
    """A subsample of the others, one extra record, a query, k and where the extra record sits."""
    n = draw(st.integers(0, 12))
    others = draw(arrays(np.float64, (n, DIM), elements=finite))
    extra = draw(arrays(np.float64, (DIM,), elements=finite))
    query = draw(arrays(np.float64, (DIM,), elements=finite))
    k = draw(st.integers(1, 8))
    position = draw(st.integers(0, n))
    return others, extra, query, k, position


@settings(max_examples=300, deadline=None)
@given(neighbouring())
def test_adding_or_removing_one_record_moves_the_mean_at_most_2_over_k(case):
    others, extra, query, k, position = case
    without = neighbour_mean(others, query, k=k)
    with_extra = neighbour_mean(np.insert(others, position, extra, axis=0), query, k=k)
    assert np.linalg.norm(with_extra - without) <= 2.0 / k + 1e-9
    assert np.linalg.norm(without) <= 1.0 + 1e-9


@settings(max_examples=150, deadline=None)
@given(neighbouring(), st.integers(0, 3))
def test_one_patient_with_several_records_moves_the_mean_at_most_2_over_k(case, copies):
    others, extra, query, k, _ = case
    units = np.arange(len(others))
    patient = np.vstack([extra + 0.1 * i for i in range(copies + 1)])
    combined = np.vstack([others, patient])
    combined_units = np.concatenate([units, np.full(copies + 1, len(others))])
    without = neighbour_mean(others, query, k=k, units=units)
    with_patient = neighbour_mean(combined, query, k=k, units=combined_units)
    assert np.linalg.norm(with_patient - without) <= 2.0 / k + 1e-9


def test_neighbour_mean_takes_the_k_nearest_and_divides_by_k():
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [-1.0, 0.0]])
    mean = neighbour_mean(embeddings, np.array([1.0, 0.0]), k=2)
    expected = (np.array([1.0, 0.0]) + np.array([0.9, 0.1]) / np.linalg.norm([0.9, 0.1])) / 2
    np.testing.assert_allclose(mean, expected)
    # Fewer candidates than k: zero padding keeps the denominator k.
    np.testing.assert_allclose(neighbour_mean(embeddings[:1], np.array([1.0, 0.0]), k=4), [0.25, 0.0])


def test_poisson_subsample_keeps_units_together_at_rate_q():
    units = np.repeat(np.arange(5000), 2)
    mask = poisson_subsample(units, 0.1, SecretRandomness.from_seed(0).stream("sampling"))
    assert np.array_equal(mask[0::2], mask[1::2])
    assert 0.08 < mask.mean() < 0.12


def test_answer_query_is_noisy_and_mixes_with_the_query():
    rng = SecretRandomness.from_seed(1)
    embeddings = np.tile([[1.0, 0.0, 0.0]], (400, 1))
    units = np.arange(400)
    query = np.array([0.0, 1.0, 0.0])
    settings_ = RetrievalSettings(k=5, sample_rate=0.5, sigma=0.01)
    answers = np.array([answer_query(embeddings=embeddings, units=units, query=query, settings=settings_, mix=0.5,
                                     randomness=rng) for _ in range(50)])
    np.testing.assert_allclose(answers.mean(0), [0.5, 0.5, 0.0], atol=0.01)
    assert answers.std(0).min() > 0.001  # noise is added, fresh per query
    candidates = np.zeros(400, dtype=bool)
    answer = answer_query(embeddings=embeddings, units=units, query=query, settings=settings_, mix=1.0, randomness=rng,
                          candidates=candidates)
    assert np.linalg.norm(answer) < 0.1  # an empty class is pure noise, never an error that reveals the count


def test_lambda_zero_is_refused_as_a_private_query():
    with pytest.raises(ConfigError, match="lambda"):
        answer_query(embeddings=np.ones((3, 2)), units=np.arange(3), query=np.ones(2),
                     settings=RetrievalSettings(k=1, sample_rate=1.0, sigma=1.0), mix=0.0,
                     randomness=SecretRandomness.from_seed(0))


def test_unit_rows_of_vanishingly_small_vectors_have_norm_one():
    # Found by hypothesis: squaring 1.5e-158 underflows, and a naive norm left the row longer than 1.
    from dpsad_core.rdm.mechanism import unit_rows

    rows = unit_rows(np.array([[1.53048737e-158] * 4, [3.0, 4.0, 0.0, 0.0], [0.0] * 4]))
    assert np.all(np.linalg.norm(rows, axis=1)[:2] <= 1.0 + 1e-12)
    np.testing.assert_allclose(rows[1], [0.6, 0.8, 0.0, 0.0])
    assert not rows[2].any()
