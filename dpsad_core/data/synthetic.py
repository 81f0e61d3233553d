"""Generated public data: digits rendered from a font, randomly distorted.

This is data a user may call public without reservation: it is drawn from Pillow's bundled font
(Aileron) with random stroke width, rotation, shear, scale, offset, elastic distortion and blur, and
contains nothing from any private collection. It serves as the public set of the
``dpsad-public-teacher`` recipe for digit-like private data (the embedded demo digits, MNIST): a
teacher learns the shapes of digits from it at no privacy cost, and DP-SGD only has to adapt the
student to the private handwriting (docs/method.md §4 lists public pretraining as a lever).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from dpsad_core.atomic import atomic_write_bytes
from dpsad_core.data.dataset import ImageDataset
from dpsad_core.errors import ConfigError

RENDERED_DIGITS_SOURCE = "rendered-digits"
DEFAULT_COUNT = 10_000
NUM_CLASSES = 10  # the digits 0-9
_CANVAS = 64
_GLYPH_SIZE = 38
# Bump when the rendering changes, so cached renderings of the old kind are not reused.
RENDER_VERSION = 1


def render_digits(*, count: int = DEFAULT_COUNT, resolution: int = 28, seed: int = 0) -> ImageDataset:
    """``count`` distorted font digits at ``resolution`` (classes "0".."9", balanced, one channel).

    The digit's bounding box fills about 70% of the image height at resolution 28 (as in MNIST) and
    all of it at resolution 8 (as in scikit-learn's digits), centred by its centre of mass.
    """
    if count < 10:
        raise ConfigError("render at least 10 images (one per class)", field="count", value=count)
    if not 4 <= resolution <= 256:
        raise ConfigError("resolution must be between 4 and 256", field="resolution", value=resolution)
    from PIL import ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=_GLYPH_SIZE)
    labels = np.arange(count, dtype=np.int64) % NUM_CLASSES
    rng.shuffle(labels)
    fill = 1.0 if resolution <= 12 else 20.0 / 28.0
    images = np.stack([_render_one(int(label), font, rng, resolution, fill) for label in labels])
    return _as_dataset(images[:, None].astype(np.float32), labels, resolution)


def cached_render_digits(*, count: int = DEFAULT_COUNT, resolution: int = 28, seed: int = 0,
                         cache: Path | None = None) -> ImageDataset:
    """:func:`render_digits`, kept in ``cache`` (default :func:`~dpsad_core.paths.cache_dir`) after the first call.

    Rendering 10,000 distorted digits takes tens of seconds, more on a busy machine; every plan preview
    and run that names ``rendered-digits`` would otherwise pay it again. The images are generated, not
    private, so caching them on disk is harmless. An unreadable cache file is rendered again.
    """
    from dpsad_core.paths import cache_dir

    path = Path(cache or cache_dir()) / f"rendered-digits-v{RENDER_VERSION}-n{count}-r{resolution}-s{seed}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            images, labels = stored["images"], stored["labels"]
        if images.shape == (count, 1, resolution, resolution) and labels.shape == (count,):
            return _as_dataset(images.astype(np.float32, copy=False), labels.astype(np.int64, copy=False),
                               resolution)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # missing or damaged: render it again (below) and replace the file
    dataset = render_digits(count=count, resolution=resolution, seed=seed)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=dataset.images, labels=dataset.labels)  # mostly background: 10x smaller
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:
        pass  # a read-only or full cache folder only costs the next caller a re-render
    return dataset


def _as_dataset(images: np.ndarray, labels: np.ndarray, resolution: int) -> ImageDataset:
    return ImageDataset(images=images, labels=labels, class_names=tuple(str(d) for d in range(NUM_CLASSES)),
                        patient_ids=None, name=f"rendered-digits-{resolution}", source=RENDERED_DIGITS_SOURCE)


def _render_one(digit: int, font, rng: np.random.Generator, resolution: int, fill: float) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFilter

    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = int(rng.integers(0, 5))
    draw.text((_CANVAS / 2, _CANVAS / 2), str(digit), fill=255, font=font, anchor="mm",
              stroke_width=stroke, stroke_fill=255)
    # Random affine: rotation, shear and anisotropic scale (handwriting slants and squashes).
    angle = np.deg2rad(rng.uniform(-18, 18))
    shear = rng.uniform(-0.35, 0.35)
    sx, sy = rng.uniform(0.75, 1.2), rng.uniform(0.85, 1.15)
    a, b = np.cos(angle) / sx, (np.sin(angle) + shear) / sx
    d, e = -np.sin(angle) / sy, np.cos(angle) / sy
    c = _CANVAS / 2 - a * _CANVAS / 2 - b * _CANVAS / 2
    f = _CANVAS / 2 - d * _CANVAS / 2 - e * _CANVAS / 2
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (a, b, c, d, e, f),
                               resample=Image.Resampling.BILINEAR)
    pixels = _elastic(np.asarray(canvas, dtype=np.float32) / 255.0, rng)
    glyph = Image.fromarray((pixels * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
    box = glyph.getbbox()
    if box is None:  # pragma: no cover - a digit always leaves ink
        return np.zeros((resolution, resolution), np.float32)
    glyph = glyph.crop(box)
    target = max(2, int(round(fill * resolution * rng.uniform(0.85, 1.0))))
    if resolution <= 12:
        # scikit-learn's digits are scaled to fill the height (and are narrower than the box).
        size = (max(1, min(resolution, round(glyph.size[0] * target / glyph.size[1]))), target)
    else:
        # MNIST: the longer side fits a 20 x 20 box inside 28 x 28, aspect kept.
        scale = target / max(glyph.size)
        size = (max(1, round(glyph.size[0] * scale)), max(1, round(glyph.size[1] * scale)))
    ink = np.asarray(glyph.resize(size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    out = np.zeros((resolution, resolution), np.float32)
    total = ink.sum()
    cy, cx = ((np.indices(ink.shape) * ink).reshape(2, -1).sum(1) / total) if total > 0 else (0, 0)
    top = int(round(resolution / 2 - cy + rng.uniform(-0.5, 0.5)))
    left = int(round(resolution / 2 - cx + rng.uniform(-0.5, 0.5)))
    top = min(max(top, 0), resolution - ink.shape[0])
    left = min(max(left, 0), resolution - ink.shape[1])
    out[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    peak = out.max()
    return np.clip(out / peak, 0, 1) if peak > 0 else out


def _elastic(pixels: np.ndarray, rng: np.random.Generator, alpha: float = 5.0, sigma: float = 5.0) -> np.ndarray:
    """Smooth random displacement (Simard et al. 2003), the classic model of handwriting wobble."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    dy = gaussian_filter(rng.uniform(-1, 1, pixels.shape), sigma) * alpha * sigma
    dx = gaussian_filter(rng.uniform(-1, 1, pixels.shape), sigma) * alpha * sigma
    rows, cols = np.indices(pixels.shape)
    return map_coordinates(pixels, (rows + dy, cols + dx), order=1, mode="constant").astype(np.float32)
