"""Logistic regression on pixels: selection on a synthetic hold-out, real data beats noise."""

from __future__ import annotations

import numpy as np
import pytest

from dpsad_core.data import load_demo
from dpsad_core.errors import ConfigError
from dpsad_core.evaluation.logistic import logistic_accuracy


def test_logistic_regression_on_real_data_beats_one_on_noise():
    train, test = load_demo(split="train"), load_demo(split="test")
    real = logistic_accuracy(train.images, train.labels, test.images, test.labels)
    noise = np.random.default_rng(0).random(train.images.shape)
    fake = logistic_accuracy(noise, train.labels, test.images, test.labels, c_grid=(1.0,))
    assert real.test_accuracy > 0.9
    assert fake.test_accuracy < 0.3
    assert real.chosen_c in real.c_grid and "synthetic hold-out" in real.selection
    assert set(real.selection_scores) == {str(c) for c in real.c_grid}


def test_bad_inputs_are_config_errors():
    images = np.zeros((30, 1, 8, 8), np.float32)
    labels = np.arange(30) % 2
    with pytest.raises(ConfigError, match="at least 20"):
        logistic_accuracy(images[:5], labels[:5], images, labels)
    with pytest.raises(ConfigError, match="differ in size"):
        logistic_accuracy(images, labels, np.zeros((4, 1, 4, 4)), labels[:4])
    with pytest.raises(ConfigError, match="single class"):
        logistic_accuracy(images, np.zeros(30, int), images, labels)
