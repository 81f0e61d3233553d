"""The life of a run, the same for every kind of run that reads private data (training, DP-RDM generation, audit).

In order::

    secret_randomness()   a fresh ChaCha20 key from the OS (a known --privacy-seed makes the run NOT private)
    draw_count()          only when N is private: the count alone is held in the ledger first (refused, with
                          nothing drawn, when even it does not fit under the cap), recorded as spent, then
                          drawn from the key's "count" stream, before anything computed from it is used
    RunLife.reserve()     the whole plan (the count included) checked against the cap and held; nothing exists yet
    RunLife.create()      the run folder and config.json
    record()              before each mechanism's output is used: the ledger shows at least what was spent
    finish() | interrupt() | abort() | fail()

**Why a refusal after the draw keeps the count's spend.** Everything planned after the draw (the sample rate,
the noise, the default delta) is computed from the noisy count, so whether the plan fits under the cap is a
function of it, and so is the refusal the analyst sees. An uncounted refusal could be repeated with a fresh draw
each time and would reveal N bit by bit. The count is therefore charged the moment it is drawn, whatever
follows; the checks that can refuse without it (the cap already spent, settings that cannot be built) run first.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpsad_core.errors import PrivacyBudgetError
from dpsad_core.privacy.accountant import PrivacyAccountant
from dpsad_core.privacy.analysis import AccountantValues, compute_epsilon
from dpsad_core.privacy.calibration import default_delta
from dpsad_core.privacy.ledger_runs import RunSpend
from dpsad_core.privacy.mechanisms import Mechanism
from dpsad_core.privacy.noisy_count import COUNT_STREAM, NoisyCount, count_mechanism, draw_noisy_count
from dpsad_core.privacy.randomness import SecretRandomness
from dpsad_core.runs.folder import RunFiles, RunFolder, utc_now
from dpsad_core.runs.records import RunConfigRecord, RunResult, RunState

__all__ = ["LedgerAccount", "RunLife", "certified_values", "count_kept", "count_plan", "draw_count",
           "secret_randomness"]

#: The delta a count is held at before the run's own delta (which may come from the count) is known:
#: ``default_delta``'s largest value, so the count is never held at a looser delta than the run may end with.
COUNT_HOLD_DELTA = default_delta(1)


def secret_randomness(privacy_seed: int | None) -> SecretRandomness:
    """The run's subsample and noise: a fresh secret key, or a known ``--privacy-seed`` (the run is NOT private)."""
    return SecretRandomness.fresh() if privacy_seed is None else SecretRandomness.from_seed(privacy_seed)


def certified_values(accountant: PrivacyAccountant | None = None, *, mechanisms: Sequence[Mechanism] = (),
                     delta: float | None = None,
                     nonprivate_parts: Sequence[str] = ()) -> tuple[AccountantValues, str | None]:
    """The accountant's values (or those of ``mechanisms`` at ``delta``), and a note when PRV was not computed.

    Every run certifies this way, whichever accountant calibrated its noise, and plans price themselves
    with it too, so a plan shows the number its finished run will print.
    PRV refuses histories too long for its grid; RDP is still a valid upper bound, so it certifies alone.
    """
    def values(accountants: Sequence[str]) -> AccountantValues:
        if accountant is not None:
            return accountant.values(accountants=accountants)
        assert delta is not None, "mechanisms are priced at a delta"
        return compute_epsilon(list(mechanisms), delta=delta, accountants=accountants,
                               nonprivate_parts=nonprivate_parts)

    try:
        return values(("rdp", "prv")), None
    except PrivacyBudgetError as error:
        return values(("rdp",)), f"PRV not computed ({error}); epsilon is the RDP bound"


@dataclass(frozen=True)
class LedgerAccount:
    """Which ledger entry a run is charged under: its workspace, id, dataset identity and kind."""

    workspace: Path
    run_id: str
    fingerprint: str
    name: str | None
    kind: str
    recipe: str | None

    def reserve(self, *, delta: float, private: bool, planned: Sequence[Mechanism]) -> RunSpend:
        """Check ``planned`` against the cap and hold it (PrivacyBudgetError, nothing written, if over)."""
        return RunSpend.reserve(self.workspace, run_id=self.run_id, fingerprint=self.fingerprint, name=self.name,
                                kind=self.kind, recipe=self.recipe, delta=delta, private=private, planned=planned)


def draw_count(account: LedgerAccount, *, num_units: int, declared: bool, randomness: SecretRandomness,
               delta: float | None) -> NoisyCount | None:
    """The run's noisy count of its privacy units, charged in the ledger before it is used; None when declared.

    The count alone is held first (a data-independent check: with the cap spent the run is refused and nothing is
    drawn), recorded as spent (the hold dropped), then drawn once from ``randomness``'s "count" stream: the
    run reserves its whole plan next, and if that is refused the count stays counted (module docstring).
    ``delta``: the run's delta when the analyst gave one; else the count is held at :data:`COUNT_HOLD_DELTA`.
    """
    if declared:
        return None
    at = delta if delta is not None else COUNT_HOLD_DELTA
    private = not randomness.reproducible
    spend = account.reserve(delta=at, private=private, planned=[count_mechanism()])
    accountant = PrivacyAccountant(delta=at)
    accountant.record(count_mechanism())
    try:
        # Recorded as spent before it is drawn (the engine's rule for every mechanism), the hold dropped.
        spend.record(accountant, finished=True)
    except BaseException:
        spend.drop_reservation()
        raise
    return draw_noisy_count(num_units, randomness.stream(COUNT_STREAM))


