"""DP-SGD pieces: Poisson sampling, per-unit clipped gradient sums, Gaussian noise (Abadi et al. 2016).

Per-record gradients come from ``torch.func.vmap(grad(...))`` (measured fastest on CPU). A record's
loss may itself average K draws of (t, eps) (``draws_per_record``, DPDM's "noise multiplicity"): the
average is clipped once, so the sensitivity stays C. When records belong to patients, a patient's record
gradients are summed before clipping, so the unit of privacy is the patient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from dpsad_core.privacy.randomness import SecretStream

# per_record_loss(call, *record_tensors) -> scalar, where call(*model_inputs) runs the module with the
# parameters being differentiated and each record tensor has no batch dimension.
PerRecordLoss = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ClipStats:
    """Diagnostics of one clipped sum (kept in the local metrics log only)."""

    units: int
    clipped_fraction: float
    mean_norm: float
    mean_loss: float


def poisson_sample(unit_of_record: torch.Tensor, num_units: int, sample_rate: float,
                   stream: SecretStream) -> torch.Tensor:
    """Indices of records whose unit was drawn, each unit independently with probability ``sample_rate``.

    Never a shuffled fixed-size batch: the accountants assume exactly this sampling. ``stream`` is the
    run's secret sampling stream: which units a step read must stay unknown to the adversary.
    """
    chosen_units = torch.from_numpy(stream.bernoulli(num_units, sample_rate))
    return torch.nonzero(chosen_units[unit_of_record], as_tuple=False).squeeze(1)


def clipped_gradient_sum(module: nn.Module, per_record_loss: PerRecordLoss, records: Sequence[torch.Tensor], *,
                         clip_norm: float, units: torch.Tensor | None = None,
                         microbatch_size: int = 128) -> tuple[dict[str, torch.Tensor], ClipStats]:
    """Sum over units of ``clip(sum of the unit's per-record gradients, clip_norm)``.

    Parameters
    ----------
    module
        The network whose trainable parameters get gradients.
    per_record_loss
        Loss of one record; see :data:`PerRecordLoss`.
    records
        Tensors with a leading batch dimension, sliced per record.
    units
        Unit (patient) id per record, or None when every record is its own unit.
    microbatch_size
        Records per vmap chunk; chunks never split a unit. Changes memory use, not results.
    """
    params = {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}
    buffers = dict(module.named_buffers())
    totals = {name: torch.zeros_like(p) for name, p in params.items()}
    batch = records[0].shape[0] if records else 0
    if batch == 0:
        return totals, ClipStats(units=0, clipped_fraction=0.0, mean_norm=0.0, mean_loss=float("nan"))

    def loss_of(parameters: dict[str, torch.Tensor], *record: torch.Tensor) -> torch.Tensor:
        def call(*inputs: torch.Tensor) -> torch.Tensor:
            output: torch.Tensor = functional_call(module, (parameters, buffers), inputs)
            return output
        return per_record_loss(call, *record)

    per_record_grad = vmap(grad_and_value(loss_of), in_dims=(None,) + (0,) * len(records), randomness="different")
    norms: list[torch.Tensor] = []
    loss_total = 0.0
    for chunk, chunk_units in _chunks(batch, units, microbatch_size, records[0].device):
        grads, losses = per_record_grad(params, *(r[chunk] for r in records))
        loss_total += float(losses.sum())
        if chunk_units is not None:
            grads = {name: _sum_by_unit(g, chunk_units) for name, g in grads.items()}
        flat_norms = torch.sqrt(sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads.values()))
        scale = (clip_norm / (flat_norms + 1e-12)).clamp(max=1.0)
        for name, g in grads.items():
            totals[name] += torch.einsum("i,i...->...", scale, g)
        norms.append(flat_norms)
    all_norms = torch.cat(norms)
    stats = ClipStats(units=int(all_norms.numel()),
                      clipped_fraction=float((all_norms > clip_norm).float().mean()),
                      mean_norm=float(all_norms.mean()), mean_loss=loss_total / batch)
    return totals, stats


def add_noise_and_average(summed: dict[str, torch.Tensor], *, noise_multiplier: float, clip_norm: float,
                          expected_batch_size: float, stream: SecretStream) -> dict[str, torch.Tensor]:
    """The Gaussian mechanism's release: ``(sum + N(0, (sigma C)^2 I)) / expected batch size``.

    The noise comes from the run's secret noise stream (:mod:`dpsad_core.privacy.randomness`).
    Dividing by the expected (not the realised) batch size keeps the sensitivity fixed (Opacus does
    the same under Poisson sampling).
    """
    std = noise_multiplier * clip_norm
    return {name: (total + stream.noise_like(total, std)) / expected_batch_size for name, total in summed.items()}


def apply_gradients(module: nn.Module, gradients: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
    for name, param in module.named_parameters():
        if name in gradients:
            param.grad = gradients[name].to(param.dtype)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _sum_by_unit(per_record: torch.Tensor, unit_index: torch.Tensor) -> torch.Tensor:
    count = int(unit_index.max()) + 1
    out = torch.zeros((count, *per_record.shape[1:]), dtype=per_record.dtype, device=per_record.device)
    return out.index_add_(0, unit_index, per_record)


def _chunks(batch: int, units: torch.Tensor | None, size: int, device: torch.device
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (record indices, local unit index or None), never splitting a unit across chunks."""
    if units is None:
        for start in range(0, batch, size):
            yield torch.arange(start, min(start + size, batch), device=device), None
        return
    order = torch.argsort(units, stable=True)
    sorted_units = units[order]
    boundaries = torch.nonzero(sorted_units[1:] != sorted_units[:-1]).squeeze(1) + 1
    starts = [0] + boundaries.tolist()
    ends = boundaries.tolist() + [batch]
    current: list[tuple[int, int]] = []
    current_len = 0
    for start, end in zip(starts, ends, strict=True):
        if current and current_len + (end - start) > size:
            yield _unit_chunk(order, current)
            current, current_len = [], 0
        current.append((start, end))
        current_len += end - start
    if current:
        yield _unit_chunk(order, current)


def _unit_chunk(order: torch.Tensor, spans: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.cat([torch.arange(s, e, device=order.device) for s, e in spans])
    local = torch.repeat_interleave(torch.arange(len(spans), device=order.device),
                                    torch.tensor([e - s for s, e in spans], device=order.device))
    return order[positions], local
