"""The one-run empirical privacy audit as a training run (Steinke, Nasr and Jagielski 2023).

``run_audit`` draws canaries, saves the data plus the included canaries as a workspace dataset named
``audit-...``, trains it through the normal engine with the recipe under test, scores every canary
from the released model and computes the empirical lower bound on epsilon
(:mod:`dpsad_core.privacy.audit`). It is a generator: the engine's events pass through, then
:class:`AuditFinished`. The run folder is marked as an audit run by ``audit.json`` (its state, the
settings and, at the end, the result) and holds the canaries and their inclusion in
``audit_canaries.npz``; an interrupted audit is resumed with ``dpsad-core train --resume RUN`` and
scored with ``dpsad-core audit --run RUN``.

Privacy: the score uses only the released model (already a DP release for a sound recipe), the
canaries and the coin flips that placed them, so the audit result is post-processing and costs no
privacy beyond the run's own. The audit run itself trained on the private data and its epsilon is
counted like any other run's.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.atomic import atomic_write
from dpsad_core.errors import ConfigError, DataImportError, RunError
from dpsad_core.evaluation.audit_canaries import (
    CANARY_KINDS,
    Canaries,
    build_canaries,
    dataset_with_canaries,
    membership_scores,
)
from dpsad_core.privacy.audit import DEFAULT_CONFIDENCE, audit_from_scores
from dpsad_core.privacy.randomness import SecretRandomness, os_entropy
from dpsad_core.runs.records import AUDIT_FILE, RunKind, RunState

CANARY_FILE = "audit_canaries.npz"
AUDIT_DATASET_PREFIX = "audit-"
POWER_NOTE = ("an empirical LOWER bound: the true epsilon is at least this with the stated confidence. "
              "A low value does not prove privacy; it only means this attack (these canaries, this score, "
              "this much training) found no more. With m canaries the bound cannot exceed what m correct "
              "guesses refute: at 95% with one guess setting about 3.5 for m = 100 and 4.2 for m = 200; the "
              "default sweep over five settings, corrected for the tries, caps it near 3.0 and 3.7.")


@dataclass(frozen=True)
class AuditSettings:
    """How the audit is run, beyond the training configuration of the run under test."""

    canaries: int = 200
    canary_kind: str = "pattern"
    score_draws: int = 64            # (t, eps) draws averaged per canary score
    confidence: float = DEFAULT_CONFIDENCE
    guesses_per_side: int | None = None  # fix k up front (no multiple-testing correction); None: sweep
    # A known seed makes the canaries, their inclusion and the scoring reproducible. None: the canaries and
    # their inclusion come from fresh OS entropy (never recorded), the scoring draws from a fresh seed.
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.canary_kind not in CANARY_KINDS:
            raise ConfigError(f"unknown canary kind {self.canary_kind!r}", field="canary_kind",
                              value=self.canary_kind, remedy=f"choose one of: {', '.join(CANARY_KINDS)}")
        if self.canaries < 2:
            raise ConfigError("the audit needs at least 2 canaries", field="canaries", value=self.canaries,
                              remedy="use --canaries 100 or more")
        if self.score_draws < 1:
            raise ConfigError("score_draws must be >= 1", field="score_draws", value=self.score_draws)
        if not 0 < self.confidence < 1:
            raise ConfigError("confidence must be strictly between 0 and 1", field="confidence",
                              value=self.confidence, remedy="e.g. 0.95")
        if self.guesses_per_side is not None and not 1 <= self.guesses_per_side <= self.canaries // 2:
            raise ConfigError(f"guesses per side must be between 1 and canaries / 2 = {self.canaries // 2}",
                              field="guesses_per_side", value=self.guesses_per_side)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AuditPrepared:
    """The canaries are drawn and the audit dataset is saved; training starts next."""

    dataset_name: str
    canaries: int
    included: int
    kind: str


@dataclass(frozen=True)
class AuditFinished:
    run_id: str
    report: dict[str, Any]


def run_audit(config, settings: AuditSettings, *, workspace: Path,
              stop: Callable[[], bool] | None = None) -> Iterator[Any]:
    """Train ``config`` (a :class:`~dpsad_core.training.TrainConfig`) with canaries, then audit it.

    Yields :class:`AuditPrepared`, the engine's events, and :class:`AuditFinished` (not when the
    training is interrupted: the engine's ``RunInterrupted`` is then the last event).
    """
    from dpsad_core.data import resolve_data_source, save_dataset
    from dpsad_core.data.store import sanitise_name
    from dpsad_core.events import RunInterrupted, RunStarted
    from dpsad_core.training import start_training

    if settings.seed is None:
        canary_seed, inclusion = int.from_bytes(os_entropy(32), "little"), SecretRandomness.fresh().stream("sampling")
        settings = dataclasses.replace(settings, seed=secrets.randbits(31))  # the scoring draws only
        tag = secrets.token_hex(3)
    else:
        canary_seed, inclusion, tag = settings.seed, None, f"s{settings.seed}"
    data = resolve_data_source(config.data, workspace=workspace, resolution=config.resolution,
                               min_records=config.min_records)
    canaries = build_canaries(data, count=settings.canaries, kind=settings.canary_kind, seed=canary_seed,
                              inclusion=inclusion)
    name = sanitise_name(f"{AUDIT_DATASET_PREFIX}{data.name}-{data.resolution}px-{settings.canary_kind}-"
                         f"{settings.canaries}-{tag}")
    audit_data = dataset_with_canaries(data, canaries, name=name)
    try:
        save_dataset(audit_data, workspace)
    except DataImportError as error:
        raise DataImportError(f"cannot save the audit data: {error.message}",
                              remedy="pass another --seed, or remove the old audit dataset") from None
    yield AuditPrepared(dataset_name=name, canaries=canaries.count, included=int(canaries.included.sum()),
                        kind=canaries.kind)
    # The run is trained as usual; only its data differs (already resized, so no resolution again).
    # The spend is charged to the source data in the privacy ledger (and checked against its cap).
    audit_config = dataclasses.replace(config, data=name, resolution=None, ledger_data=config.data)
    run_dir = None
    for event in start_training(audit_config, workspace=workspace, stop=stop):
        if isinstance(event, RunStarted):
            run_dir = event.run_dir
            _write_canaries(run_dir, canaries)
            _write_audit_state(run_dir, state="training", settings=settings, source_data=data.name,
                               audit_dataset=name)
        yield event
        if isinstance(event, RunInterrupted):
            return
    if run_dir is None:  # pragma: no cover - the engine always starts with RunStarted
        raise RunError("the audit run never started", remedy="report this as a bug")
    report = score_audit_run(run_dir, workspace=workspace, device=config.device)
    yield AuditFinished(run_id=Path(run_dir).name, report=report)


def score_audit_run(run_ref: str | Path, *, workspace: Path, device: str = "auto") -> dict[str, Any]:
    """Score a finished audit run's canaries with its released model; write and return the report."""
    from dpsad_core.devices import resolve_device
    from dpsad_core.sampling import load_released_model
    from dpsad_core.training import RunFolder

    run = RunFolder.open(workspace, str(run_ref))
    if run.kind is not RunKind.AUDIT or not (run.path / CANARY_FILE).is_file():
        raise RunError(f"run {run.run_id} is not an audit run (no {AUDIT_FILE} or {CANARY_FILE})",
                       remedy="start one with: dpsad-core audit --recipe R --data DATA --epsilon E")
    state = run.read_json(AUDIT_FILE)
    if run.state is not RunState.FINISHED:
        raise RunError(f"audit run {run.run_id} has not finished training",
                       remedy=f"resume it with: dpsad-core train --resume {run.run_id}, then "
                              f"dpsad-core audit --run {run.run_id}")
    try:
        settings = AuditSettings(**state["settings"])
    except (KeyError, TypeError) as error:
        raise RunError(f"{run.path / AUDIT_FILE} has no readable settings ({error})",
                       remedy="the audit cannot be scored; run a new audit") from None
    if settings.seed is None:  # the start replaced a None with the scoring seed it drew
        raise RunError(f"{run.path / AUDIT_FILE} has no scoring seed",
                       remedy="the audit cannot be scored; run a new audit")
    canaries = _read_canaries(run.path)
    result = run.result()
    device = resolve_device(device)
    # A few-step student is a function of its teacher only (post-processing): the teacher, whose loss
    # the scores need at every time step, is the stronger target and bounds what the student leaks.
    try:
        model, schedule, _ = load_released_model(run.model_path, device, generator="teacher")
    except ConfigError:  # the run has one model
        model, schedule, _ = load_released_model(run.model_path, device)
    scores = membership_scores(model, schedule, canaries, draws=settings.score_draws, seed=settings.seed,
                               device=device)
    guesses = None if settings.guesses_per_side is None else (settings.guesses_per_side,)
    bound = audit_from_scores(scores, canaries.included, delta=float(result.delta),
                              confidence=settings.confidence, guess_counts=guesses, seed=settings.seed)
    certified = result.epsilon if result.private else None
    claimed = result.claimed_epsilon_paper
    report = {
        "run_id": run.run_id, "recipe": result.recipe, "private": result.private,
        "epsilon_lower_bound": bound.epsilon_lower_bound,
        "epsilon_certified": certified,
        "epsilon_claimed_paper": claimed,
        "epsilon_target": result.epsilon_target, "delta": result.delta,
        "consistent": certified is None or bound.epsilon_lower_bound <= certified,
        # dpsad-paper: does the audit refute the epsilon the paper would claim for this run?
        "refutes_claim": claimed is not None and bound.epsilon_lower_bound > claimed,
        "canary_kind": canaries.kind, "score": _score_name(canaries.kind), "score_draws": settings.score_draws,
        "bound": bound.to_dict(), "mean_score_included": _mean(scores[canaries.included]),
        "mean_score_excluded": _mean(scores[~canaries.included]),
        "source_data": state.get("source_data"), "audit_dataset": state.get("audit_dataset"),
        "settings": settings.to_dict(), "steps": _plain(result.steps), "train_seconds": result.train_seconds,
        "note": POWER_NOTE,
    }
    _write_audit_state(run.path, state="finished", settings=settings, source_data=state.get("source_data"),
                       audit_dataset=state.get("audit_dataset"), report=report)
    return report


