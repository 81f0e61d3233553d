"""Sampling split across the workers of ``sample``, ``export`` and ``evaluate --nproc N``.

Rank 0 runs the command as one process would; the other ranks only sample. Each time rank 0 calls
:func:`dpsad_core.sampling.generate`, it sends the call (and, the first time, the model's weights) to
every worker; the blocks of images (:data:`~dpsad_core.sampling.SAMPLING_BLOCK` each) are dealt
round-robin, every worker makes its blocks, and rank 0 gathers them back in block order. A block's
images depend only on the public sampling seed and the images' indices, so the result is the same
whatever N. When rank 0's command ends (or it has no more to sample: :func:`dismiss_workers`), it
tells the workers to stop; only rank 0 writes anything.

Started by the same launcher as ``train --nproc`` (torch's elastic launcher: gloo on CPU, NCCL with
one GPU per worker), or by ``torchrun -m dpsad_core export ...``.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Any

from dpsad_core import distributed

_STOP = None
_crew: _Crew | None = None


class _Crew:
    """Rank 0's side: sends each sampling call to the workers and gathers their blocks."""

    def __init__(self, world: distributed.World) -> None:
        self.world = world
        self._sent_model = None  # the model whose weights the workers hold
        self.dismissed = False

    def generate(self, model, schedule, request, *, device: str):
        from dpsad_core.sampling import sample_span

        weights = None
        if model is not self._sent_model:
            weights = model_payload(model)
            self._sent_model = model
        distributed.share({"request": request, "weights": weights,
                           "schedule": (schedule.num_steps, schedule.kind)})
        spans = request.spans()
        mine = {index: sample_span(model, schedule, request, spans[index],
                                   device=distributed.worker_device(device, self.world))
                for index in range(self.world.rank, len(spans), self.world.size)}
        gathered = distributed.gather_objects(mine)
        if gathered is None:  # pragma: no cover - the crew is rank 0's, and rank 0 gathers
            raise RuntimeError("only rank 0 leads a sampling crew")
        return assemble(gathered, len(spans))

    def dismiss(self) -> None:
        if not self.dismissed:
            self.dismissed = True
            distributed.share(_STOP)


def active_crew() -> _Crew | None:
    """The crew of this command's workers, on rank 0 of a multi-worker sampling command (else None)."""
    return _crew if _crew is not None and not _crew.dismissed else None


def crew_size() -> int:
    """How many workers share this command's sampling (1 without workers)."""
    crew = active_crew()
    return crew.world.size if crew is not None else 1


@contextlib.contextmanager
def leading():
    """Rank 0 runs its command inside this: ``generate`` is spread over the workers, who stop at the end."""
    global _crew
    world = distributed.current_world()
    if not world.distributed:
        yield
        return
    crew = _crew = _Crew(world)
    try:
        yield
    except BaseException:
        with contextlib.suppress(distributed.WorkerLostError):  # the command's own error is the one to report
            crew.dismiss()
        raise
    finally:
        _crew = None
    crew.dismiss()


def dismiss_workers() -> None:
    """Rank 0 will sample no more in this command: let the workers end now (a no-op without workers)."""
    crew = active_crew()
    if crew is not None:
        crew.dismiss()


def follow(device: str) -> None:
    """A worker of rank > 0: make its share of every sampling call until rank 0 says stop."""
    from dpsad_core.diffusion import DiffusionSchedule
    from dpsad_core.sampling import sample_span

    world = distributed.current_world()
    model, schedules = None, dict[tuple[int, str], DiffusionSchedule]()
    while True:
        message = distributed.share(None)
        if message is _STOP:
            return
        if message["weights"] is not None:
            model = model_from_payload(message["weights"], device)
        steps, kind = message["schedule"]
        schedule = schedules.setdefault((steps, kind), DiffusionSchedule(steps, kind))
        request = message["request"]
        spans = request.spans()
        mine = {index: sample_span(model, schedule, request, spans[index], device=device)
                for index in range(world.rank, len(spans), world.size)}
        distributed.gather_objects(mine)


def model_payload(model) -> dict[str, Any]:
    """What a worker needs to rebuild the released network (a UNet or a few-step student), on the CPU."""
    from dpsad_core.models import UNet, VPredictionStudent

    if not isinstance(model, (UNet, VPredictionStudent)):  # pragma: no cover - only released models are sampled
        raise TypeError(f"sampling across workers needs a released model, got {type(model).__name__}")
    return {"config": asdict(model.config), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "student": isinstance(model, VPredictionStudent)}


def model_from_payload(payload: dict[str, Any], device: str):
    from dpsad_core.models import UNet, UNetConfig, VPredictionStudent

    config = UNetConfig(**payload["config"])
    model: UNet | VPredictionStudent
    if payload.get("student"):
        model = VPredictionStudent(config, payload["state_dict"]["alphas_cumprod"])
    else:
        model = UNet(config)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def assemble(parts: list[dict[int, Any]], blocks: int):
    """The blocks of all workers, in block order, as one tensor."""
    import torch

    by_index = {index: images for part in parts for index, images in part.items()}
    missing = sorted(set(range(blocks)) - set(by_index))
    if missing:  # pragma: no cover - every block is dealt to exactly one worker
        raise RuntimeError(f"sampling blocks {missing} came back from no worker")
    return torch.cat([by_index[index] for index in range(blocks)])
