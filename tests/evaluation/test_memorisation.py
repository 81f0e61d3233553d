"""Distance to closest record: copies are caught, data drawn like the holdout scores about 50%."""

from __future__ import annotations

import numpy as np
import pytest

from dpsad_core.data import load_demo
from dpsad_core.errors import ConfigError
from dpsad_core.evaluation.memorisation import memorisation, nearest_records, save_closest_pairs, share_closer


@pytest.fixture(scope="module")
def split():
    images = load_demo(split="train").images
    return images[:1000], images[1000:1250], images[1250:]  # training, holdout, a fresh real set


def test_a_set_that_copies_training_images_is_flagged(split):
    training, holdout, _ = split
    copies = training[np.random.default_rng(0).choice(len(training), 200, replace=False)]
    result = memorisation(copies, training, holdout)
    assert result.share_closer_to_training_than_holdout > 0.99
    assert result.near_copy_count == 200 and result.synthetic_dcr_min == 0.0
    assert result.p_value_closer < 1e-6
    assert result.closest_pairs[0]["distance"] == 0.0 and result.closest_pairs[0]["near_copy"]


def test_slightly_perturbed_copies_are_still_near_copies(split):
    training, holdout, _ = split
    noisy = np.clip(training[:100] + np.random.default_rng(1).normal(0, 0.01, training[:100].shape), 0, 1)
    result = memorisation(noisy.astype(np.float32), training, holdout)
    assert result.near_copy_share > 0.95


def test_a_set_drawn_like_the_holdout_scores_about_half(split):
    training, holdout, fresh = split
    result = memorisation(fresh, training, holdout)
    assert 0.4 < result.share_closer_to_training_than_holdout < 0.6
    assert result.near_copy_share < 0.06  # about 1% by construction of the threshold
    assert result.p_value_closer > 0.01


def test_share_counts_ties_as_half_and_is_one_when_all_synthetic_are_closer():
    assert share_closer(np.array([0.0, 0.0]), np.array([1.0, 2.0])) == 1.0
    assert share_closer(np.array([3.0]), np.array([1.0, 2.0])) == 0.0
    assert share_closer(np.array([1.0]), np.array([1.0])) == 0.5


def test_nearest_records_finds_the_exact_match():
    records = np.random.default_rng(2).random((50, 1, 4, 4)).astype(np.float32)
    distance, index = nearest_records(records[[7, 31]], records, chunk=1)
    assert list(index) == [7, 31] and np.all(distance == 0)


def test_closest_pairs_picture_has_one_row_per_pair(split, tmp_path):
    training, holdout, _ = split
    result = memorisation(training[:20], training, holdout, closest=4)
    path = save_closest_pairs(result, training[:20], training, tmp_path / "pairs.png")
    from PIL import Image

    width, height = Image.open(path).size
    assert height > width  # 4 rows of 2 tiles


def test_mismatched_sizes_are_config_errors(split):
    training, holdout, _ = split
    with pytest.raises(ConfigError, match="differ in size"):
        memorisation(np.zeros((3, 1, 4, 4), np.float32), training, holdout)
