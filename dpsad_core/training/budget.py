"""A run against the dataset's privacy ledger: what it plans to spend, held before it starts.

Shared by the engine (its :class:`~dpsad_core.runs.lifecycle.LedgerAccount` and the plan it reserves before
the run folder exists), ``train --plan`` and the GUI's "New run" screen (what is spent and left on the dataset,
and whether this run would fit).
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
    from dpsad_core.privacy.ledger_datasets import stored_data_identity

    if config.ledger_data is not None:
        # An audit run trains on a copy of the source data plus canaries: the source pays for it.
        return stored_data_identity(workspace, config.ledger_data)
    return stored_data_identity(workspace, config.data, loaded=dataset, as_stored=config.resolution is None)


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
