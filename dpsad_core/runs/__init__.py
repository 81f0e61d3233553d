"""Run folders and their records, shared by every kind of run (training, DP-RDM generation, audit).

Torch-free: export, evaluation and the GUI import it without loading the training stack.
"""

from dpsad_core.runs.records import (
    AUDIT_FILE,
    CONFIG_SCHEMA,
    RESULT_SCHEMA,
    RunConfigRecord,
    RunKind,
    RunResult,
    RunState,
    RunStatus,
)

__all__ = ["AUDIT_FILE", "CONFIG_SCHEMA", "RESULT_SCHEMA", "RunConfigRecord", "RunKind", "RunResult", "RunState",
           "RunStatus"]