def _score_name(kind: str) -> str:
    if kind == "mislabelled":
        return "denoising loss under the true label minus under the canary label"
    return "minus the denoising loss"


def _plain(mapping) -> dict[str, Any] | None:
    return None if mapping is None else dict(mapping)


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size and math.isfinite(float(values.mean())) else None


def _write_canaries(run_dir: Path, canaries: Canaries) -> None:
    def write(handle) -> None:
        np.savez(handle, images=canaries.images, labels=canaries.labels, included=canaries.included,
                 kind=np.array(canaries.kind), true_labels=canaries.true_labels,
                 source_indices=canaries.source_indices)

    atomic_write(Path(run_dir) / CANARY_FILE, write)


def _read_canaries(run_dir: Path) -> Canaries:
    path = Path(run_dir) / CANARY_FILE
    try:
        with np.load(path, allow_pickle=False) as archive:
            return Canaries(images=archive["images"], labels=archive["labels"], included=archive["included"],
                            kind=str(archive["kind"]), true_labels=archive["true_labels"],
                            source_indices=archive["source_indices"])
    except (OSError, KeyError, ValueError) as error:
        raise RunError(f"{path} cannot be read ({error})", remedy="the audit cannot be scored; run a new audit") \
            from None


def _write_audit_state(run_dir: Path, *, state: str, settings: AuditSettings, source_data: str | None,
                       audit_dataset: str | None, report: dict[str, Any] | None = None) -> None:
    from dpsad_core.atomic import atomic_write_json

    atomic_write_json(Path(run_dir) / AUDIT_FILE, {
        "kind": "empirical privacy audit (Steinke, Nasr, Jagielski 2023)", "state": state,
        "settings": settings.to_dict(), "source_data": source_data, "audit_dataset": audit_dataset,
        "report": report})
