"""What the privacy ledger holds (one entry per run) and how a dataset's total composes.

Composition across runs (:func:`compose_entries`): every mechanism of every run on one dataset read
the same records, so they all compose: the RDP curves add and the PRV distributions convolve, exactly
as within one run (:func:`~dpsad_core.privacy.analysis.compute_epsilon` on the concatenated lists).
This is tighter than summing the runs' epsilons. A run that is not differentially private makes the
dataset's total infinite.

The delta of a total is the **smallest** delta of the runs composed. The composed RDP curve (or PRV
distribution) gives a valid (epsilon, delta) pair at every delta, so any choice is sound; the
smallest one (a) never states the total at a weaker delta than any run promised, and (b) keeps the
total monotone: adding a run only adds to the curve and can only lower the delta, so the total never
goes down. The sum or the maximum of the deltas would let a run with a large delta lower the epsilon
reported for everything before it, and so slip under a cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dpsad_core.errors import PrivacyBudgetError
from dpsad_core.privacy.analysis import ACCOUNTANTS, AccountantValues, compute_epsilon
from dpsad_core.privacy.mechanisms import Mechanism

__all__ = ["DEFAULT_EMPTY_DELTA", "BudgetCheck", "LedgerEntry", "LedgerSummary", "compose_entries"]

DEFAULT_EMPTY_DELTA = 1e-5  # only labels the (zero) total of a dataset with no runs yet
CAP_TOLERANCE = 1e-9        # relative: float noise in the composition must not refuse a run that exactly fits


# -- values ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerEntry:
    """One run's spend on one dataset, as recorded.

    ``mechanisms`` is what the run spent so far (for a running training run: including the step in
    flight); ``reserved`` is what it may reach while it is active (its plan), ``None`` once it ended.
    """

    run_id: str
    dataset_fingerprint: str
    kind: str
    recipe: str | None
    delta: float
    private: bool
    mechanisms: tuple[Mechanism, ...]
    reserved: tuple[Mechanism, ...] | None
    created: str
    updated: str

    @property
    def active(self) -> bool:
        """Whether the run holds a reservation (it is running, or was killed without closing)."""
        return self.reserved is not None

    def committed(self) -> tuple[Mechanism, ...]:
        """What the run spent or may still spend: per mechanism, the larger of spent and reserved."""
        if self.reserved is None:
            return self.mechanisms
        return _upper_envelope(self.mechanisms, self.reserved)

    def values(self, *, accountants: Sequence[str] = ACCOUNTANTS) -> tuple[AccountantValues, str | None]:
        """This run's own epsilon at its own delta, and a note when PRV could not be computed."""
        return compose_entries([self], accountants=accountants)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dataset_fingerprint": self.dataset_fingerprint, "kind": self.kind,
                "recipe": self.recipe, "delta": self.delta, "private": self.private, "active": self.active,
                "mechanisms": [m.to_dict() for m in self.mechanisms],
                "reserved": None if self.reserved is None else [m.to_dict() for m in self.reserved],
                "created": self.created, "updated": self.updated}


@dataclass(frozen=True)
class LedgerSummary:
    """A dataset's account: the composed spend of all its runs, its cap and what is left.

    ``spent`` composes what the runs spent; ``committed`` also counts what active runs reserved (the
    number a new run is checked against). ``remaining`` is ``cap - committed`` (0 at least), a
    guide only: a new run is checked by composing, which is tighter than subtracting epsilons.
    """

    dataset_fingerprint: str
    dataset_name: str | None
    cap_epsilon: float | None
    spent: AccountantValues
    committed: AccountantValues
    entries: tuple[LedgerEntry, ...]
    notes: tuple[str, ...]

    @property
    def private(self) -> bool:
        return self.spent.private

    @property
    def remaining(self) -> float | None:
        if self.cap_epsilon is None:
            return None
        if not self.committed.private:
            return 0.0
        return max(0.0, self.cap_epsilon - self.committed.certified)

    @property
    def over_cap(self) -> bool:
        return self.cap_epsilon is not None and self.committed.certified > self.cap_epsilon * (1 + CAP_TOLERANCE)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_fingerprint": self.dataset_fingerprint, "dataset_name": self.dataset_name,
                "cap_epsilon": self.cap_epsilon, "remaining": self.remaining, "over_cap": self.over_cap,
                "private": self.private, "spent": self.spent.to_dict(), "committed": self.committed.to_dict(),
                "runs": len(self.entries), "notes": list(self.notes)}


