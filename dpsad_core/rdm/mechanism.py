"""DP-RDM's query mechanism: a noisy mean of the nearest private embeddings (docs/method.md §2).

One query, exactly as Lebensold et al. 2024 (arXiv 2403.14421), Section 3:

1. Poisson-subsample the private index with rate ``q``, fresh for every query;
2. take the ``k`` nearest neighbours of the query embedding in the subsample (cosine similarity);
3. scale each to unit norm and average them, add ``N(0, sigma^2 I)``;
4. mix with the query: ``c = lambda * noisy_mean + (1 - lambda) * query``;
5. the RDM generates from ``c`` (:mod:`dpsad_core.rdm.generation`).

Sensitivity. The mean always divides by ``k``, even when the subsample (of the queried class) holds
fewer than ``k`` records: the missing neighbours count as zero vectors. Adding or removing one record
then changes at most one of the ``k`` slots (the record enters and the k-th nearest leaves, or a zero
slot is filled), so the pre-noise mean moves by at most ``||u - v|| / k <= 2 / k`` in L2 for unit
vectors ``u, v``. A data-dependent denominator (the number retrieved) would break that bound.

With patient ids the unit of privacy is the patient: the subsample draws patients, and at most one
record per patient (its nearest) enters the neighbours, so one patient still changes at most one slot.

Nothing here returns how many records were retrieved: that count is a function of the private data
and no mechanism has privatised it.
"""

from __future__ import annotations

import numpy as np

from dpsad_core.errors import ConfigError
from dpsad_core.privacy.randomness import SecretRandomness, SecretStream
from dpsad_core.rdm.planner import RetrievalSettings

__all__ = ["answer_query", "neighbour_mean", "poisson_subsample", "unit_rows"]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to L2 norm 1 (a zero row stays zero).

    Rows are first divided by their largest absolute entry: squaring entries below about 1e-154
    underflows, and the row would then come out longer than 1, breaking the 2/k sensitivity bound.
    """
    array = np.asarray(vectors, dtype=np.float64)
    largest = np.max(np.abs(array), axis=-1, keepdims=True) if array.size else np.zeros(array.shape[:-1] + (1,))
    array = np.divide(array, largest, out=np.zeros_like(array), where=largest > 0)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)


def poisson_subsample(units: np.ndarray, sample_rate: float, stream: SecretStream) -> np.ndarray:
    """Boolean mask over records: each privacy unit is kept independently with probability ``q``.

    ``units`` gives each record's unit index (``ImageDataset.privacy_units()``); all records of a kept
    unit are kept together.
    """
    units = np.asarray(units, dtype=np.int64)
    if units.size == 0:
        return np.zeros(0, dtype=bool)
    kept_units = stream.bernoulli(int(units.max()) + 1, sample_rate)
    return kept_units[units]


def neighbour_mean(embeddings: np.ndarray, query: np.ndarray, *, k: int,
                   units: np.ndarray | None = None) -> np.ndarray:
    """Sum of the ``k`` nearest unit-norm ``embeddings`` to ``query``, divided by ``k`` (the pre-noise mean).

    Parameters
    ----------
    embeddings : ndarray, shape (n, d)
        The candidate records (already restricted to the subsample and, for a class query, the class).
    query : ndarray, shape (d,)
        The query embedding; only its direction matters.
    k : int
        Number of neighbours; fewer candidates are padded with zero vectors (the denominator stays ``k``).
    units : ndarray of int, shape (n,), optional
        Privacy unit of each candidate; at most one record (the nearest) per unit is used.

    Returns
    -------
    ndarray, shape (d,)
        Norm at most 1; changes by at most ``2 / k`` in L2 when one unit is added or removed.
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k!r}", field="k", value=k)
    candidates = unit_rows(np.asarray(embeddings, dtype=np.float64).reshape(-1, np.shape(query)[-1]))
    if candidates.shape[0] == 0:
        return np.zeros(np.shape(query)[-1], dtype=np.float64)
    similarity = candidates @ unit_rows(np.asarray(query, dtype=np.float64))
    # Stable sort, ties broken by position: the ranking of the others never depends on an added record.
    order = np.argsort(-similarity, kind="stable")
    if units is not None:
        ranked_units = np.asarray(units)[order]
        _, first = np.unique(ranked_units, return_index=True)
        order = order[np.sort(first)]
    chosen = order[:k]
    return candidates[chosen].sum(axis=0) / k


def answer_query(*, embeddings: np.ndarray, units: np.ndarray, query: np.ndarray, settings: RetrievalSettings,
                 mix: float, randomness: SecretRandomness, candidates: np.ndarray | None = None) -> np.ndarray:
    """One DP-RDM query: subsample, k nearest, unit-norm mean, Gaussian noise, mix with the query.

    Parameters
    ----------
    embeddings : ndarray, shape (n, d)
        The whole private index (the subsample is drawn over all of it, then restricted).
    units : ndarray of int, shape (n,)
        Privacy unit of every record.
    query : ndarray, shape (d,)
        A public embedding (a class prototype, a public exemplar or a user-supplied public image).
    settings : RetrievalSettings
        ``k``, ``q`` and ``sigma`` (> 0): what the accountant composes.
    mix : float
        ``lambda`` in (0, 1]: the weight of the private noisy mean against the query.
    randomness : SecretRandomness
        The run's secret streams: "sampling" draws the subsample, "noise" the Gaussian noise.
    candidates : ndarray of bool, shape (n,), optional
        Records a query may retrieve (a class query: the records of that class).

    Returns
    -------
    ndarray, shape (d,), float32
        The context vector ``c``; differentially private with respect to the index.
    """
    if not 0.0 < mix <= 1.0:
        raise ConfigError(f"lambda must be in (0, 1] for a private query, got {mix!r}", field="lambda", value=mix,
                          remedy="lambda = 0 ignores the private data: generate from the public model instead")
    query = unit_rows(np.asarray(query, dtype=np.float64))
    subsample = poisson_subsample(units, settings.sample_rate, randomness.stream("sampling"))
    if candidates is not None:
        subsample &= np.asarray(candidates, dtype=bool)
    mean = neighbour_mean(embeddings[subsample], query, k=settings.k, units=np.asarray(units)[subsample])
    noisy = mean + randomness.stream("noise").secure_normal(mean.size, settings.sigma).reshape(mean.shape)
    return (mix * noisy + (1.0 - mix) * query).astype(np.float32)