@contextmanager
def count_kept(count: NoisyCount | None, run_id: str) -> Iterator[None]:
    """A budget refusal after ``count`` was drawn says so: the count decided it, so its spend stays recorded."""
    try:
        yield
    except PrivacyBudgetError as error:
        if count is None:
            raise
        raise PrivacyBudgetError(f"{error.message}; the noisy count drawn for run {run_id} stays spent in the "
                                 "ledger (this refusal was computed from it)", remedy=error.remedy) from None


def count_plan(count: NoisyCount | None, *, declared: bool, exact_units: int) -> dict[str, Any]:
    """What a plan states about N: ``private_units`` (the number everything published is computed from),
    ``units_from`` ("declared", "noisy count", or "rounded" for a local preview) and ``count_mechanism``."""
    from dpsad_core.data.public_metadata import published_units

    if declared:
        return {"private_units": exact_units, "units_from": "declared", "count_mechanism": None}
    if count is None:  # a preview: local, so the exact N rounded down stands in for the count to come
        return {"private_units": published_units(exact_units, declared=False), "units_from": "rounded",
                "count_mechanism": count_mechanism().to_dict()}
    return {"private_units": count.published, "units_from": "noisy count",
            "count_mechanism": count.mechanism().to_dict()}


class RunLife:
    """A run's folder and its account in the ledger, through create, record, and one of the four ends.

    ``folder`` may be any object with RunFolder's writing methods (a worker of rank > 0 writes nothing);
    ``spend`` is None for a run that reads no private data.
    """

    def __init__(self, folder: RunFiles, spend: RunSpend | None = None) -> None:
        self.folder, self.spend = folder, spend

    @classmethod
    def reserve(cls, account: LedgerAccount, folder: RunFiles, *, delta: float, private: bool,
                planned: Sequence[Mechanism]) -> RunLife:
        """Hold the run's whole plan before its folder exists (PrivacyBudgetError, nothing written, if over)."""
        return cls(folder, account.reserve(delta=delta, private=private, planned=planned))

    def create(self, workspace: Path, config: RunConfigRecord) -> None:
        """The folder and its config.json; on failure the reservation is dropped (the spend so far stays)."""
        try:
            RunFolder.create(workspace, self.folder.run_id)
            self.folder.write_json("config.json", config.to_dict())
        except BaseException:
            self.drop_reservation()
            raise

    def record(self, accountant: PrivacyAccountant, upcoming: Mechanism | None = None) -> None:
        """The spend so far plus ``upcoming`` into the ledger, before that mechanism's output is used."""
        if self.spend is not None:
            self.spend.record(accountant, upcoming)

    def save_privacy(self, accountant: PrivacyAccountant) -> None:
        self.folder.write_json("privacy.json", {"accountant": accountant.state_dict(), "updated": utc_now()})

    def running(self, *, phase: str, step: int, **extra: Any) -> None:
        self.folder.set_status(RunState.RUNNING, phase=phase, step=step, **extra)

    def finish(self, accountant: PrivacyAccountant, result: RunResult, *, phase: str, step: int) -> None:
        """The run ended: its privacy state, its final spend (reservation dropped), result.json, status."""
        self.save_privacy(accountant)
        self._close(accountant)
        self.folder.write_result(result)
        self.folder.set_status(RunState.FINISHED, phase=phase, step=step, epsilon_spent=result.epsilon)

    def interrupt(self, accountant: PrivacyAccountant, *, phase: str, step: int, message: str) -> None:
        """Stopped at a step boundary: what was spent stays recorded, the reservation is dropped.

        The status states the spend as the ledger composes it (min of RDP and PRV, not the cheaper bound
        progress shows at every step), so the run's list and its dataset's budget print one number.
        """
        self.save_privacy(accountant)
        self._close(accountant)
        values, _ = certified_values(accountant)
        self.folder.set_status(RunState.INTERRUPTED, phase=phase, step=step, message=message,
                               epsilon_spent=values.certified if math.isfinite(values.certified) else None)

    def abort(self, *, phase: str, step: int, message: str) -> None:
        """Cut off inside a step (a lost worker, a second Ctrl-C): the last checkpoint stands and resumes."""
        self.drop_reservation()
        self.folder.set_status(RunState.INTERRUPTED, phase=phase, step=step, message=message)

    def fail(self, error: BaseException, *, phase: str, step: int, **extra: Any) -> None:
        """An error ended the run: the recorded spend (the step cut short included) stays, the hold goes."""
        self.drop_reservation()
        self.folder.set_status(RunState.FAILED, phase=phase, step=step, error=str(error), **extra)

    def drop_reservation(self) -> None:
        if self.spend is not None:
            self.spend.drop_reservation()

    def _close(self, accountant: PrivacyAccountant) -> None:
        if self.spend is not None:
            self.spend.record(accountant, finished=True)
