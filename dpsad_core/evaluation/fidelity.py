"""Fidelity: Frechet distance and k-NN precision/recall between real and synthetic feature sets.

Pure functions on feature matrices (N x D). Which features they are decides the name of the result:
on Inception-v3 pool features the Frechet distance is FID (Heusel et al. 2017); on the features of
the domain classifier of :mod:`dpsad_core.evaluation.features` it is a "Frechet distance on classifier
features", comparable only between runs evaluated with the same extractor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dpsad_core.errors import ConfigError


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    ``d^2 = |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^{1/2})`` (Heusel et al. 2017, eq. 6; the
    Frechet/Wasserstein-2 distance of Dowson and Landau 1982 between two Gaussians).

    Parameters
    ----------
    real, fake
        Feature matrices, N x D and M x D, N and M at least 2.

    Returns
    -------
    float
        The squared distance (the quantity FID reports), clipped at 0 against round-off.
    """
    real, fake = _features(real, "real"), _features(fake, "fake")
    _same_width(real, fake)
    return frechet_distance_from_moments(real.mean(0), np.cov(real, rowvar=False),
                                         fake.mean(0), np.cov(fake, rowvar=False))


def frechet_distance_from_moments(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                                  sigma2: np.ndarray) -> float:
    """The Frechet distance from the means and covariances (see :func:`frechet_distance`).

    ``Tr((S1 S2)^{1/2})`` is computed as ``sum sqrt(eig(S1^{1/2} S2 S1^{1/2}))``: the two matrices are
    similar, so the traces agree, and the second is symmetric positive semi-definite, so two
    symmetric eigendecompositions replace ``scipy.linalg.sqrtm`` of a non-symmetric product. The
    result equals pytorch-fid's where its ``sqrtm`` is well defined, needs no ``eps`` offset when the
    covariances are singular (fewer samples than dimensions), and takes seconds rather than a
    minute at 2048 dimensions.
    """
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    # Round-off can leave tiny negative eigenvalues of a PSD matrix; they are zeros.
    trace_covmean = float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)
    return max(0.0, value)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of a synthetic set against a real one.

    ``precision``: the share of synthetic samples inside the real manifold (fidelity: are they
    realistic?). ``recall``: the share of real samples inside the synthetic manifold (diversity: is
    the real variety covered?). Each manifold is the union of balls around its samples with radius
    the distance to the sample's k-th nearest neighbour in its own set.
    """

    precision: float
    recall: float
    k: int
    real_count: int
    fake_count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = 3) -> PrecisionRecall:
    """k-NN manifold precision and recall (Kynkaanniemi et al. 2019, eqs. 1-3) on feature sets."""
    real, fake = _features(real, "real"), _features(fake, "fake")
    _same_width(real, fake)
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a whole number >= 1, got {k!r}", field="k", value=k)
    smallest = min(len(real), len(fake))
    if smallest <= k:
        raise ConfigError(f"precision/recall with k={k} needs more than {k} samples in each set, got "
                          f"{len(real)} real and {len(fake)} synthetic", field="k", value=k,
                          remedy="evaluate more samples or lower k")
    real_radii = _kth_neighbour_distance(real, k)
    fake_radii = _kth_neighbour_distance(fake, k)
    precision = float(_inside_manifold(fake, real, real_radii).mean())
    recall = float(_inside_manifold(real, fake, fake_radii).mean())
    return PrecisionRecall(precision=precision, recall=recall, k=k, real_count=len(real), fake_count=len(fake))


@dataclass(frozen=True)
class FidelityResult:
    """Frechet distance and precision/recall, overall and per class, on one kind of features."""

    frechet_distance: float
    precision: float
    recall: float
    k: int
    real_count: int
    fake_count: int
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fidelity(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray, *,
             class_names: tuple[str, ...] | list[str], k: int = 3) -> FidelityResult:
    """Frechet distance and precision/recall overall, and precision/recall within each class.

    A class with too few samples on either side (at most ``k``) gets ``None`` values and a note
    instead of a number; no metric is made up.
    """
    overall = precision_recall(real, fake, k=k)
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    per_class: dict[str, dict[str, Any]] = {}
    for label, name in enumerate(class_names):
        real_c, fake_c = real[real_labels == label], fake[fake_labels == label]
        entry: dict[str, Any] = {"real_count": int(len(real_c)), "fake_count": int(len(fake_c))}
        if min(len(real_c), len(fake_c)) > k:
            pr = precision_recall(real_c, fake_c, k=k)
            entry.update(precision=pr.precision, recall=pr.recall)
        else:
            entry.update(precision=None, recall=None, note=f"fewer than {k + 1} samples on one side")
        per_class[str(name)] = entry
    return FidelityResult(frechet_distance=frechet_distance(real, fake), precision=overall.precision,
                          recall=overall.recall, k=k, real_count=overall.real_count,
                          fake_count=overall.fake_count, per_class=per_class)


# -- helpers -----------------------------------------------------------------------------------------
def _features(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or len(array) < 2:
        raise ConfigError(f"{name} features must be an N x D matrix with N >= 2, got shape {array.shape}",
                          field=name, value=array.shape, remedy="evaluate at least two images per set")
    if not np.isfinite(array).all():
        raise ConfigError(f"{name} features contain NaN or infinity", field=name,
                          remedy="check the images for NaN values (a diverged model samples NaN)")
    return array


def _same_width(real: np.ndarray, fake: np.ndarray) -> None:
    if real.shape[1] != fake.shape[1]:
        raise ConfigError(f"feature widths differ: real {real.shape[1]}, synthetic {fake.shape[1]}",
                          field="features", remedy="embed both sets with the same extractor")


def _kth_neighbour_distance(points: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    import torch

    x = torch.as_tensor(points)
    radii = []
    for start in range(0, len(x), chunk):
        distances = torch.cdist(x[start:start + chunk], x)
        # The k+1-th smallest: the smallest is the point itself, at distance 0.
        radii.append(torch.kthvalue(distances, k + 1, dim=1).values)
    return torch.cat(radii).numpy()


def _inside_manifold(queries: np.ndarray, support: np.ndarray, radii: np.ndarray, chunk: int = 1024) -> np.ndarray:
    import torch

    q, s, r = torch.as_tensor(queries), torch.as_tensor(support), torch.as_tensor(radii)
    inside = [(torch.cdist(q[start:start + chunk], s) <= r[None, :]).any(dim=1)
              for start in range(0, len(q), chunk)]
    return torch.cat(inside).numpy()
