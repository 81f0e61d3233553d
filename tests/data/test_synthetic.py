"""Generated public digits: shape, balance, determinism, and that they look like digits to a classifier."""

from __future__ import annotations

import numpy as np
import pytest

from dpsad_core.data import render_digits, resolve_data_source
from dpsad_core.errors import ConfigError


def test_rendered_digits_shape_balance_and_range():
    data = render_digits(count=200, resolution=8, seed=3)
    assert data.images.shape == (200, 1, 8, 8) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert np.bincount(data.labels).tolist() == [20] * 10
    assert data.source == "rendered-digits"
    # every image has ink, and not everywhere
    ink = (data.images > 0.5).mean(axis=(1, 2, 3))
    assert (ink > 0.05).all() and (ink < 0.8).all()


def test_rendered_digits_are_deterministic_per_seed():
    a, b = render_digits(count=30, resolution=28, seed=1), render_digits(count=30, resolution=28, seed=1)
    c = render_digits(count=30, resolution=28, seed=2)
    assert np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_rendered_digits_teach_a_classifier_real_digits():
    """A nearest-centroid classifier fitted on rendered digits must beat chance on the real demo digits."""
    from dpsad_core.data import load_demo

    rendered = render_digits(count=1000, resolution=8)
    real = load_demo(split="test")
    centroids = np.stack([rendered.images[rendered.labels == c].reshape(-1, 64).mean(0) for c in range(10)])
    distances = ((real.images.reshape(-1, 1, 64) - centroids[None]) ** 2).sum(-1)
    accuracy = float((distances.argmin(1) == real.labels).mean())
    assert accuracy > 0.4  # chance is 0.1


def test_rendered_digits_as_a_data_source(workspace):
    data = resolve_data_source("rendered-digits", workspace=workspace, resolution=16)
    assert data.resolution == 16 and data.num_classes == 10 and data.num_records == 10_000


def test_rendered_digits_rejects_bad_arguments():
    with pytest.raises(ConfigError):
        render_digits(count=5)
    with pytest.raises(ConfigError):
        render_digits(count=10, resolution=2)


def test_cached_rendering_is_identical_reused_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    from dpsad_core.data import synthetic

    first = synthetic.cached_render_digits(count=40, resolution=12, seed=5, cache=tmp_path)
    fresh = render_digits(count=40, resolution=12, seed=5)
    assert np.array_equal(first.images, fresh.images) and np.array_equal(first.labels, fresh.labels)
    assert first.fingerprint() == fresh.fingerprint()
    (cached,) = tmp_path.glob("rendered-digits-*.npz")

    calls = []
    real = synthetic.render_digits
    monkeypatch.setattr(synthetic, "render_digits", lambda **kw: calls.append(kw) or real(**kw))
    again = synthetic.cached_render_digits(count=40, resolution=12, seed=5, cache=tmp_path)
    assert calls == [] and np.array_equal(again.images, fresh.images)

    cached.write_bytes(b"not an npz")  # a damaged file is rendered again and replaced
    repaired = synthetic.cached_render_digits(count=40, resolution=12, seed=5, cache=tmp_path)
    assert len(calls) == 1 and np.array_equal(repaired.images, fresh.images)
    synthetic.cached_render_digits(count=40, resolution=12, seed=5, cache=tmp_path)
    assert len(calls) == 1

    synthetic.cached_render_digits(count=40, resolution=12, seed=6, cache=tmp_path)  # another seed: its own file
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npz"))) == 2


def test_resolve_rendered_digits_uses_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DPSAD_CACHE_DIR", str(tmp_path / "cache"))
    train = resolve_data_source("rendered-digits", workspace=tmp_path / "ws", resolution=8)
    assert train.images.shape == (10_000, 1, 8, 8)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["rendered-digits-v1-n10000-r8-s0.npz"]
    assert resolve_data_source("rendered-digits", workspace=tmp_path / "ws", resolution=8).fingerprint() \
        == train.fingerprint()
