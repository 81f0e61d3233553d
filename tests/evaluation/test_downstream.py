"""Downstream accuracy: real digits teach a classifier, noise does not."""

from __future__ import annotations

import numpy as np
import pytest

from dpsad_core.data import load_demo
from dpsad_core.errors import ConfigError
from dpsad_core.evaluation import downstream_accuracy


@pytest.mark.slow
def test_classifier_on_real_data_beats_one_on_noise():
    train, test = load_demo(split="train"), load_demo(split="test")
    real = downstream_accuracy(train.images, train.labels, test.images, test.labels, num_classes=10, epochs=8)
    rng = np.random.default_rng(0)
    noise = downstream_accuracy(rng.random(train.images.shape, dtype=np.float32), train.labels, test.images,
                                test.labels, num_classes=10, epochs=3)
    assert real.test_accuracy > 0.85
    assert noise.test_accuracy < 0.3
    assert 1 <= real.chosen_epoch <= 8
    assert "synthetic hold-out" in real.selection


def test_too_few_images_is_a_config_error():
    with pytest.raises(ConfigError):
        downstream_accuracy(np.zeros((5, 1, 8, 8), np.float32), np.zeros(5, int), np.zeros((5, 1, 8, 8), np.float32),
                            np.zeros(5, int), num_classes=2)
