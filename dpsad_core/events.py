"""Events that long work yields (training, sampling, export).

Long work is a generator of these small frozen dataclasses. The CLI prints them, the GUI worker
relays them as Qt signals, tests consume them directly: one code path for all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    run_dir: Path
    resumed: bool
    plan: dict[str, Any]


@dataclass(frozen=True)
class PhaseStarted:
    phase: str
    total_steps: int
    start_step: int
    privacy: str  # "dp", "public" or "nonprivate"


@dataclass(frozen=True)
class StepCompleted:
    phase: str
    step: int                 # 1-based step within the phase
    total_steps: int
    losses: dict[str, float]
    epsilon_spent: float      # upper bound on the epsilon spent so far (inf if a part is non-private); see
                              # _Trainer._epsilon_bound: RDP, capped by the target when PRV calibrated the noise
    epsilon_target: float
    seconds: float            # wall time of this step
    eta_seconds: float        # estimated time left for the whole run


@dataclass(frozen=True)
class SampleGrid:
    phase: str
    step: int
    path: Path
    image: np.ndarray = field(repr=False)  # uint8 H x W (grey) or H x W x 3


@dataclass(frozen=True)
class CheckpointWritten:
    phase: str
    step: int
    path: Path


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    result: dict[str, Any]


@dataclass(frozen=True)
class RunInterrupted:
    run_id: str
    phase: str
    step: int
    message: str


Event = RunStarted | PhaseStarted | StepCompleted | SampleGrid | CheckpointWritten | RunFinished | RunInterrupted


# -- export (dpsad_core/export/bundle.py) ------------------------------------------------------------
@dataclass(frozen=True)
class ExportStarted:
    run_id: str
    total_images: int
    private: bool             # False: the bundle is stamped NOT DIFFERENTIALLY PRIVATE
    partial_path: Path        # the temporary sibling being written (renamed at the end)


@dataclass(frozen=True)
class ExportProgress:
    stage: str                # "sampling", "writing images", "report", "signing"
    done: int                 # images sampled or written so far
    total: int


@dataclass(frozen=True)
class ExportFinished:
    bundle_path: Path         # the finished folder, or the .zip
    summary: dict[str, Any]   # epsilon, delta, recipe, images, signer, report path, ...


ExportEvent = ExportStarted | ExportProgress | ExportFinished
