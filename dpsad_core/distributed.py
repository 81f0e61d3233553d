"""Multi-process DP-SGD on ``torch.distributed``: one mechanism, computed by several workers.

Every worker holds the run's secret key (rank 0 draws it and broadcasts it), so every worker draws the
SAME Poisson subsample of privacy units and the same loss randomness for the whole batch, then keeps
only its share: the sampled units at positions ``rank, rank + world, ...`` of the sorted sampled units
(a unit, i.e. a patient, is never split). Each worker clips its units' gradients; the clipped sums are
all-reduced (SUM); every worker then draws the identical Gaussian noise from the shared noise stream,
so the noise is added once and every worker applies the same update and keeps the same stream state
(rank 0's checkpoint is every worker's). The accountant therefore composes exactly the mechanisms of a
one-process run, whatever the number of workers.

Rank 0 owns the run folder, the ledger, events and checkpoints; the other ranks write nothing.
Workers are started by torch's elastic launcher (``dpsad-core train --nproc N`` or ``torchrun``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dpsad_core.errors import RunError

if TYPE_CHECKING:  # torch is imported where it is used: the GUI window imports the engine, not torch
    import torch


class WorkerLostError(RunError):
    """Another worker stopped (killed, out of memory, failed): this one cannot continue the step."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SOLO = World()
_current = SOLO


def launched_by_torch() -> bool:
    """True inside a worker started by torchrun / the elastic launcher (it sets these variables)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def current_world() -> World:
    return _current


def init_world(device: str) -> World:
    """Join the process group when launched by torch with more than one worker (else: one solo worker).

    gloo on CPU, nccl on CUDA (each worker then uses ``cuda:LOCAL_RANK``).
    """
    global _current
    import torch
    import torch.distributed as dist

    if not launched_by_torch() or int(os.environ["WORLD_SIZE"]) < 2:
        _current = SOLO
        return _current
    world = World(rank=int(os.environ["RANK"]), size=int(os.environ["WORLD_SIZE"]),
                  local_rank=int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend)
    _current = world
    return world


def worker_device(device: str, world: World) -> str:
    """``cuda`` means this worker's own GPU under a multi-process launch."""
    if world.distributed and device == "cuda":
        return f"cuda:{world.local_rank}"
    return device


def shutdown_world() -> None:
    global _current
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _current = SOLO


def _collective(action):
    """Run a collective; a peer that died surfaces as one clear WorkerLostError instead of a backend trace."""
    try:
        return action()
    except RuntimeError as error:
        raise WorkerLostError(f"worker rank {current_world().rank} lost contact with the other workers "
                         f"({str(error).splitlines()[0][:200]})",
                         remedy="the run was stopped; continue it with: dpsad-core train --resume RUN") from None


def _wire_device() -> torch.device:
    """Where small exchanged tensors live: NCCL moves only GPU tensors, gloo CPU ones."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", current_world().local_rank)
    return torch.device("cpu")


def share(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; small things: the key, the plan, a checkpoint)."""
    world = current_world()
    if not world.distributed:
        return obj
    import torch.distributed as dist

    box = [obj if world.is_leader else None]
    _collective(lambda: dist.broadcast_object_list(box, src=0))
    return box[0]


def gather_objects(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0, in rank order (None on the other ranks; pickled: sampled images)."""
    world = current_world()
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    gathered = [None] * world.size if world.is_leader else None
    _collective(lambda: dist.gather_object(obj, gathered, dst=0))
    return gathered


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on any (a stop request seen by one worker stops all)."""
    world = current_world()
    if not world.distributed:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_wire_device())
    _collective(lambda: dist.all_reduce(value, op=dist.ReduceOp.MAX))
    return bool(value.item())


def sync_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    world = current_world()
    if not world.distributed:
        return
    import torch.distributed as dist

    for tensor in [*module.parameters(), *module.buffers()]:
        _collective(lambda t=tensor: dist.broadcast(t.data, src=0))


def sum_across(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All-reduce (SUM) a dict of tensors in one flat buffer; the result keeps the dict's order."""
    world = current_world()
    if not world.distributed or not tensors:
        return tensors
    import torch
    import torch.distributed as dist

    names = list(tensors)  # the caller's order, the same on every rank; kept, as the noise is drawn in it
    flat = torch.cat([tensors[name].reshape(-1) for name in names])
    _collective(lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
    out, offset = {}, 0
    for name in names:
        size = tensors[name].numel()
        out[name] = flat[offset:offset + size].view_as(tensors[name])
        offset += size
    return out


def sum_module_gradients(module: torch.nn.Module) -> None:
    """All-reduce (SUM) the ``.grad`` of every trainable parameter (a missing one counts as zero)."""
    if not current_world().distributed:
        return
    import torch

    params = {name: p for name, p in module.named_parameters() if p.requires_grad}
    grads = {name: p.grad if p.grad is not None else torch.zeros_like(p) for name, p in params.items()}
    for name, total in sum_across(grads).items():
        params[name].grad = total


def shard_positions(units: torch.Tensor, world: World) -> torch.Tensor:
    """Positions in a batch (records with unit ids ``units``) that ``world.rank`` trains on.

    The sampled units, sorted, are dealt round-robin: a unit's records all go to one worker.
    """
    import torch

    if not world.distributed:
        return torch.arange(units.numel())
    distinct, owner_index = torch.unique(units, sorted=True, return_inverse=True)
    del distinct
    return torch.nonzero(owner_index % world.size == world.rank, as_tuple=False).squeeze(1)


def mean_metrics(metrics: dict[str, float], records: int) -> dict[str, float]:
    """Step metrics over the whole batch: record-weighted means (sums for ``*batch``), on every rank.

    Per-unit statistics (clipped fraction, gradient norm) are weighted by records: exact when every
    record is its own unit, an approximation for patients (these numbers are local monitoring only).
    """
    if not current_world().distributed:
        return metrics
    import math

    import torch

    names = sorted(metrics)
    values = []
    for name in names:
        value = metrics[name]
        finite = not math.isnan(value)
        if name.endswith("batch"):
            values += [value if finite else 0.0, 1.0]
        else:
            weight = float(records) if finite and records else 0.0
            values += [value * weight if weight else 0.0, weight]
    totals = sum_across({"m": torch.tensor(values, dtype=torch.float64, device=_wire_device())})["m"].tolist()
    out = {}
    for i, name in enumerate(names):
        total, weight = totals[2 * i], totals[2 * i + 1]
        out[name] = total if name.endswith("batch") else (total / weight if weight else float("nan"))
    return out
