"""Training with N local workers while the caller consumes rank 0's events (the workbench's "all GPUs").

``dpsad-core train --nproc N`` hands the whole run to torch's elastic launcher and prints rank 0's
progress. A program that consumes the engine's events itself (the desktop workbench, in its job
process) cannot: here the calling process becomes rank 0 and starts ranks 1..N-1 as subprocesses
(``python -m dpsad_core.training.local_workers``), joined through ``torch.distributed``'s env://
rendezvous on 127.0.0.1. The run is the same one ``--nproc N`` makes (docs/distributed.md): rank 0
shares the run, the key and the checkpoint; the others write nothing.

A worker that dies makes rank 0's next exchange fail (WorkerLostError): the run stops as interrupted
and resumes from its last checkpoint; the remaining workers are ended when rank 0 returns.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpsad_core import distributed
from dpsad_core.errors import ConfigError

if TYPE_CHECKING:
    from dpsad_core.events import Event
    from dpsad_core.training.config import TrainConfig

WORKER_EXIT_WAIT_S = 30.0


def train_with_workers(config: TrainConfig | None, *, workspace: Path, nproc: int,
                       stop: Callable[[], bool] | None = None, resume: str | None = None,
                       device: str | None = None) -> Iterator[Event]:
    """The events of ``start_training(config)`` (or ``resume_training(resume, device=device)``) run by ``nproc``
    workers. A resume trains on ``device`` when given, else where it started (refused, naming the remedy, when
    this machine cannot use that device), exactly as ``train --resume`` decides it."""
    from dpsad_core.devices import resolve_device
    from dpsad_core.runs.folder import RunFolder, new_run_id
    from dpsad_core.training.config import TrainConfig
    from dpsad_core.training.engine import resume_device

    if resume:
        run = RunFolder.open(workspace, resume)
        run_id = run.run_id
        device = resume_device(TrainConfig.from_dict(dict(run.config().config)), device, run_id).device
    elif config is not None:
        run_id, device = new_run_id(config.recipe.value), config.device
    else:
        raise ConfigError("a new run needs its settings", field="config", value=None, remedy="pass a TrainConfig")
    device = resolve_device(device)  # one resolved name for every worker (their devices follow LOCAL_RANK)
    with _job_file({"config": config, "resume": resume, "run_id": run_id, "workspace": str(workspace),
                    "device": device}) as job, \
            _world_env(nproc, rank=0) as env:
        followers = [subprocess.Popen([sys.executable, "-m", "dpsad_core.training.local_workers", job],
                                      env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)})
                     for rank in range(1, nproc)]
        try:
            distributed.init_world(device)
            yield from _events(config, workspace=workspace, stop=stop, resume=resume, run_id=run_id, device=device)
        finally:
            distributed.shutdown_world()
            _end(followers)


def _events(config: TrainConfig | None, *, workspace: Path, stop: Callable[[], bool] | None, resume: str | None,
            run_id: str | None, device: str) -> Iterator[Event]:
    from dpsad_core.training import resume_training, start_training

    if resume:
        return resume_training(resume, workspace=workspace, stop=stop, device=device)
    if config is None:
        raise ConfigError("a new run needs its settings", field="config", value=None, remedy="pass a TrainConfig")
    return start_training(config, workspace=workspace, stop=stop, run_id=run_id)


@contextmanager
def _world_env(nproc: int, *, rank: int) -> Iterator[dict[str, str]]:
    """This process's environment as rank ``rank`` of ``nproc`` on 127.0.0.1 (restored afterwards)."""
    names = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK")
    saved = {name: os.environ.get(name) for name in names}
    values = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(nproc),
              "LOCAL_WORLD_SIZE": str(nproc), "RANK": str(rank), "LOCAL_RANK": str(rank)}
    os.environ.update(values)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        yield dict(os.environ)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _job_file(job: dict[str, Any]) -> Iterator[str]:
    """The run's settings for the other workers, in an owner-only temporary file."""
    handle, path = tempfile.mkstemp(prefix="dpsad-workers-", suffix=".pickle")
    try:
        with os.fdopen(handle, "wb") as out:
            pickle.dump(job, out)
        yield path
    finally:
        Path(path).unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _end(followers: list[subprocess.Popen[bytes]]) -> None:
    """Wait for the other workers to finish their last exchange; end any that does not."""
    for follower in followers:
        try:
            follower.wait(timeout=WORKER_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait()


def _follower_main(job_path: str) -> int:
    """Ranks 1..N-1: train (or resume) the run rank 0 shares, writing nothing."""
    from dpsad_core.devices import resolve_device

    with open(job_path, "rb") as handle:
        job = pickle.load(handle)  # written by our own rank 0 just before, owner-only
    distributed.init_world(resolve_device(job["device"]))
    try:
        for _ in _events(job["config"], workspace=Path(job["workspace"]), stop=None, resume=job["resume"],
                         run_id=job["run_id"], device=job["device"]):
            pass
    finally:
        distributed.shutdown_world()
    return 0


if __name__ == "__main__":
    sys.exit(_follower_main(sys.argv[1]))
