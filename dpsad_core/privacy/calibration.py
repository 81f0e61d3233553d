"""Calibration: the noise multiplier (or the number of steps) that a privacy budget affords.

Both searches rely on epsilon growing as sigma falls and as steps grow, and both only ever return a
value whose epsilon was evaluated and found within the target: a calibrated run never overshoots
(METHOD.md 1.7). Unlike Opacus' ``get_noise_multiplier``, whose tolerance is on epsilon, the
tolerance here is relative on sigma, and earlier mechanisms (``prior``, e.g. the teacher) are
composed with the one being calibrated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from dpsad_core.errors import ConfigError, PrivacyBudgetError
from dpsad_core.privacy.analysis import epsilon_prv, epsilon_rdp
from dpsad_core.privacy.mechanisms import (Mechanism, _check_count, _check_delta, _check_noise_multiplier,
                                           _check_positive, _check_sample_rate)

__all__ = ["calibrate_noise_multiplier", "steps_for_budget"]

_CALIBRATED_PART = "calibrated"
MAX_STEPS = 10**9
_REMEDY = "raise the target epsilon, train fewer steps, or lower the sample rate (smaller expected batches)"


def _check_accountant(accountant: object) -> str:
    if accountant not in ("rdp", "prv"):
        raise ConfigError(f"accountant must be 'rdp' or 'prv', got {accountant!r}", field="accountant",
                          value=accountant)
    return str(accountant)


def _check_prior(prior: Sequence[Mechanism]) -> tuple[Mechanism, ...]:
    mechanisms = tuple(prior)
    for mechanism in mechanisms:
        if not isinstance(mechanism, Mechanism):
            raise ConfigError(f"prior must hold Mechanism objects, got {mechanism!r}", field="prior",
                              value=mechanism)
    return mechanisms


def _epsilon_function(accountant: str, delta: float) -> Callable[[Sequence[Mechanism]], float]:
    if accountant == "rdp":
        return lambda mechanisms: epsilon_rdp(mechanisms, delta=delta)[0]
    return lambda mechanisms: epsilon_prv(mechanisms, delta=delta)


def _search_sigma(ok: Callable[[float], bool], *, start: float, factor: float, sigma_min: float,
                  sigma_max: float, tolerance: float) -> float | None:
    """Smallest sigma in [sigma_min, sigma_max] with ``ok(sigma)``, to relative ``tolerance``; None if none.

    Brackets geometrically from ``start`` (so a good start saves evaluations), then bisects in log space
    keeping the invariant ``not ok(low) and ok(high)``.
    """
    if ok(start):
        high = start
        while True:
            low = max(high / factor, sigma_min)
            if low == high:  # high is sigma_min
                return high
            if not ok(low):
                break
            high = low
    else:
        low = start
        while True:
            high = min(low * factor, sigma_max)
            if high == low:  # even sigma_max fails
                return None
            if ok(high):
                break
            low = high
    while high > low * (1.0 + tolerance):
        middle = math.sqrt(low * high)
        if ok(middle):
            high = middle
        else:
            low = middle
    return high


def calibrate_noise_multiplier(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                               prior: Sequence[Mechanism] = (), accountant: str = "rdp",
                               sigma_min: float = 0.1, sigma_max: float = 1000.0, tolerance: float = 0.01) -> float:
    """Smallest noise multiplier that keeps ``prior`` + this mechanism within ``target_epsilon``.

    Parameters
    ----------
    target_epsilon : float
        The budget for everything composed, > 0.
    delta : float
        Target delta in (0, 1).
    sample_rate : float
        Poisson sampling rate of the mechanism being calibrated, in (0, 1].
    steps : int
        How many times it will run, >= 0.
    prior : sequence of Mechanism
        Mechanisms that already read (or will read) the private set, e.g. the teacher's DP-SGD run.
    accountant : {"rdp", "prv"}
        Which upper bound must stay within the target. ``"prv"`` evaluations take about a second each;
        the search starts from the RDP answer, which is usually close.
    sigma_min, sigma_max : float
        Search interval; the result is ``sigma_min`` when even that meets the target.
    tolerance : float
        Relative precision on sigma, in (0, 1): some ``sigma / (1 + tolerance)`` or less exceeds the target.

    Returns
    -------
    float
        A sigma whose composed epsilon is <= ``target_epsilon`` (checked before returning).

    Raises
    ------
    PrivacyBudgetError
        If the prior alone spends the budget or even ``sigma_max`` cannot meet it.
    ConfigError
        If an argument is out of range.
    """
    target = _check_positive("target_epsilon", target_epsilon,
                             remedy="epsilon must be > 0; a smaller epsilon means a stronger guarantee")
    delta = _check_delta(delta)
    rate = _check_sample_rate(sample_rate)
    count = _check_count("steps", steps)
    mechanisms_before = _check_prior(prior)
    name = _check_accountant(accountant)
    low_bound = _check_positive("sigma_min", sigma_min)
    high_bound = _check_positive("sigma_max", sigma_max)
    if high_bound <= low_bound:
        raise ConfigError(f"sigma_max ({sigma_max!r}) must exceed sigma_min ({sigma_min!r})", field="sigma_max",
                          value=sigma_max)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0.0 < tolerance < 1.0:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance!r}", field="tolerance", value=tolerance)

    epsilon_of = _epsilon_function(name, delta)
    spent_before = epsilon_of(mechanisms_before)
    if spent_before > target:
        raise PrivacyBudgetError(f"the earlier mechanisms already spend epsilon {spent_before:.4g} ({name}), "
                                 f"more than the target {target:g}", remedy=_REMEDY)
    if count == 0:
        return low_bound

    evaluated: dict[float, float] = {}

    def epsilon_at(sigma: float) -> float:
        if sigma not in evaluated:
            mechanism = Mechanism(part=_CALIBRATED_PART, noise_multiplier=sigma, sample_rate=rate, steps=count)
            evaluated[sigma] = epsilon_of((*mechanisms_before, mechanism))
        return evaluated[sigma]

    def ok(sigma: float) -> bool:
        return epsilon_at(sigma) <= target

    bounds = dict(sigma_min=low_bound, sigma_max=high_bound, tolerance=tolerance)
    if name == "rdp":
        start = min(max(1.0, low_bound), high_bound)
        sigma = _search_sigma(ok, start=start, factor=4.0, **bounds)
    else:
        # The RDP answer is a good start: PRV is usually tighter, and rarely looser by more than a few %.
        try:
            start = calibrate_noise_multiplier(target_epsilon=target, delta=delta, sample_rate=rate, steps=count,
                                               prior=mechanisms_before, accountant="rdp", **bounds)
        except PrivacyBudgetError:
            start = high_bound
        sigma = _search_sigma(ok, start=start, factor=1.15, **bounds)
    if sigma is None:
        raise PrivacyBudgetError(
            f"even noise multiplier {high_bound:g} gives epsilon {epsilon_at(high_bound):.4g} ({name}) > target "
            f"{target:g} for {count} steps at sample rate {rate:g} (earlier mechanisms spend {spent_before:.4g})",
            remedy=_REMEDY)
    # Never overshoot. RDP is recomputed (cheap, memoised per step); a PRV evaluation is deterministic
    # and costs seconds, so its recorded value for this exact sigma is the check.
    final = epsilon_at(sigma) if name == "prv" else epsilon_of(
        (*mechanisms_before, Mechanism(part=_CALIBRATED_PART, noise_multiplier=sigma, sample_rate=rate, steps=count)))
    if not final <= target:
        raise PrivacyBudgetError(f"calibration failed: sigma {sigma:g} gives epsilon {final:.6g} > {target:g}",
                                 remedy="report this as a bug")
    return sigma


def steps_for_budget(*, target_epsilon: float, delta: float, sample_rate: float, noise_multiplier: float,
                     prior: Sequence[Mechanism] = (), accountant: str = "rdp") -> int:
    """Largest number of steps of one mechanism that keeps ``prior`` + it within ``target_epsilon``.

    Parameters
    ----------
    target_epsilon : float
        The budget for everything composed, > 0.
    delta : float
        Target delta in (0, 1).
    sample_rate : float
        Poisson sampling rate, in (0, 1].
    noise_multiplier : float
        The mechanism's noise multiplier, > 0.
    prior : sequence of Mechanism
        Mechanisms composed before it.
    accountant : {"rdp", "prv"}
        Which upper bound must stay within the target. For ``"prv"``, a step count whose PRV grid would
        be too large to evaluate counts as over budget.

    Returns
    -------
    int
        The number of steps (0 when even one step exceeds the target), at most ``MAX_STEPS`` (10**9).

    Raises
    ------
    PrivacyBudgetError
        If the prior alone already exceeds the target.
    """
    target = _check_positive("target_epsilon", target_epsilon)
    delta = _check_delta(delta)
    rate = _check_sample_rate(sample_rate)
    sigma = _check_noise_multiplier(noise_multiplier)
    mechanisms_before = _check_prior(prior)
    name = _check_accountant(accountant)
    epsilon_of = _epsilon_function(name, delta)

    def ok(steps: int) -> bool:
        mechanism = Mechanism(part=_CALIBRATED_PART, noise_multiplier=sigma, sample_rate=rate, steps=steps)
        return epsilon_of((*mechanisms_before, mechanism)) <= target

    if not ok(0):
        raise PrivacyBudgetError(f"the earlier mechanisms already spend more than the target epsilon {target:g} "
                                 f"({name})", remedy=_REMEDY)
    check = ok
    if name == "rdp":
        low, high = 0, 1
        while ok(high):
            low = high
            if high >= MAX_STEPS:
                return MAX_STEPS
            high = min(2 * high, MAX_STEPS)
    else:
        try:
            start = max(1, steps_for_budget(target_epsilon=target, delta=delta, sample_rate=rate,
                                            noise_multiplier=sigma, prior=mechanisms_before, accountant="rdp"))
        except PrivacyBudgetError:
            start = 1

        def ok_beyond(steps: int) -> bool:
            # A step count whose PRV grid is too large to evaluate is not certified: over budget.
            try:
                return ok(steps)
            except PrivacyBudgetError:
                return False

        check = ok_beyond
        if ok(start):
            low, high = start, start + max(1, start // 4)
            while ok_beyond(high):
                low = high
                if high >= MAX_STEPS:
                    return MAX_STEPS
                high = min(high + max(1, high // 4), MAX_STEPS)
        else:
            low, high = start - max(1, start // 4), start
            while low > 0 and not ok_beyond(low):
                high = low
                low = max(0, low - max(1, low // 4))
    # Invariant: ok(low) and not ok(high).
    while high - low > 1:
        middle = (low + high) // 2
        if check(middle):
            low = middle
        else:
            high = middle
    return low
