"""``--device`` and ``--nproc N`` of the sampling commands (``sample``, ``export``, ``evaluate``).

``--nproc N`` starts N workers through the same launcher as ``train --nproc`` (torch's elastic
launcher; ``torchrun -m dpsad_core export ...`` works too). Rank 0 runs the command; the others only
make their share of the images (:mod:`dpsad_core.sampling_workers`), so the result does not depend on N.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
from collections.abc import Callable

from dpsad_core.errors import ConfigError


def add_worker_options(sub: argparse.ArgumentParser, *, work: str) -> None:
    """``--device`` and ``--nproc`` for a command that samples images (``work`` says what it does with them)."""
    sub.add_argument("--device", default="auto",
                     help=f"where to {work}: auto (a GPU when there is one, else the CPU), cpu, cuda (with --nproc N: "
                          "one GPU per worker, cuda:LOCAL_RANK), or cuda:K (one GPU)")
    sub.add_argument("--nproc", type=int, metavar="N",
                     help="split the images over N worker processes on this machine, started by torch's elastic "
                          "launcher (gloo on the CPU, one GPU each with --device cuda) and gathered in a fixed "
                          "order: the images are the same for any N (they depend only on --seed and their index). "
                          "Default 1. Across machines, use torchrun (docs/distributed.md)")


def run_with_workers(args: argparse.Namespace, handler: Callable[[argparse.Namespace], int], command: str) -> int:
    """Run ``handler`` here, in ``--nproc`` workers, or as one worker under torchrun; its exit code."""
    from dpsad_core import distributed
    from dpsad_core.commands.common import workspace_from_args

    if args.nproc is not None and args.nproc < 1:
        raise ConfigError("--nproc must be at least 1", field="nproc", value=args.nproc)
    if distributed.launched_by_torch():
        return _as_worker(args, handler)
    nproc = args.nproc or 1
    if nproc == 1:
        return handler(args)
    from dpsad_core.devices import check_gpus_for
    from dpsad_core.training.launch import launch_local

    check_gpus_for(nproc, args.device)
    workspace = workspace_from_args(args)
    return launch_local([*args.argv, "--workspace", str(workspace)], nproc=nproc, workspace=workspace,
                        run_id=f"{command}-{secrets.token_hex(4)}", command=command)


def _as_worker(args: argparse.Namespace, handler) -> int:
    """One worker under the launcher: rank 0 runs the command; the others sample until it is done."""
    from dpsad_core import distributed, sampling_workers
    from dpsad_core.devices import resolve_device

    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if args.nproc is not None and args.nproc != local:
        raise ConfigError(f"--nproc {args.nproc} disagrees with the launcher's {local} workers on this machine",
                          field="nproc", value=args.nproc, remedy="leave --nproc out under torchrun")
    device = resolve_device(args.device)
    world = distributed.init_world(device)
    try:
        if world.is_leader:
            with sampling_workers.leading():
                return handler(args)
        with open(os.devnull, "w") as quiet:  # results and errors are rank 0's to print
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                sampling_workers.follow(distributed.worker_device(device, world))
        return 0
    finally:
        distributed.shutdown_world()
