"""Memorisation: does the synthetic data sit closer to the training records than unseen real data does?

Distance to closest record (DCR): for every synthetic image, the distance to its nearest training
image; the same for every real held-out image (never trained on). A generator that does not copy
produces synthetic images that are no closer to the training set than fresh real images are, so the
share of (synthetic, holdout) pairs in which the synthetic image is the closer one is about 50%; a
generator that copies its training data pushes it towards 100% (docs/method.md §3).

Near-copies: synthetic images closer to a training image than all but 1% of real held-out images are
(``near_copy_quantile``). Even an ideal generator has about 1% flagged by this rule; many more, or
distances near 0, are copies.

Everything here is computed from the private training data and is *not* differentially private:
the results and the closest-pairs picture stay in the local run folder and are never exported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.errors import ConfigError

NEAR_COPY_QUANTILE = 0.01


def nearest_records(queries: np.ndarray, records: np.ndarray, *, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query's nearest record, Euclidean on flattened arrays, in chunks.

    Chunking keeps memory at ``chunk x len(records)`` distances whatever the set sizes.
    """
    import torch

    q = torch.as_tensor(_flat(queries, "queries"))
    r = torch.as_tensor(_flat(records, "records"))
    if q.shape[1] != r.shape[1]:
        raise ConfigError(f"images differ in size: {tuple(np.shape(queries))[1:]} vs {tuple(np.shape(records))[1:]}",
                          field="images", remedy="resize both sets to the same resolution and channels")
    distances, indices = [], []
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]
        # The matrix-product form of cdist is fast but leaves round-off (an exact copy can come out
        # at 1e-4, not 0): it picks the nearest record, and the distance to it is then recomputed
        # exactly, so copies are at exactly 0.
        nearest = torch.cdist(block, r).argmin(dim=1)
        distances.append((block.double() - r[nearest].double()).norm(dim=1))
        indices.append(nearest)
    return torch.cat(distances).numpy(), torch.cat(indices).numpy()


@dataclass(frozen=True)
class MemorisationResult:
    """DCR comparison of synthetic against held-out real images, and near-copy flags.

    Distances are root-mean-square differences per value (Euclidean distance / sqrt(values per
    image)) on images in [0, 1] for pixel space, so they read the same at any resolution.
    """

    space: str
    share_closer_to_training_than_holdout: float
    p_value_closer: float | None        # one-sided Mann-Whitney: synthetic DCRs smaller than holdout DCRs
    synthetic_count: int
    holdout_count: int
    training_count: int
    synthetic_dcr_median: float
    holdout_dcr_median: float
    synthetic_dcr_min: float
    near_copy_threshold: float
    near_copy_quantile: float
    near_copy_count: int
    near_copy_share: float
    holdout_exact_duplicates_in_training: int
    closest_pairs: list[dict[str, Any]] = field(default_factory=list)  # indices only, never pixels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memorisation(synthetic: np.ndarray, training: np.ndarray, holdout: np.ndarray, *, space: str = "pixel",
                 near_copy_quantile: float = NEAR_COPY_QUANTILE, closest: int = 8) -> MemorisationResult:
    """Compare the synthetic set's distances to the training set with the held-out set's.

    Parameters
    ----------
    synthetic, training, holdout
        Images (N x C x H x W, values in [0, 1]) or feature vectors (N x D); the same width each.
        ``holdout`` must be real data the generator never saw.
    space
        What the arrays are, for the report ("pixel" or e.g. "classifier features").
    near_copy_quantile
        Flag synthetic images closer to training than this quantile of the holdout distances.
    closest
        How many of the closest (synthetic, training) pairs to list.
    """
    if not 0 < near_copy_quantile < 0.5:
        raise ConfigError(f"near_copy_quantile must be in (0, 0.5), got {near_copy_quantile!r}",
                          field="near_copy_quantile", value=near_copy_quantile)
    for name, array in (("synthetic", synthetic), ("training", training), ("holdout", holdout)):
        if len(array) < 1:
            raise ConfigError(f"the {name} set is empty", field=name, remedy="pass at least one image")
    scale = float(np.sqrt(np.prod(np.shape(training)[1:])))
    synthetic_dcr, synthetic_nearest = nearest_records(synthetic, training)
    holdout_dcr, _ = nearest_records(holdout, training)
    synthetic_dcr, holdout_dcr = synthetic_dcr / scale, holdout_dcr / scale
    threshold = float(np.quantile(holdout_dcr, near_copy_quantile))
    # <=: exact copies (distance 0) are flagged even when the threshold itself is 0.
    flagged = synthetic_dcr <= threshold
    order = np.argsort(synthetic_dcr, kind="stable")[:closest]
    pairs = [{"synthetic_index": int(i), "training_index": int(synthetic_nearest[i]),
              "distance": float(synthetic_dcr[i]), "near_copy": bool(flagged[i])} for i in order]
    return MemorisationResult(
        space=space,
        share_closer_to_training_than_holdout=share_closer(synthetic_dcr, holdout_dcr),
        p_value_closer=_p_value_closer(synthetic_dcr, holdout_dcr),
        synthetic_count=len(synthetic_dcr), holdout_count=len(holdout_dcr), training_count=len(training),
        synthetic_dcr_median=float(np.median(synthetic_dcr)), holdout_dcr_median=float(np.median(holdout_dcr)),
        synthetic_dcr_min=float(synthetic_dcr.min()), near_copy_threshold=threshold,
        near_copy_quantile=near_copy_quantile, near_copy_count=int(flagged.sum()),
        near_copy_share=float(flagged.mean()), holdout_exact_duplicates_in_training=int((holdout_dcr == 0).sum()),
        closest_pairs=pairs)


