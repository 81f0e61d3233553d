"""Pure privacy analysis: (epsilon, delta) of a composition of sampled Gaussian mechanisms.

Two accountants, both from Opacus 1.6.0 (docs/method.md §1.7):

- RDP (Mironov 2017; Mironov, Talwar, Zhang 2019): the Renyi-DP curves of the mechanisms add under
  composition, and the sum is converted to (epsilon, delta) with Balle et al. 2020, Theorem 21
  (``opacus.accountants.analysis.rdp.compute_rdp`` and ``get_privacy_spent``).
- PRV (Gopi, Lee, Wutschitz 2021): the privacy loss random variables are discretised and convolved
  with FFT; the upper end of the numerical error interval is reported, so it is a guarantee.

Both are upper bounds on the true epsilon, so the certified value is the smaller of the two.
Functions here keep no state beyond a memo of per-step RDP values (pure values of their arguments).
Opacus is imported lazily: importing it pulls in torch, which costs seconds.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpsad_core.errors import ConfigError, PrivacyBudgetError
from dpsad_core.privacy.mechanisms import Mechanism, _check_delta, _check_part

__all__ = [
    "ACCOUNTANTS",
    "RDP_ORDERS",
    "AccountantValues",
    "compute_epsilon",
    "epsilon_prv",
    "epsilon_rdp",
]

ACCOUNTANTS = ("rdp", "prv")

# Opacus' RDPAccountant.DEFAULT_ALPHAS (1.1, 1.2, ..., 10.9, 12, ..., 63), extended with sparse large
# orders: the optimal order grows as epsilon shrinks (about log(1/delta) / epsilon), and DP-RDM-style
# budgets below 0.5 would otherwise pin the optimum to 63. Extra orders can only tighten the bound.
_OPACUS_DEFAULT_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
_EXTRA_ORDERS = (64, 72, 80, 96, 112, 128, 160, 192, 256, 384, 512, 768, 1024)
RDP_ORDERS: tuple[float, ...] = tuple(float(order) for order in _OPACUS_DEFAULT_ORDERS + _EXTRA_ORDERS)

# The PRV accountant's grid has 2 L / mesh points (L ~ epsilon at delta / 4000, mesh ~ 0.01 /
# sqrt(steps)); 10 million points take about 10 s and 2-3 GB. Beyond that, refuse rather than swap.
PRV_MAX_GRID_POINTS = 10_000_000


# -- results ---------------------------------------------------------------------------------------
def _json_number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class AccountantValues:
    """Epsilon of one composition under each accountant, at one delta.

    Parameters
    ----------
    rdp : float
        Epsilon from the RDP accountant; ``math.inf`` when not private, ``math.nan`` when not computed.
    prv : float
        Upper bound from Opacus' PRV accountant; ``math.inf`` when not private, ``math.nan`` when not
        computed.
    certified : float
        The smallest computed upper bound: the number the product prints.
    delta : float
        The delta all values refer to.
    rdp_order : float or None
        The RDP order that gave ``rdp``; ``None`` when undefined (nothing spent, not private, not
        computed).
    """

    rdp: float
    prv: float
    certified: float
    delta: float
    rdp_order: float | None

    def __post_init__(self) -> None:
        _check_delta(self.delta)
        for name in ("rdp", "prv", "certified"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:  # NaN compares False: allowed
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}", field=name, value=value)
            object.__setattr__(self, name, float(value))
        if math.isnan(self.certified):
            raise ConfigError("certified must be computed by at least one accountant", field="certified",
                              value=self.certified)

    @property
    def private(self) -> bool:
        """Whether the composition is differentially private (finite certified epsilon)."""
        return math.isfinite(self.certified)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict: infinite or uncomputed values become ``None``; adds ``private``."""
        return {
            "rdp": _json_number(self.rdp),
            "prv": _json_number(self.prv),
            "certified": _json_number(self.certified),
            "delta": self.delta,
            "rdp_order": _json_number(self.rdp_order),
            "private": self.private,
        }


# -- RDP -------------------------------------------------------------------------------------------
def _history(mechanisms: Iterable[Mechanism]) -> list[tuple[float, float, int]]:
    """Opacus-style history ``(noise_multiplier, sample_rate, steps)``, identical mechanisms merged.

    Composition is commutative, so mechanisms with equal ``(sigma, q)`` add their steps whatever
    their order or part; this is exact for RDP (linear in steps) and tighter and faster for PRV.
    """
    merged: dict[tuple[float, float], int] = {}
    for mechanism in mechanisms:
        if not isinstance(mechanism, Mechanism):
            raise ConfigError(f"expected a Mechanism, got {mechanism!r}", field="mechanisms", value=mechanism)
        if mechanism.steps > 0:
            key = (mechanism.noise_multiplier, mechanism.sample_rate)
            merged[key] = merged.get(key, 0) + mechanism.steps
    return [(sigma, rate, steps) for (sigma, rate), steps in merged.items()]


