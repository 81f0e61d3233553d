"""The feature classifier: trained on real training data, cached per fingerprint, shape-checked."""

from __future__ import annotations

import numpy as np
import pytest

from dpsad_core.data import load_demo
from dpsad_core.errors import ConfigError, RunError
from dpsad_core.evaluation.features import FeatureNetSpec, cache_path, cached_feature_extractor

SPEC = FeatureNetSpec(channels=16, min_steps=300)


@pytest.mark.slow
def test_extractor_learns_the_classes_and_is_cached_per_fingerprint(workspace):
    train = load_demo(split="train")
    extractor, cached = cached_feature_extractor(train, workspace=workspace, spec=SPEC)
    assert not cached and extractor.validation_accuracy > 0.8
    assert cache_path(workspace, train.fingerprint(), SPEC).is_file()
    again, cached = cached_feature_extractor(train, workspace=workspace, spec=SPEC)
    assert cached
    features = extractor(train.images[:50])
    assert features.shape == (50, 64)
    assert np.array_equal(features, again(train.images[:50]))
    # Other data (another fingerprint) or another spec gets its own extractor.
    assert cache_path(workspace, load_demo(split="test").fingerprint(), SPEC) != cache_path(
        workspace, train.fingerprint(), SPEC)
    assert cache_path(workspace, train.fingerprint(), FeatureNetSpec(epochs=4)) != cache_path(
        workspace, train.fingerprint(), SPEC)


@pytest.mark.slow
def test_features_separate_the_classes_better_than_pixels(workspace):
    from dpsad_core.evaluation.fidelity import frechet_distance

    train = load_demo(split="train")
    extractor, _ = cached_feature_extractor(train, workspace=workspace, spec=SPEC)
    features = extractor(train.images)
    zeros, ones = features[train.labels == 0], features[train.labels == 1]
    half = len(zeros) // 2
    assert frechet_distance(zeros, ones) > 5 * frechet_distance(zeros[:half], zeros[half:])


@pytest.mark.slow
def test_a_damaged_cache_file_and_wrong_shapes_are_clear_errors(workspace):
    train = load_demo(split="train")
    path = cache_path(workspace, train.fingerprint(), SPEC)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"damaged")
    with pytest.raises(RunError, match="delete it"):
        cached_feature_extractor(train, workspace=workspace, spec=SPEC)
    path.unlink()
    extractor, _ = cached_feature_extractor(train, workspace=workspace, spec=SPEC)
    with pytest.raises(ConfigError, match="do not match the feature classifier"):
        extractor(np.zeros((2, 1, 16, 16), np.float32))
    with pytest.raises(ConfigError, match="epochs"):
        FeatureNetSpec(epochs=0)


def test_unseen_records_are_exactly_those_the_extractor_did_not_fit():
    from dpsad_core.evaluation.features import unseen_records

    spec = FeatureNetSpec(max_records=100, seed=3)
    unseen = unseen_records(150, spec)
    # 100 drawn, the first 10 of them for validation: 90 fitted, 60 unseen.
    assert len(unseen) == 60 and len(set(unseen)) == 60
    assert len(unseen_records(150, FeatureNetSpec(max_records=1000))) == 15


def test_the_cache_is_keyed_with_the_workspace_used_not_the_default_one(tmp_path, workspace, monkeypatch):
    # The dataset's identity is an HMAC under a workspace's key: keying the cache with the default workspace's
    # key named the extractor after another identity, and created that workspace's key as a side effect.
    from dpsad_core.evaluation import features

    other = tmp_path / "other-workspace"
    train = load_demo(split="train")
    seen = []

    def train_stub(images, labels, *, num_classes, fingerprint, spec):
        seen.append(fingerprint)
        raise RuntimeError("stop before training")

    monkeypatch.setattr(features, "train_feature_extractor", train_stub)
    with pytest.raises(RuntimeError, match="stop before training"):
        cached_feature_extractor(train, workspace=other, spec=SPEC)
    assert seen == [train.fingerprint(other)]
    assert not (workspace / "identity.key").exists()
