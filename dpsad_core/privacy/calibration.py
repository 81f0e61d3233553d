"""Calibration: the noise multiplier (or the number of steps) that a privacy budget affords.

Both searches rely on epsilon growing as sigma falls and as steps grow, and both only ever return a
value whose epsilon was evaluated and found within the target: a calibrated run never overshoots
(docs/method.md §1.7). Unlike Opacus' ``get_noise_multiplier``, whose tolerance is on epsilon, the
tolerance here is relative on sigma, and earlier mechanisms (``prior``, e.g. the teacher) are
composed with the one being calibrated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from dpsad_core.errors import ConfigError, PrivacyBudgetError
from dpsad_core.privacy.analysis import epsilon_prv, epsilon_rdp
from dpsad_core.privacy.mechanisms import (
    Mechanism,
    _check_count,
    _check_delta,
    _check_noise_multiplier,
    _check_positive,
    _check_sample_rate,
)

__all__ = ["calibrate_noise_multiplier", "steps_for_budget"]

_CALIBRATED_PART = "calibrated"
MAX_STEPS = 10**9
# PRV evaluations take seconds at large step counts and wobble slightly with the count (the grid's
# mesh depends on it), so steps_for_budget(accountant="prv") stops within 0.1% of the boundary.
PRV_STEPS_TOLERANCE = 1e-3
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


def _refine(epsilon_at: Callable[[float], float], *, target: float, good: float, bad: float,
            resolution: float, integer: bool) -> float:
    """Close the bracket between ``good`` (epsilon <= target) and ``bad`` (epsilon > target); return ``good``.

    Stops when ``|log(bad / good)| <= resolution`` (or, for integers, when they are adjacent). Each round
    interpolates log epsilon linearly in log x between the two ends (nearly linear for the sampled
    Gaussian mechanism) and probes just either side of the estimate, so an accurate estimate closes
    the bracket in two evaluations; a round that does not halve the bracket adds a bisection step, so
    the search always ends. Only the monotonicity of epsilon is relied on for correctness.
    """

    def closed() -> bool:
        if integer and abs(bad - good) <= 1:
            return True
        return good > 0 and abs(math.log(bad / good)) <= resolution

    def snap(x: float) -> float:
        return float(round(x)) if integer else x

    def probe(x: float) -> None:
        nonlocal good, bad
        x = snap(x)
        if min(good, bad) < x < max(good, bad) and not closed():
            if epsilon_at(x) <= target:
                good = x
            else:
                bad = x

    while not closed():
        width = abs(bad - good)
        eps_good, eps_bad = epsilon_at(good), epsilon_at(bad)
        if good > 0 and 0 < eps_good < eps_bad < math.inf:
            fraction = (math.log(target) - math.log(eps_good)) / (math.log(eps_bad) - math.log(eps_good))
            center = math.log(good) + fraction * (math.log(bad) - math.log(good))
            offset = math.copysign(0.45 * resolution, bad - good)
            probe(math.exp(center + offset))  # expected to exceed the target
            probe(math.exp(center - offset))  # expected to meet it
        if not closed() and abs(bad - good) > width / 2:
            middle = math.sqrt(good * bad) if good > 0 else (good + bad) / 2
            if integer and not min(good, bad) < round(middle) < max(good, bad):
                middle = (good + bad) / 2
            probe(middle)
    return good


def _bracket(epsilon_at: Callable[[float], float], *, target: float, start: float, lowest: float,
             highest: float, increasing: bool, power: float, integer: bool) -> tuple[float, float] | None:
    """Find ``(good, bad)`` with epsilon(good) <= target < epsilon(bad), walking from ``start``.

    ``increasing`` says whether epsilon grows with x. Each move aims at the boundary predicted by
    ``epsilon ~ x**power`` (-1 for sigma, 0.5 for steps), overshooting by 5%. Returns ``(end, end)`` when
    the walk reaches an end of ``[lowest, highest]`` that is good, and None when that end is bad.
    """
    x, eps_x = start, epsilon_at(start)
    while True:
        x_is_good = eps_x <= target
        move_up = x_is_good == increasing  # toward the other side of the boundary
        if 0 < eps_x < math.inf:
            guess = x * (target / eps_x) ** (1.0 / power)
        else:
            guess = x * 4.0 if move_up else x / 4.0
        guess = max(guess * 1.05, x * 1.05) if move_up else min(guess / 1.05, x / 1.05)
        if integer:
            guess = float(max(math.ceil(guess), x + 1) if move_up else min(math.floor(guess), x - 1))
        guess = min(max(guess, lowest), highest)
        if guess == x:  # an end of the range, on the same side as every point walked so far
            return (x, x) if x_is_good else None
        eps_guess = epsilon_at(guess)
        if (eps_guess <= target) != x_is_good:
            return (x, guess) if x_is_good else (guess, x)
        x, eps_x = guess, eps_guess


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
        Relative precision on sigma, in (0, 1): ``sigma / (1 + tolerance)`` exceeds the target (unless the
        result is ``sigma_min``).

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

    def mechanism(sigma: float) -> Mechanism:
        return Mechanism(part=_CALIBRATED_PART, noise_multiplier=sigma, sample_rate=rate, steps=count)

    evaluated: dict[float, float] = {}

    def epsilon_at(sigma: float) -> float:
        if sigma not in evaluated:
            evaluated[sigma] = epsilon_of((*mechanisms_before, mechanism(sigma)))
        return evaluated[sigma]

    bounds = dict(sigma_min=low_bound, sigma_max=high_bound, tolerance=tolerance)
    start = min(max(1.0, low_bound), high_bound)
    if name == "prv":
        # Start from the RDP answer: PRV is usually a little tighter, so the boundary is close by.
        try:
            start = calibrate_noise_multiplier(target_epsilon=target, delta=delta, sample_rate=rate, steps=count,
                                               prior=mechanisms_before, accountant="rdp", **bounds)
        except PrivacyBudgetError:
            start = high_bound
    bracket = _bracket(epsilon_at, target=target, start=start, lowest=low_bound, highest=high_bound,
                       increasing=False, power=-1.0, integer=False)
    if bracket is None:
        raise PrivacyBudgetError(
            f"even noise multiplier {high_bound:g} gives epsilon {epsilon_at(high_bound):.4g} ({name}) > target "
            f"{target:g} for {count} steps at sample rate {rate:g} (earlier mechanisms spend {spent_before:.4g})",
            remedy=_REMEDY)
    good, bad = bracket
    sigma = good if good == bad else _refine(epsilon_at, target=target, good=good, bad=bad,
                                             resolution=math.log1p(tolerance), integer=False)
    # Never overshoot. RDP is recomputed from scratch (cheap: memoised per step); a PRV evaluation is
    # deterministic and costs seconds, so the value recorded for this exact sigma is the check.
    final = evaluated[sigma] if name == "prv" else epsilon_of((*mechanisms_before, mechanism(sigma)))
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
        Which upper bound must stay within the target. ``"rdp"`` gives the exact largest count.
        ``"prv"`` gives a count within ``PRV_STEPS_TOLERANCE`` (0.1%) below the largest, to save
        evaluations that take seconds each; a count whose PRV grid would be too large to evaluate
        counts as over budget.

    Returns
    -------
    int
        The number of steps within the target (0 when even one step exceeds it), at most ``MAX_STEPS``
        (10**9).

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

    evaluated: dict[int, float] = {}

    def epsilon_at(steps: float) -> float:
        count = int(steps)
        if count not in evaluated:
            mechanism = Mechanism(part=_CALIBRATED_PART, noise_multiplier=sigma, sample_rate=rate, steps=count)
            evaluated[count] = epsilon_of((*mechanisms_before, mechanism))
        return evaluated[count]

    if epsilon_at(0) > target:
        raise PrivacyBudgetError(f"the earlier mechanisms already spend epsilon {epsilon_at(0):.4g} ({name}), "
                                 f"more than the target {target:g}", remedy=_REMEDY)
    if name == "rdp":
        # RDP evaluations are cheap (per-step values are memoised): find the exact answer.
        if epsilon_at(MAX_STEPS) <= target:
            return MAX_STEPS
        low, high = 0, 1
        while epsilon_at(high) <= target:
            low, high = high, 2 * high
        while high - low > 1:
            middle = (low + high) // 2
            if epsilon_at(middle) <= target:
                low = middle
            else:
                high = middle
        return low

    try:
        start = max(1, steps_for_budget(target_epsilon=target, delta=delta, sample_rate=rate,
                                        noise_multiplier=sigma, prior=mechanisms_before, accountant="rdp"))
    except PrivacyBudgetError:  # the prior is within the target under PRV but not under RDP
        start = 1
    epsilon_at(start)  # first, so that errors here (delta too small, grid too large) reach the caller

    def epsilon_prv_or_inf(steps: float) -> float:
        # Above the RDP answer, a count whose PRV grid is too large to evaluate is not certified.
        try:
            return epsilon_at(steps)
        except PrivacyBudgetError:
            if steps <= start:
                raise
            return math.inf

    bracket = _bracket(epsilon_prv_or_inf, target=target, start=float(start), lowest=0.0, highest=float(MAX_STEPS),
                       increasing=True, power=0.5, integer=True)
    if bracket is None:  # unreachable: 0 steps is within the target (checked above)
        raise PrivacyBudgetError("no step count fits the budget", remedy=_REMEDY)
    good, bad = bracket
    if good == bad:
        return int(good)
    return int(_refine(epsilon_prv_or_inf, target=target, good=good, bad=bad,
                       resolution=math.log1p(PRV_STEPS_TOLERANCE), integer=True))


def default_delta(private_units: int) -> float:
    """The delta a run gets when none is given: well below 1/N, min(1e-5, 0.1/N)."""
    return min(1e-5, 0.1 / max(private_units, 1))