def share_closer(synthetic_dcr: np.ndarray, holdout_dcr: np.ndarray) -> float:
    """P(a synthetic image's DCR < a holdout image's DCR) over all pairs, ties counted one half.

    0.5 when the two sets are equally close to the training data; 1.0 when every synthetic image
    is closer than every held-out image (copies).
    """
    holdout_sorted = np.sort(np.asarray(holdout_dcr, dtype=np.float64))
    synthetic_dcr = np.asarray(synthetic_dcr, dtype=np.float64)
    below = np.searchsorted(holdout_sorted, synthetic_dcr, side="left")   # holdout strictly closer
    not_above = np.searchsorted(holdout_sorted, synthetic_dcr, side="right")
    greater = len(holdout_sorted) - not_above
    ties = not_above - below
    return float(((greater + 0.5 * ties) / len(holdout_sorted)).mean())


def save_closest_pairs(result: MemorisationResult, synthetic: np.ndarray, training: np.ndarray, path: Path) -> Path:
    """A PNG of the closest pairs, synthetic left and its nearest training image right, one pair a row.

    The picture shows private training images: write it only inside the local run folder, never
    into anything exported or shared.
    """
    from dpsad_core.sampling import grid_image, save_png, to_uint8

    if not result.closest_pairs:
        raise ConfigError("no closest pairs to draw", field="closest")
    tiles = []
    for pair in result.closest_pairs:
        tiles.append(synthetic[pair["synthetic_index"]])
        tiles.append(training[pair["training_index"]])
    pixels = to_uint8(np.stack(tiles).astype(np.float32) * 2 - 1)
    return save_png(grid_image(pixels, rows=len(result.closest_pairs)), Path(path))


def _flat(array: np.ndarray, name: str) -> np.ndarray:
    flat = np.asarray(array, dtype=np.float32).reshape(len(array), -1)
    if not np.isfinite(flat).all():
        raise ConfigError(f"the {name} contain NaN or infinity", field=name,
                          remedy="check the images (a diverged model samples NaN)")
    return flat


def _p_value_closer(synthetic_dcr: np.ndarray, holdout_dcr: np.ndarray) -> float | None:
    from scipy.stats import mannwhitneyu

    if len(synthetic_dcr) < 2 or len(holdout_dcr) < 2:
        return None
    # H1: synthetic images are closer to training than held-out ones (the memorisation direction).
    value = float(mannwhitneyu(synthetic_dcr, holdout_dcr, alternative="less").pvalue)
    return value if np.isfinite(value) else None  # all distances equal: no test possible
