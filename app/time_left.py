"""Time left on the Training screen: the engine's estimate, made steady enough to read.

The engine prices the steps left at the mean of the last 20 step times of the phase's kind
(``eta_seconds`` of each ``StepCompleted``). A mean is pulled far up by the first step of a phase,
which pays one-time costs (allocations, tracing) and can take ten times a normal step: the raw
figure then fell from 13 h to 2 h 40 within a few steps. Here, in three stages:

1. the engine's figure is rescaled from the mean to the median of the same recent step times
   (the work left, ``eta / mean``, is kept; only the price of a step changes), which drops those
   slow first steps once there are three: before ``SETTLE_STEPS`` steps of a kind, its figures are
   not used (nothing is shown at the start of a run; later, the countdown goes on meanwhile);
2. each estimate is turned into the moment the run should end (time trained so far + time left),
   and the median of the last ``END_WINDOW`` of those moments is taken, so a single odd step
   cannot move it;
3. that moment is followed by an exponential average (``SMOOTHING``), so a real change (the
   student's steps costing more than assumed) comes in over a few steps instead of at once.

Time is counted in the steps' own seconds, as the engine's figure is. No Qt here.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

RECENT_STEPS = 20     # step times kept per kind of phase: the engine's window
END_WINDOW = 5        # end moments whose median is followed
SMOOTHING = 0.3       # share of the way to the newest median end moment taken at each step
SETTLE_STEPS = 3      # steps of a kind before its figures count: before, one-time costs dominate


class TimeLeft:
    """Feed it every ``StepCompleted`` (``update``); ``seconds`` is the time left to show (None for the first steps)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, phase_kinds: dict[str, str] | None = None) -> None:
        """A new run (or a resumed one: the engine starts its own step-time record afresh too)."""
        self._kind_of = dict(phase_kinds or {})
        self._recent: dict[str, deque[float]] = {}
        self._ends: deque[float] = deque(maxlen=END_WINDOW)
        self._elapsed = 0.0
        self._end: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self._end is None else max(self._end - self._elapsed, 0.0)

    def update(self, *, phase: str, seconds: float, eta_seconds: float) -> float | None:
        """Take one step's time and the engine's time left after it; return the time left to show."""
        if not math.isfinite(seconds) or seconds < 0:
            return self.seconds
        self._elapsed += seconds
        recent = self._recent.setdefault(self._kind_of.get(phase, phase), deque(maxlen=RECENT_STEPS))
        recent.append(seconds)
        if len(recent) < SETTLE_STEPS or not math.isfinite(eta_seconds) or eta_seconds < 0:
            return self.seconds  # the first steps of a kind are mostly one-time costs: the countdown goes on
        mean = statistics.fmean(recent)
        left = eta_seconds * statistics.median(recent) / mean if mean > 0 else eta_seconds
        self._ends.append(self._elapsed + left)
        end = statistics.median(self._ends)
        self._end = end if self._end is None else self._end + SMOOTHING * (end - self._end)
        return self.seconds
