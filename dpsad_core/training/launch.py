"""``dpsad-core train|sample|export|evaluate --nproc N``: N local workers started by torch's elastic launcher.

Never our own launcher: the same workers run under ``torchrun`` across machines; see docs/distributed.md.
Here the launcher listens on 127.0.0.1 on a free port, restarts nothing (``max_restarts=0``: a dead
worker stops the run, which ``train --resume`` continues; a sampling command is simply run again), and
turns a failed worker into one line and an exit code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dpsad_core.errors import EXIT_INTERRUPTED, RunError
from dpsad_core.runs.records import RunState

if TYPE_CHECKING:  # torch's launcher is imported when a launch starts
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError


def launch_local(worker_argv: list[str], *, nproc: int, run_id: str, workspace: Path, command: str = "train") -> int:
    """Run ``python -m dpsad_core *worker_argv`` in ``nproc`` workers; the exit code of the run.

    ``command`` is the dpsad-core command the workers run: ``train`` (``run_id`` is the run's id, and a
    failed run is marked interrupted) or a sampling command (``run_id`` only names the launch).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # N workers share the cores (torchrun does the same)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"dpsad-{run_id}",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", local_addr="127.0.0.1",
                          max_restarts=0, monitor_interval=0.2)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "dpsad_core", *worker_argv)
    except ChildFailedError as error:
        if command != "train":
            return _report_sampling_failure(error, command)
        return _report_failure(error, run_id=run_id, workspace=workspace)
    except SignalException:
        if command != "train":
            return EXIT_INTERRUPTED
        # Ctrl-C / SIGTERM: the launcher passed it on to the workers, which stopped at a step boundary
        # (rank 0 wrote a checkpoint) before it ended them.
        # Rank 0 has said where it stopped and how to resume.
        _mark_interrupted(workspace, run_id, "stopped on request")
        return EXIT_INTERRUPTED
    return 0


def _report_failure(error: ChildFailedError, *, run_id: str, workspace: Path) -> int:
    failures = error.failures
    leader = failures.get(0)
    if leader is not None and leader.exitcode > 0:
        # Rank 0 said what went wrong itself (an error line, or "stopped ... resume with ...").
        return int(leader.exitcode)
    rank, failure = min(failures.items())
    how = (f"was killed by signal {failure.signal_name()}" if failure.exitcode < 0
           else f"exited with code {failure.exitcode}")
    _mark_interrupted(workspace, run_id, f"worker rank {rank} {how}")
    error_line = RunError(f"worker rank {rank} (pid {failure.pid}) {how}, so the run was stopped",
                          remedy=f"continue it with: dpsad-core train --resume {run_id}")
    print(f"dpsad-core: error: {error_line}", file=sys.stderr)
    return RunError.exit_code


def _report_sampling_failure(error: ChildFailedError, command: str) -> int:
    """A sampling command's worker failed: rank 0's own error, or one line naming the worker that died."""
    leader = error.failures.get(0)
    if leader is not None and leader.exitcode > 0:
        return int(leader.exitcode)
    rank, failure = min(error.failures.items())
    how = (f"was killed by signal {failure.signal_name()}" if failure.exitcode < 0
           else f"exited with code {failure.exitcode}")
    line = RunError(f"worker rank {rank} (pid {failure.pid}) {how}, so dpsad-core {command} was stopped",
                    remedy="run it again: nothing was published (a bundle appears only once it is complete)")
    print(f"dpsad-core: error: {line}", file=sys.stderr)
    return RunError.exit_code


def _mark_interrupted(workspace: Path, run_id: str, message: str) -> None:
    """A run whose rank 0 was killed still says "running": say what happened (under the run's lock)."""
    from dpsad_core.runs.folder import RunFolder

    try:
        run = RunFolder.open(workspace, run_id)
        run.lock()
    except RunError:
        return  # never created, or somebody is training it
    try:
        status = run.status()
        if status.get("state") == RunState.RUNNING:
            run.set_status(RunState.INTERRUPTED, phase=status.get("phase"), step=status.get("step"),
                           message=f"{message}; resuming continues from the last checkpoint")
    finally:
        run.unlock()
