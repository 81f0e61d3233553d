"""Resized twins: how often a record passes the twin test of ``data/identity.py`` for copies and for others.

For each case, the share of records whose nearest size signature in the other set is within
``SIGNATURE_TOLERANCE`` and ``TWIN_RATIO`` times closer than the second nearest (``resized_twins`` on every
record, not a sample): re-imports of the same images at other sizes (should be near 1) against other
images of the same kind (should be near 0). Also times one comparison of a 60,000-record dataset with a
registered one of 60,000, as ``find_overlaps`` does it (a sample of ``SIGNATURE_SAMPLE``, both ways).

Needs ../shared/data (MNIST, Fashion-MNIST, MedMNIST). Usage: python bench/identity_twins.py
Prints a Markdown table and one JSON line at the end (docs/privacy.md, "Why a signature, not a hash").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import dpsad_core.data.identity as identity
from dpsad_core.data.identity import resized_twins, size_signatures
from dpsad_core.data.idx import load_idx
from dpsad_core.data.imaging import batch_to_chw, chw_to_hwc

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def idx_images(kind: str, split: str) -> np.ndarray:
    prefix = "train" if split == "train" else "t10k"
    root = DATA / kind
    dataset = load_idx(next(root.glob(f"{prefix}-images*")), next(root.glob(f"{prefix}-labels*")),
                       class_names=tuple(str(i) for i in range(10)), name=kind, resolution=None, channels=None)
    return dataset.images


def medmnist_images(name: str, split: str) -> np.ndarray:
    with np.load(DATA / "medmnist" / f"{name}.npz") as data:
        return data[f"{split}_images"].astype(np.float32)[:, None] / 255.0


def resized(images: np.ndarray, size: int) -> np.ndarray:
    return batch_to_chw(chw_to_hwc(images), resolution=size, channels=1, source="benchmark")


def every_record_share(images: np.ndarray, others: np.ndarray) -> float:
    """``resized_twins`` over every record of ``images`` (no sampling)."""
    saved = identity.SIGNATURE_SAMPLE
    identity.SIGNATURE_SAMPLE = len(images)
    try:
        return resized_twins(size_signatures(images), size_signatures(others))
    finally:
        identity.SIGNATURE_SAMPLE = saved


def main() -> int:
    rows: list[tuple[str, float, int]] = []
    for kind in ("mnist", "fashion-mnist"):
        train, test = idx_images(kind, "train"), idx_images(kind, "test")
        for size in (8, 14, 32):
            rows.append((f"{kind} train re-imported at {size} px vs train", every_record_share(
                resized(train[:2000], size), train[:20000]), 2000))
        rows.append((f"{kind} test vs train (other images)", every_record_share(test, train), len(test)))
        rows.append((f"{kind} test vs 1,000 train images", every_record_share(test, train[:1000]), len(test)))
    for name in ("pneumoniamnist", "breastmnist"):
        train = medmnist_images(name, "train")
        for size in (8, 14, 56):
            rows.append((f"{name} train re-imported at {size} px vs train",
                         every_record_share(resized(train[:1000], size), train), min(1000, len(train))))
        for split in ("test", "val"):
            images = medmnist_images(name, split)
            rows.append((f"{name} {split} vs train", every_record_share(images, train), len(images)))
    print("| compared | records with a twin | records |\n|---|---|---|")
    for case, share, count in rows:
        print(f"| {case} | {share:.4f} | {count:,} |")
    mnist = size_signatures(idx_images("mnist", "train"))
    other = size_signatures(resized(idx_images("mnist", "train"), 16))
    tick = time.perf_counter()
    shares = (resized_twins(other, mnist), resized_twins(mnist, other))
    seconds = time.perf_counter() - tick
    print(f"\nfind_overlaps' comparison of 60,000 with 60,000 records (both ways): {seconds:.2f} s, shares {shares}")
    print(json.dumps({"shares": {case: round(share, 4) for case, share, _ in rows}, "compare_seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
