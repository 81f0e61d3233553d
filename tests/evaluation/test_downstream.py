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


def test_a_small_set_trains_for_at_least_min_steps_and_learns_more():
    train, test = load_demo(split="train"), load_demo(split="test")
    keep = np.concatenate([np.flatnonzero(train.labels == c)[:10] for c in range(10)])  # 100 images
    few = downstream_accuracy(train.images[keep], train.labels[keep], test.images, test.labels, num_classes=10,
                              epochs=3)
    # 90 training images in batches of 16 (the at-least-ten-steps rule): 6 steps per epoch.
    many = downstream_accuracy(train.images[keep], train.labels[keep], test.images, test.labels, num_classes=10,
                               epochs=3, min_steps=300)
    assert few.epochs == 3 and many.epochs == 50 and 1 <= many.chosen_epoch <= 50
    assert many.test_accuracy > few.test_accuracy + 0.1
    assert downstream_accuracy(train.images[keep], train.labels[keep], test.images, test.labels, num_classes=10,
                               epochs=3, min_steps=10).epochs == 3  # already more steps than the minimum
