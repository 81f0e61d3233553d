"""DP-RDM privacy planning: what a number of retrieval queries costs, and how many a budget buys.

Each query Poisson-subsamples the private index with rate ``q``, averages the ``k`` nearest unit-norm
embeddings and adds ``N(0, sigma^2 I)`` (docs/method.md §2; Lebensold et al. 2024, arXiv 2403.14421). The
mean has L2 sensitivity ``2 / k``, so one query is a sampled Gaussian mechanism with noise multiplier
``z = sigma * k / 2`` and rate ``q`` (:func:`dpsad_core.privacy.rdm_query_mechanism`), and ``M``
queries compose under RDP. The authors' notebook reports epsilon from the RDP accountant at integer
orders; :data:`dpsad_core.privacy.RDP_ORDERS` holds every integer order 2..63, so the worked example
(N = 10,000,000, k = 18, q = 0.01, sigma = 0.2, M = 1,000, delta = 1e-7 -> epsilon 0.997 at order 25)
comes out the same here.

The size of the private set ``N`` does not enter the accountant: it decides whether a query is
*useful*. The expected subsample holds ``q * N`` records, and with fewer than ``k`` of them (of the
queried class) the mean is padded with zeros (see :mod:`dpsad_core.rdm.mechanism`), so the planner
warns when ``q * N`` is small next to ``k``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from dpsad_core.errors import ConfigError, PrivacyBudgetError
from dpsad_core.privacy.analysis import epsilon_rdp
from dpsad_core.privacy.mechanisms import (
    Mechanism,
    _check_count,
    _check_delta,
    _check_positive,
    _check_sample_rate,
    rdm_query_mechanism,
)

__all__ = ["RdmPlan", "RetrievalSettings", "plan_queries", "queries_for_budget", "sigma_for_budget"]

# Bisection for the number of queries stops here: 10^9 queries is far past any budget worth planning.
_MAX_QUERIES = 1_000_000_000


@dataclass(frozen=True)
class RetrievalSettings:
    """The privacy-relevant settings of DP-RDM's query mechanism.

    Parameters
    ----------
    k : int
        Neighbours averaged per query, >= 1.
    sample_rate : float
        Poisson subsampling rate ``q`` of the private index per query, in (0, 1].
    sigma : float
        Standard deviation of the Gaussian noise added to the mean of unit-norm embeddings, > 0.
    """

    k: int
    sample_rate: float
    sigma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _check_count("k", self.k, minimum=1))
        object.__setattr__(self, "sample_rate", _check_sample_rate(self.sample_rate, name="q"))
        object.__setattr__(self, "sigma", _check_positive(
            "sigma", self.sigma, remedy="DP-RDM needs noise on the retrieved mean: use sigma > 0 "
                                        "(sigma = 0 is only for a non-private comparison in the benchmark)"))

    @property
    def noise_multiplier(self) -> float:
        """``z = sigma * k / 2``: the noise std divided by the mean's sensitivity ``2 / k``."""
        return self.sigma * self.k / 2.0

    def mechanism(self, queries: int) -> Mechanism:
        """The accountant's view of ``queries`` answered queries."""
        return rdm_query_mechanism(k=self.k, sigma=self.sigma, sample_rate=self.sample_rate, queries=queries)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "noise_multiplier": self.noise_multiplier}


@dataclass(frozen=True)
class RdmPlan:
    """What ``queries`` DP-RDM queries cost on a private index of ``num_records`` records."""

    num_records: int
    settings: RetrievalSettings
    queries: int
    delta: float
    epsilon: float            # RDP epsilon of the composition (an upper bound)
    rdp_order: float | None
    epsilon_per_query: float  # RDP epsilon of one query alone, for orientation
    expected_subsample: float
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.num_records, "k": self.settings.k, "q": self.settings.sample_rate,
            "sigma": self.settings.sigma, "noise_multiplier": self.settings.noise_multiplier,
            "queries": self.queries, "delta": self.delta, "epsilon": self.epsilon, "rdp_order": self.rdp_order,
            "epsilon_per_query": self.epsilon_per_query, "expected_subsample": self.expected_subsample,
            "accountant": "rdp", "warnings": list(self.warnings),
        }


