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


def test_the_cnn_trains_on_the_device_it_is_given(monkeypatch):
    from dpsad_core.evaluation.downstream import SmallCNN

    moved, original = [], SmallCNN.to
    monkeypatch.setattr(SmallCNN, "to", lambda self, *args, **kwargs: moved.append(args) or original(self, *args,
                                                                                                        **kwargs))
    train = load_demo(split="train")
    result = downstream_accuracy(train.images[:200], train.labels[:200], train.images[:50], train.labels[:50],
                                 num_classes=10, epochs=1, device="cpu")
    assert moved == [("cpu",)] and result.device == "cpu" and result.to_dict()["device"] == "cpu"


@pytest.mark.parametrize(("requested", "gpus", "resolved"), [("cpu", 0, "cpu"), ("auto", 0, "cpu"),
                                                              ("auto", 1, "cuda"), ("cuda:1", 2, "cuda:1")])
def test_evaluate_trains_its_cnn_on_the_resolved_device(monkeypatch, tmp_path, requested, gpus, resolved):
    """``evaluate --device`` reaches the downstream CNN (it trained on the CPU whatever the option said)."""
    import torch

    from dpsad_core.evaluation import EvaluationOptions, evaluate_images
    from dpsad_core.evaluation import downstream as downstream_module

    class CnnReachedError(Exception):
        pass

    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        raise CnnReachedError  # the rest of the evaluation is not this test's concern

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(downstream_module, "downstream_accuracy", spy)
    train, test = load_demo(split="train"), load_demo(split="test")
    stages = evaluate_images(train.images[:100], train.labels[:100], training=train, test=test, workspace=tmp_path,
                             options=EvaluationOptions(device=requested))
    assert next(stages).stage == "downstream"
    with pytest.raises(CnnReachedError):
        next(stages)
    assert seen["device"] == resolved