@functools.lru_cache(maxsize=1 << 16)
def _rdp_per_step(noise_multiplier: float, sample_rate: float, order: float) -> float:
    """RDP of one step of the sampled Gaussian mechanism at one order (memoised: it is a loop in Python)."""
    from opacus.accountants.analysis.rdp import compute_rdp

    return float(compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=[order])[0])


def _rdp_at(history: Sequence[tuple[float, float, int]], order: float) -> float:
    # Same summation order as Opacus' RDPAccountant: sum(steps * per-step curve) over the history.
    return sum(steps * _rdp_per_step(sigma, rate, order) for sigma, rate, steps in history)


def _epsilon_rdp_history(history: Sequence[tuple[float, float, int]], delta: float) -> tuple[float, float]:
    from opacus.accountants.analysis.rdp import get_privacy_spent

    if not history:
        return 0.0, math.nan
    orders = np.asarray(RDP_ORDERS)
    # The order-dependent part of the RDP -> (epsilon, delta) conversion (Balle et al. 2020, Thm 21).
    conversion = -(np.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    integer = np.array([order.is_integer() for order in RDP_ORDERS])
    rdp = np.full(len(orders), np.inf)
    for index in np.flatnonzero(integer):
        rdp[index] = _rdp_at(history, orders[index])
    best = float(np.nanmin(rdp[integer] + conversion[integer]))
    # Fractional orders cost far more (a slowly converging series). Renyi divergence is nondecreasing
    # in the order, so rdp(alpha) >= rdp(floor(alpha)): skip an order whose lower bound cannot beat the
    # best epsilon so far. Skipped orders keep rdp = inf, so the minimum equals the full computation's.
    floor_rdp = 0.0
    for i, order in enumerate(RDP_ORDERS):
        if integer[i]:
            floor_rdp = rdp[i] if np.isfinite(rdp[i]) else 0.0
            continue
        if math.isfinite(best) and floor_rdp + conversion[i] > best + 1e-9 * (1.0 + abs(best)):
            continue
        rdp[i] = _rdp_at(history, order)
        best = float(np.nanmin([best, rdp[i] + conversion[i]]))
    if not math.isfinite(best):
        return math.inf, math.nan
    # Opacus warns when the optimum is the first or last order. Our last order (1024) is optimal only
    # for epsilon < ~0.02 and the first (1.1) only for useless budgets, so pad with sentinel orders of
    # infinite RDP rather than touching the process-wide warning filters (not thread-safe).
    padded_orders = np.concatenate([[1.05], orders, [2048.0]])
    padded_rdp = np.concatenate([[np.inf], rdp, [np.inf]])
    epsilon, order = get_privacy_spent(orders=padded_orders, rdp=padded_rdp, delta=delta)
    return float(epsilon), float(order)


def epsilon_rdp(mechanisms: Sequence[Mechanism], *, delta: float) -> tuple[float, float]:
    """Epsilon of the composition under the RDP accountant.

    The RDP curves of all mechanisms are summed order by order (composition) and converted with
    Opacus' ``get_privacy_spent`` over :data:`RDP_ORDERS`.

    Parameters
    ----------
    mechanisms : sequence of Mechanism
        Everything that read the private set; zero-step mechanisms cost nothing.
    delta : float
        Target delta in (0, 1).

    Returns
    -------
    tuple of float
        ``(epsilon, optimal order)``; ``(0.0, nan)`` when nothing was spent.

    Examples
    --------
    >>> from dpsad_core.privacy import Mechanism, epsilon_rdp
    >>> eps, order = epsilon_rdp([Mechanism(part="dpdm", noise_multiplier=1.5, sample_rate=0.04,
    ...                                     steps=2250)], delta=1e-5)
    >>> round(eps, 4), order
    (7.3291, 3.9)
    """
    return _epsilon_rdp_history(_history(mechanisms), _check_delta(delta))


# -- PRV -------------------------------------------------------------------------------------------
def epsilon_prv(mechanisms: Sequence[Mechanism], *, delta: float, eps_error: float = 0.01) -> float:
    """Upper bound on epsilon from the PRV accountant (Gopi et al. 2021, as in Opacus 1.6.0).

    Mirrors ``opacus.accountants.PRVAccountant.get_epsilon`` step for step (same domain, mesh,
    truncation and FFT composition), but checks the grid size before allocating it.

    Parameters
    ----------
    mechanisms : sequence of Mechanism
        Everything that read the private set; zero-step mechanisms cost nothing.
    delta : float
        Target delta in (0, 1).
    eps_error : float
        Allowed error of the epsilon estimate, in (0, 1); the returned value is estimate + error bound.

    Returns
    -------
    float
        The PRV upper bound; ``0.0`` when nothing was spent.

    Raises
    ------
    PrivacyBudgetError
        If the numerical composition is infeasible (grid too large, or delta too small for the
        floating-point precision of the grid).
    """
    delta = _check_delta(delta)
    if isinstance(eps_error, bool) or not isinstance(eps_error, (int, float)) or not 0.0 < eps_error < 1.0:
        raise ConfigError(f"eps_error must be in (0, 1), got {eps_error!r}", field="eps_error", value=eps_error)
    history = _history(mechanisms)
    if not history:
        return 0.0

    from opacus.accountants.analysis.prv import (
        Domain,
        PoissonSubsampledGaussianPRV,
        TruncatedPrivacyRandomVariable,
        compose_heterogeneous,
        compute_safe_domain_size,
        discretize,
    )

    delta_error = delta / 1000  # Opacus' default
    prvs = [PoissonSubsampledGaussianPRV(rate, sigma) for sigma, rate, _ in history]
    counts = [steps for _, _, steps in history]
    with warnings.catch_warnings():
        # A mechanism with very large noise (the noisy count's sigma 100) peaks past Opacus' RDP orders:
        # the domain it sizes is then only wider (safe), so its warning is noise to the user.
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        half_width = compute_safe_domain_size(prvs=prvs, max_self_compositions=counts, eps_error=eps_error,
                                              delta_error=delta_error)
    mesh = eps_error / np.sqrt(sum(counts) * np.log(12 / delta_error) / 2)
    points = 2 * half_width / mesh
    if points > PRV_MAX_GRID_POINTS:
        raise PrivacyBudgetError(
            f"the PRV accountant would need a grid of {points:.3g} points for {sum(counts)} steps "
            f"(epsilon about {half_width - 3:.3g}); the limit is {PRV_MAX_GRID_POINTS:.3g}",
            remedy="use the RDP accountant for this run (accountants=('rdp',))")
    domain = Domain.create_aligned(-half_width, half_width, mesh)
    # Opacus evaluates log(1 - q), which is -inf (correctly) for q = 1; silence numpy's warning about it.
    with np.errstate(divide="ignore"):
        dprvs = [discretize(TruncatedPrivacyRandomVariable(prv, domain.t_min, domain.t_max), domain)
                 for prv in prvs]
    composed = compose_heterogeneous(dprvs=dprvs, num_self_compositions=counts)
    try:
        _, _, upper = composed.compute_epsilon(delta, delta_error, eps_error)
    except (ValueError, RuntimeError) as error:
        raise PrivacyBudgetError(f"the PRV accountant cannot bound epsilon at delta={delta:g}: {error}",
                                 remedy="use a larger delta, or the RDP accountant (accountants=('rdp',))"
                                 ) from error
    return float(upper)


# -- both ------------------------------------------------------------------------------------------
def _check_accountants(accountants: Sequence[str]) -> tuple[str, ...]:
    names = (accountants,) if isinstance(accountants, str) else tuple(accountants)
    unknown = [name for name in names if name not in ACCOUNTANTS]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(f"accountants must be distinct names from {ACCOUNTANTS}, got {accountants!r}",
                          field="accountants", value=accountants, remedy="use ('rdp',), ('prv',) or ('rdp', 'prv')")
    return names


def compute_epsilon(mechanisms: Sequence[Mechanism], *, delta: float,
                    accountants: Sequence[str] = ACCOUNTANTS,
                    nonprivate_parts: Sequence[str] = ()) -> AccountantValues:
    """Epsilon of everything that read the private set, under the named accountants.

    Parameters
    ----------
    mechanisms : sequence of Mechanism
        The DP mechanisms that read the private set.
    delta : float
        Target delta in (0, 1).
    accountants : sequence of str
        Any of ``"rdp"`` and ``"prv"``; the others are reported as ``nan`` (not computed).
    nonprivate_parts : sequence of str
        Parts trained on the private set without protection (docs/method.md §1.6). If any, nothing is
        differentially private and every value is ``math.inf``.

    Returns
    -------
    AccountantValues
        ``certified`` is the smallest computed upper bound; 0.0 when nothing was spent.
    """
    delta = _check_delta(delta)
    names = _check_accountants(accountants)
    nonprivate = tuple(_check_part(part, name="nonprivate_parts") for part in
                       ((nonprivate_parts,) if isinstance(nonprivate_parts, str) else nonprivate_parts))
    history = _history(mechanisms)
    if nonprivate:
        return AccountantValues(rdp=math.inf, prv=math.inf, certified=math.inf, delta=delta, rdp_order=None)
    rdp, order, prv = math.nan, math.nan, math.nan
    if "rdp" in names:
        rdp, order = _epsilon_rdp_history(history, delta)
    if "prv" in names:
        prv = epsilon_prv(list(mechanisms), delta=delta)
    certified = min(value for value in (rdp, prv) if not math.isnan(value))
    return AccountantValues(rdp=rdp, prv=prv, certified=certified, delta=delta,
                            rdp_order=None if math.isnan(order) else order)
