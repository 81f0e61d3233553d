"""Frechet distance and k-NN precision/recall on inputs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from dpsad_core.data import load_demo
from dpsad_core.errors import ConfigError
from dpsad_core.evaluation.fidelity import fidelity, frechet_distance, frechet_distance_from_moments, precision_recall


def test_frechet_distance_matches_the_closed_form_for_known_gaussians():
    # |mu1 - mu2|^2 = 2; Tr(S1 + S2 - 2 sqrt(S1 S2)) = 5 + 5 - 2 * (2 + 2) = 2.
    value = frechet_distance_from_moments(np.zeros(2), np.diag([1.0, 4.0]), np.ones(2), np.diag([4.0, 1.0]))
    assert value == pytest.approx(4.0, abs=1e-9)


def test_agrees_with_the_sqrtm_formula_of_the_reference_implementation():
    from scipy import linalg

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 10)), rng.normal(size=(300, 10)) @ rng.normal(size=(10, 10)) + 0.5
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    reference = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2)))
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-8)


def test_identical_sets_have_distance_zero_and_a_shift_adds_its_square():
    features = np.random.default_rng(0).normal(size=(500, 8))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    shifted = features + 3.0  # each of 8 dimensions moves by 3: distance 8 * 9
    assert frechet_distance(features, shifted) == pytest.approx(72.0, rel=1e-6)


def test_singular_covariances_still_give_a_finite_distance():
    rng = np.random.default_rng(1)
    few = rng.normal(size=(5, 20))       # 5 samples in 20 dimensions: rank-deficient covariance
    value = frechet_distance(few, rng.normal(size=(6, 20)))
    assert np.isfinite(value) and value > 0


def test_identical_sets_have_full_precision_and_recall():
    digits = load_demo(split="train").images.reshape(1500, -1)
    result = precision_recall(digits, digits, k=3)
    assert result.precision == 1.0 and result.recall == 1.0


def test_noise_is_not_on_the_digit_manifold():
    digits = load_demo(split="train").images.reshape(1500, -1)
    noise = np.random.default_rng(0).random(digits.shape)
    result = precision_recall(digits, noise, k=3)
    assert result.precision < 0.05 and result.recall < 0.05
    assert frechet_distance(digits, noise) > 10 * frechet_distance(digits[:750], digits[750:])


def test_mode_collapse_keeps_precision_and_loses_recall():
    train = load_demo(split="train")
    features = train.images.reshape(len(train.labels), -1)
    only_zeros = features[train.labels == 0]
    result = precision_recall(features, only_zeros, k=3)
    assert result.precision > 0.9
    assert result.recall < 0.3


def test_per_class_scores_and_classes_without_enough_samples():
    train = load_demo(split="train")
    features = train.images.reshape(len(train.labels), -1)
    fake_labels = train.labels.copy()
    keep = fake_labels != 9  # the synthetic set has no nines
    result = fidelity(features, train.labels, features[keep], fake_labels[keep],
                      class_names=[str(i) for i in range(10)])
    assert result.per_class["0"]["precision"] == 1.0 and result.per_class["0"]["recall"] == 1.0
    assert result.per_class["9"]["precision"] is None and "fewer than" in result.per_class["9"]["note"]
    assert result.recall < 1.0  # the real nines are not covered


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="widths differ"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ConfigError, match="needs more than 3 samples"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
    with pytest.raises(ConfigError, match="NaN"):
        frechet_distance(np.full((5, 2), np.nan), np.zeros((5, 2)))
