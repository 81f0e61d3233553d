"""The offline demo dataset: scikit-learn's bundled 8 x 8 handwritten digits (no download).

1,797 grey images with values 0..16, split by a fixed permutation (``default_rng(0)``) into 1,500
training and 297 test images, so the split is the same on every machine.
"""

from __future__ import annotations

import numpy as np

from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.imaging import batch_to_chw, validate_options
from dpsad_core.errors import ConfigError

DEMO_SOURCE = "demo"
DEMO_SPLITS = ("train", "test")
DEMO_TRAIN_SIZE = 1500
_MAX_VALUE = 16.0
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))


def load_demo(*, split: str = "train", resolution: int | None = None) -> ImageDataset:
    """The demo digits: ``split`` "train" (1,500 images) or "test" (297), native resolution 8.

    Parameters
    ----------
    split
        "train" or "test".
    resolution
        Side length to resize to (bilinear), or None for the native 8 x 8.

    Returns
    -------
    ImageDataset
        Named ``"demo-digits-{split}"``, source ``"demo"``, classes "0".."9", one channel.
    """
    if split not in DEMO_SPLITS:
        raise ConfigError(f"the demo dataset has no split {split!r}; valid splits: "
                          f"{', '.join(DEMO_SPLITS)}", field="split", value=split,
                          remedy="pass split='train' or split='test'")
    validate_options(resolution=resolution, channels=None)
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    chosen = order[:DEMO_TRAIN_SIZE] if split == "train" else order[DEMO_TRAIN_SIZE:]
    unit = (digits.images[chosen] / _MAX_VALUE).astype(np.float32)
    images = batch_to_chw(unit, resolution=resolution, channels=1, source=DEMO_SOURCE)
    return ImageDataset(images=images, labels=digits.target[chosen].astype(np.int64),
                        class_names=DIGIT_CLASSES, patient_ids=None, name=f"demo-digits-{split}",
                        source=DEMO_SOURCE)
