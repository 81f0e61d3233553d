"""The one-run empirical privacy audit's statistics: a lower bound on epsilon from canary guesses.

Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023
(arXiv 2305.08846). ``m`` canaries are each included in the training set independently with
probability 1/2. From the released model the auditor scores every canary, guesses "in" for the
``k`` highest scores and "out" for the ``k`` lowest, and abstains on the rest (``r = 2k`` guesses).
If training is (epsilon, delta)-DP, the number of correct guesses ``W`` satisfies (their Theorem 5.2
and Corollary 5.4 / Appendix D's ``p_value_DP_audit``)::

    P[W >= v] <= beta + 2 m delta alpha,
    beta  = P[Binomial(r, q) >= v],            q = e^eps / (1 + e^eps)
    alpha = max_{i = 1..v} P[v - i <= Binomial(r, q) < v] / i

so ``v`` correct guesses refute every epsilon whose bound is below the test level; the largest such
epsilon is an empirical **lower** bound on the true epsilon. A lower bound near 0 does not prove
privacy: it only says that this attack, with these canaries, found nothing.

Everything here is a pure function of integers and floats (numpy and scipy only, no torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpsad_core.errors import ConfigError

__all__ = ["AuditBound", "GuessOutcome", "audit_from_scores", "default_guess_counts", "epsilon_lower_bound",
           "p_value"]

DEFAULT_CONFIDENCE = 0.95
# Fractions of the canaries guessed on (r / m) tried by default; the test level is split between them.
DEFAULT_GUESS_FRACTIONS = (0.1, 0.2, 0.4, 0.6, 1.0)
_EPSILON_CEILING = 200.0   # far beyond anything r <= 10^6 guesses can refute at level 1e-6
_BISECTION_STEPS = 40


def _check_counts(canaries: int, guesses: int, correct: int) -> None:
    if not (isinstance(canaries, (int, np.integer)) and isinstance(guesses, (int, np.integer))
            and isinstance(correct, (int, np.integer))):
        raise ConfigError("canary, guess and correct counts must be integers", field="counts",
                          value=(canaries, guesses, correct))
    if not 0 <= correct <= guesses <= canaries:
        raise ConfigError(f"need 0 <= correct ({correct}) <= guesses ({guesses}) <= canaries ({canaries})",
                          field="counts", value=(canaries, guesses, correct),
                          remedy="count only non-abstaining guesses, at most one per canary")


def _check_delta(delta: float) -> None:
    if not (isinstance(delta, (int, float)) and 0 <= delta < 1):
        raise ConfigError("delta must be in [0, 1)", field="delta", value=delta, remedy="e.g. --delta 1e-5")


def _check_level(level: float, name: str = "level") -> None:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ConfigError(f"{name} must be strictly between 0 and 1", field=name, value=level)


def p_value(*, canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Upper bound on ``P[W >= correct]`` under (epsilon, delta)-DP (Corollary 5.4, Appendix D).

    Parameters
    ----------
    canaries
        ``m``, the number of canaries, each included independently with probability 1/2.
    guesses
        ``r``, the number of guesses made (abstentions excluded), fixed before looking at the answers.
    correct
        ``v``, how many of the guesses were right.
    epsilon, delta
        The null hypothesis: training is (epsilon, delta)-DP.

    Returns
    -------
    float
        The p-value, in [0, 1].

    Examples
    --------
    >>> p_value(canaries=10, guesses=10, correct=0, epsilon=1.0, delta=0.0)
    1.0
    >>> round(p_value(canaries=10, guesses=10, correct=10, epsilon=0.0, delta=0.0), 6)  # 2^-10
    0.000977
    """
    from scipy.stats import binom

    _check_counts(canaries, guesses, correct)
    _check_delta(delta)
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ConfigError("epsilon must be finite and >= 0", field="epsilon", value=epsilon)
    if correct == 0:
        return 1.0
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of epsilon-DP randomized response
    beta = float(binom.sf(correct - 1, guesses, q))  # P[Binomial(r, q) >= v]
    if delta == 0:
        return min(beta, 1.0)
    # alpha = max_i P[v - i <= Binomial(r, q) <= v - 1] / i: cumulative sums of the pmf from v - 1 down.
    below = binom.pmf(np.arange(correct - 1, -1, -1), guesses, q)
    alpha = float(np.max(np.cumsum(below) / np.arange(1, correct + 1)))
    return min(beta + alpha * delta * 2 * canaries, 1.0)


def epsilon_lower_bound(*, canaries: int, guesses: int, correct: int, delta: float,
                        level: float = 1 - DEFAULT_CONFIDENCE) -> float:
    """The largest epsilon that ``correct`` right guesses out of ``guesses`` refute at ``level``.

    Bisection on epsilon (the p-value grows with epsilon); the low end of the final bracket is
    returned, so the result never overstates what the guesses refute. 0 when nothing is refuted.

    Examples
    --------
    >>> epsilon_lower_bound(canaries=100, guesses=20, correct=10, delta=0.0)
    0.0
    >>> 3.0 < epsilon_lower_bound(canaries=100, guesses=100, correct=100, delta=0.0) < 3.5
    True
    """
    _check_counts(canaries, guesses, correct)
    _check_delta(delta)
    _check_level(level)

    def refuted(epsilon: float) -> bool:
        return p_value(canaries=canaries, guesses=guesses, correct=correct, epsilon=epsilon, delta=delta) < level

    if not refuted(0.0):
        return 0.0
    low, high = 0.0, 1.0
    while refuted(high):
        low, high = high, high * 2
        if high > _EPSILON_CEILING:
            return low
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        if refuted(middle):
            low = middle
        else:
            high = middle
    return low