@dataclass(frozen=True)
class BudgetCheck:
    """The numbers of one budget check: what others committed, what is planned, the composed total.

    Without a cap nothing is computed (the check cannot fail): the three values are ``None``.
    """

    dataset_fingerprint: str
    cap_epsilon: float | None
    before: AccountantValues | None
    planned: AccountantValues | None
    projected: AccountantValues | None

    @property
    def fits(self) -> bool:
        if self.cap_epsilon is None or self.projected is None:
            return True
        return self.projected.certified <= self.cap_epsilon * (1 + CAP_TOLERANCE)


# -- composition -----------------------------------------------------------------------------------
def _upper_envelope(first: Sequence[Mechanism], second: Sequence[Mechanism]) -> tuple[Mechanism, ...]:
    """Per (part, sigma, sample rate), the larger step count of the two lists: at least what either spends."""
    steps: dict[tuple[str, float, float], int] = {}
    template: dict[tuple[str, float, float], Mechanism] = {}
    for source in (first, second):
        counts: dict[tuple[str, float, float], int] = {}
        for mechanism in source:
            key = (mechanism.part, mechanism.noise_multiplier, mechanism.sample_rate)
            counts[key] = counts.get(key, 0) + mechanism.steps
            template.setdefault(key, mechanism)
        for key, count in counts.items():
            steps[key] = max(steps.get(key, 0), count)
    return tuple(Mechanism(part=m.part, noise_multiplier=m.noise_multiplier, sample_rate=m.sample_rate,
                           steps=steps[key], clip_norm=m.clip_norm, components=m.components)
                 for key, m in template.items())


def compose_entries(entries: Sequence[LedgerEntry], *, extra: Sequence[Mechanism] = (),
                    extra_delta: float | None = None, extra_private: bool = True, committed: bool = False,
                    accountants: Sequence[str] = ACCOUNTANTS) -> tuple[AccountantValues, str | None]:
    """Epsilon of all the entries' mechanisms (and ``extra``) composed, at the smallest delta.

    Parameters
    ----------
    entries : sequence of LedgerEntry
        Runs on one dataset.
    extra, extra_delta, extra_private
        A planned run's mechanisms, delta and privacy, composed with the entries.
    committed : bool
        Compose each entry's :meth:`LedgerEntry.committed` (spent or reserved) instead of its spend.
    accountants : sequence of str
        As for :func:`compute_epsilon`. When PRV refuses a long history, RDP alone is used.

    Returns
    -------
    tuple
        ``(AccountantValues, note)``; the note says why PRV is missing, else ``None``.
    """
    deltas = [entry.delta for entry in entries] + ([extra_delta] if extra_delta is not None else [])
    delta = min(deltas) if deltas else DEFAULT_EMPTY_DELTA
    mechanisms = [m for entry in entries for m in (entry.committed() if committed else entry.mechanisms)]
    mechanisms += list(extra)
    nonprivate = [f"run {entry.run_id}" for entry in entries if not entry.private]
    if not extra_private:
        nonprivate.append("the planned run")
    try:
        return compute_epsilon(mechanisms, delta=delta, accountants=accountants, nonprivate_parts=nonprivate), None
    except PrivacyBudgetError as error:
        if "rdp" not in accountants:
            raise
        # PRV refuses histories too long for its grid (as in the engine); RDP is still an upper bound.
        values = compute_epsilon(mechanisms, delta=delta, accountants=("rdp",), nonprivate_parts=nonprivate)
        return values, f"PRV not computed ({error}); the total is the RDP bound"