def _warnings(num_records: int, settings: RetrievalSettings, delta: float) -> tuple[str, ...]:
    notes = []
    expected = num_records * settings.sample_rate
    if expected < settings.k:
        notes.append(f"a query's subsample holds about {expected:.3g} records (q * N), fewer than k = {settings.k}: "
                     "the mean is padded with zeros and carries little signal; raise q or lower k")
    if delta >= 1.0 / num_records:
        notes.append(f"delta = {delta:g} is not below 1/N = {1.0 / num_records:.3g}: choose a smaller delta")
    return tuple(notes)


def _epsilon(settings: RetrievalSettings, queries: int, delta: float) -> tuple[float, float | None]:
    if queries == 0:
        return 0.0, None
    epsilon, order = epsilon_rdp([settings.mechanism(queries)], delta=delta)
    return epsilon, (None if math.isnan(order) else order)


def plan_queries(*, num_records: int, settings: RetrievalSettings, queries: int, delta: float) -> RdmPlan:
    """The RDP epsilon that ``queries`` queries cost.

    Examples
    --------
    >>> plan = plan_queries(num_records=10_000_000, settings=RetrievalSettings(k=18, sample_rate=0.01, sigma=0.2),
    ...                     queries=1000, delta=1e-7)
    >>> round(plan.epsilon, 3), plan.rdp_order
    (0.997, 25.0)
    """
    records = _check_count("n", num_records, minimum=1)
    count = _check_count("queries", queries)
    delta = _check_delta(delta)
    epsilon, order = _epsilon(settings, count, delta)
    one, _ = _epsilon(settings, 1, delta)
    return RdmPlan(num_records=records, settings=settings, queries=count, delta=delta, epsilon=epsilon,
                   rdp_order=order, epsilon_per_query=one, expected_subsample=records * settings.sample_rate,
                   warnings=_warnings(records, settings, delta))


def queries_for_budget(*, num_records: int, settings: RetrievalSettings, epsilon: float, delta: float) -> RdmPlan:
    """The most queries whose composition stays within ``epsilon`` (never more).

    Epsilon grows with the number of queries, so an exponential search followed by a bisection finds
    the largest ``M`` with ``epsilon(M) <= epsilon``; the returned plan carries ``epsilon(M)`` itself.

    Raises
    ------
    PrivacyBudgetError
        If not even one query fits in the budget.
    """
    budget = _check_positive("epsilon", epsilon)
    delta = _check_delta(delta)
    if _epsilon(settings, 1, delta)[0] > budget:
        one = _epsilon(settings, 1, delta)[0]
        raise PrivacyBudgetError(
            f"one query costs epsilon {one:.4g} at delta {delta:g}, more than the budget {budget:g}",
            remedy="raise sigma, k or the budget, or lower q")
    low, high = 1, 2
    while high < _MAX_QUERIES and _epsilon(settings, high, delta)[0] <= budget:
        low, high = high, high * 2
    if high >= _MAX_QUERIES and _epsilon(settings, _MAX_QUERIES, delta)[0] <= budget:
        low = _MAX_QUERIES
    else:
        while high - low > 1:  # invariant: epsilon(low) <= budget < epsilon(high)
            middle = (low + high) // 2
            if _epsilon(settings, middle, delta)[0] <= budget:
                low = middle
            else:
                high = middle
    return plan_queries(num_records=num_records, settings=settings, queries=low, delta=delta)


def check_positive_queries(queries: int) -> int:
    """``queries`` as an int >= 1, else a ConfigError naming the value."""
    if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
        raise ConfigError(f"queries must be a whole number >= 1, got {queries!r}", field="queries", value=queries)
    return queries


def sigma_for_budget(*, k: int, sample_rate: float, queries: int, epsilon: float, delta: float,
                     prior: tuple[Mechanism, ...] = ()) -> float:
    """The smallest noise std ``sigma`` for which ``queries`` queries stay within ``epsilon`` (RDP).

    ``prior``: mechanisms the run spends before its queries (its noisy count), composed with them.

    Calibrates the noise multiplier ``z`` with :func:`dpsad_core.privacy.calibrate_noise_multiplier`
    (which never overshoots the target) and returns ``sigma = 2 z / k``.
    """
    from dpsad_core.privacy.calibration import calibrate_noise_multiplier

    neighbours = _check_count("k", k, minimum=1)
    z = calibrate_noise_multiplier(target_epsilon=_check_positive("epsilon", epsilon), delta=_check_delta(delta),
                                   sample_rate=_check_sample_rate(sample_rate, name="q"),
                                   steps=check_positive_queries(queries), sigma_min=0.05,
                                   prior=prior)
    return 2.0 * z / neighbours
