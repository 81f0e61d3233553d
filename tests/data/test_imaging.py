"""Property tests for the shared resize / conversion helpers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dpsad_core.data.imaging import batch_to_chw, luma, resize_plane, to_unit_float

unit_planes = arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 12)),
                     elements=st.floats(0, 1, width=32))


@settings(max_examples=60, deadline=None)
@given(plane=unit_planes, size=st.integers(1, 16))
def test_resize_stays_in_unit_range(plane: np.ndarray, size: int) -> None:
    resized = resize_plane(plane, size)
    assert resized.shape == (size, size) and resized.dtype == np.float32
    assert resized.min() >= 0.0 and resized.max() <= 1.0


@settings(max_examples=60, deadline=None)
@given(plane=unit_planes)
def test_luma_of_equal_channels_is_the_grey(plane: np.ndarray) -> None:
    rgb = np.repeat(plane[..., None], 3, axis=-1)
    np.testing.assert_allclose(luma(rgb), plane, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(batch=arrays(np.uint8, st.tuples(st.integers(1, 4), st.just(6), st.just(6))),
       channels=st.sampled_from([1, 3]), resolution=st.sampled_from([None, 3, 6, 9]))
def test_batch_layout(batch: np.ndarray, channels: int, resolution: int | None) -> None:
    out = batch_to_chw(to_unit_float(batch, path="mem", what="batch"), resolution=resolution,
                       channels=channels, source="mem")
    size = resolution or 6
    assert out.shape == (len(batch), channels, size, size) and out.flags.c_contiguous
    assert out.min() >= 0.0 and out.max() <= 1.0
    if resolution in (None, 6):
        np.testing.assert_allclose(out[:, 0], batch / 255, atol=1e-6)
