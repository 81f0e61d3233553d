"""A run against the dataset's privacy ledger: what it plans to spend, held before it starts.

Shared by the engine (reserve before the run folder exists), ``train --plan`` and the GUI's
"New run" screen (what is spent and left on the dataset, and whether this run would fit).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpsad_core.privacy.mechanisms import Mechanism
from dpsad_core.training.config import TrainConfig
from dpsad_core.training.planner import PhasePlan, TrainingPlan

if TYPE_CHECKING:
    from dpsad_core.data.dataset import ImageDataset
    from dpsad_core.privacy.ledger_runs import RunSpend


def planned_mechanisms(config: TrainConfig, plan: TrainingPlan) -> list[Mechanism]:
    """Every mechanism the run will compose (the noisy count first), with ``--max-steps`` applied."""
    def limit(phase: PhasePlan) -> int:
        return phase.steps if config.max_steps is None else min(phase.steps, config.max_steps)

    mechanisms = (phase.mechanism(config.hyper, steps=limit(phase)) for phase in plan.phases)
    return plan.prior_mechanisms() + [m for m in mechanisms if m is not None and m.steps > 0]


def ledger_fingerprint(config: TrainConfig, dataset: ImageDataset, workspace: Path) -> str:
    """The ledger entry the run is charged under: the data as stored, its overlaps with other datasets linked.

    Runs at different --resolution compose because the source is identified as stored; copies, subsets,
    reorderings and re-imports at another size compose through the ledger's overlaps
    (:func:`dpsad_core.privacy.ledger_datasets.ledger_identity`).
    """
    from dpsad_core.data import resolve_data_source
    from dpsad_core.errors import DpsadError
    from dpsad_core.privacy.ledger_datasets import ledger_identity

    if config.ledger_data is not None:
        # An audit run trains on a copy of the source data plus canaries: the source pays for it.
        return ledger_identity(workspace, resolve_data_source(config.ledger_data, workspace=workspace,
                                                              min_records=0))
    if config.resolution is None:
        return ledger_identity(workspace, dataset)
    try:
        source = resolve_data_source(config.data, workspace=workspace, min_records=0)
    except DpsadError:
        source = dataset  # the source cannot be read without resizing: key by what was trained on
    return ledger_identity(workspace, source)


def reserve_spend(workspace: Path, run_id: str, config: TrainConfig, dataset: ImageDataset, plan: TrainingPlan
                  ) -> RunSpend:
    """Hold the run's plan in the privacy ledger; PrivacyBudgetError (nothing written) if over the cap."""
    from dpsad_core.privacy.ledger_runs import RunSpend

    return RunSpend.reserve(workspace, run_id=run_id, fingerprint=ledger_fingerprint(config, dataset, workspace),
                            name=dataset.name if config.ledger_data is None else None,  # keep the source's name
                            kind="train", recipe=config.recipe.value, delta=plan.delta,
                            private=plan.is_private, planned=planned_mechanisms(config, plan))


def budget_outlook(config: TrainConfig, dataset: ImageDataset, plan: TrainingPlan, workspace: Path) -> dict[str, Any]:
    """What the dataset has spent, its cap, and whether this run fits (``refusal``: the message if not)."""
    from dpsad_core.errors import PrivacyBudgetError
    from dpsad_core.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(workspace)
    fingerprint = ledger_fingerprint(config, dataset, workspace)
    summary = ledger.summary(fingerprint)
    refusal = None
    try:
        ledger.check_budget(fingerprint, planned=planned_mechanisms(config, plan), delta=plan.delta,
                            private=plan.is_private)
    except PrivacyBudgetError as error:
        refusal = str(error)
    spent = summary.spent.certified if summary.entries else 0.0
    return {"dataset_fingerprint": fingerprint, "runs": len(summary.entries),
            "spent_epsilon": spent if math.isfinite(spent) else None,  # None: a non-private run used it
            "cap_epsilon": summary.cap_epsilon, "remaining": summary.remaining, "refusal": refusal}