def default_guess_counts(canaries: int) -> tuple[int, ...]:
    """Guesses per side ``k`` (``r = 2k``) tried by default: ``r / m`` in :data:`DEFAULT_GUESS_FRACTIONS`."""
    if canaries < 2:
        raise ConfigError("the audit needs at least 2 canaries", field="canaries", value=canaries,
                          remedy="use --canaries 100 or more; the bound is weak below a few hundred")
    counts = {max(1, int(round(fraction * canaries / 2))) for fraction in DEFAULT_GUESS_FRACTIONS}
    return tuple(sorted(k for k in counts if 2 * k <= canaries))


@dataclass(frozen=True)
class GuessOutcome:
    """One abstention setting: ``k`` guesses "in" and ``k`` guesses "out", and how many were right."""

    per_side: int
    guesses: int
    correct: int
    epsilon_lower_bound: float  # at the per-try level (Bonferroni-corrected)

    def to_dict(self) -> dict[str, Any]:
        return {"per_side": self.per_side, "guesses": self.guesses, "correct": self.correct,
                "epsilon_lower_bound": self.epsilon_lower_bound}


@dataclass(frozen=True)
class AuditBound:
    """The audit's answer: the largest epsilon refuted over all abstention settings tried.

    ``level_per_try`` is ``(1 - confidence) / len(outcomes)``: each setting is tested at that level,
    so by the union bound the maximum over settings is a valid lower bound at ``confidence``
    (Bonferroni). With one setting fixed up front, no correction is needed and none is applied.
    """

    canaries: int
    included: int
    delta: float
    confidence: float
    level_per_try: float
    outcomes: tuple[GuessOutcome, ...]
    epsilon_lower_bound: float
    best: GuessOutcome

    def to_dict(self) -> dict[str, Any]:
        return {"canaries": self.canaries, "included": self.included, "delta": self.delta,
                "confidence": self.confidence, "level_per_try": self.level_per_try,
                "multiple_testing": "bonferroni" if len(self.outcomes) > 1 else "none (one setting fixed)",
                "epsilon_lower_bound": self.epsilon_lower_bound, "best": self.best.to_dict(),
                "outcomes": [outcome.to_dict() for outcome in self.outcomes]}


def audit_from_scores(scores: Sequence[float] | np.ndarray, included: Sequence[bool] | np.ndarray, *,
                      delta: float, confidence: float = DEFAULT_CONFIDENCE,
                      guess_counts: Sequence[int] | None = None, seed: int = 0) -> AuditBound:
    """Guess membership from scores and return the empirical lower bound on epsilon.

    Parameters
    ----------
    scores
        One membership score per canary, computed from the released model only: higher means
        "more likely included" (e.g. minus the canary's denoising loss).
    included
        Whether each canary was in the training set (drawn independently with probability 1/2).
    delta
        The delta of the guarantee being tested (the run's delta).
    confidence
        Probability that the bound is valid (0.95: the bound exceeds the true epsilon in at most
        5% of audits).
    guess_counts
        Values of ``k`` (guesses per side) to try; default :func:`default_guess_counts`. Must be
        fixed before the scores are seen; the test level is split equally between them.
    seed
        Breaks ties between equal scores at random (independent of membership, so it is fair).
    """
    scores = np.asarray(scores, dtype=np.float64)
    included = np.asarray(included, dtype=bool)
    if scores.ndim != 1 or scores.shape != included.shape:
        raise ConfigError(f"need one score per canary: {scores.shape} scores, {included.shape} inclusion flags",
                          field="scores", value=scores.shape)
    if not np.all(np.isfinite(scores)):
        raise ConfigError("membership scores must be finite", field="scores",
                          remedy="check the model: a NaN loss means a broken checkpoint")
    _check_level(confidence, "confidence")
    _check_delta(delta)
    canaries = int(scores.size)
    counts = tuple(default_guess_counts(canaries) if guess_counts is None else (int(k) for k in guess_counts))
    if not counts or any(k < 1 or 2 * k > canaries for k in counts):
        raise ConfigError(f"guesses per side must each be between 1 and m / 2 = {canaries // 2}", field="guesses",
                          value=counts)
    level = (1 - confidence) / len(counts)
    # Descending score; random tie-break keys come last in lexsort's priority.
    tie_break = np.random.default_rng(seed).random(canaries)
    order = np.lexsort((tie_break, -scores))
    outcomes = []
    for k in counts:
        guessed_in, guessed_out = order[:k], order[canaries - k:]
        correct = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
        bound = epsilon_lower_bound(canaries=canaries, guesses=2 * k, correct=correct, delta=delta, level=level)
        outcomes.append(GuessOutcome(per_side=k, guesses=2 * k, correct=correct, epsilon_lower_bound=bound))
    best = max(outcomes, key=lambda outcome: outcome.epsilon_lower_bound)
    return AuditBound(canaries=canaries, included=int(included.sum()), delta=float(delta),
                      confidence=float(confidence), level_per_try=level, outcomes=tuple(outcomes),
                      epsilon_lower_bound=best.epsilon_lower_bound, best=best)
