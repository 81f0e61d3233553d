"""One optimisation step of each phase kind, private or not.

``denoise_step`` trains a teacher or the DPDM model; ``distill_step`` trains the discriminator and
then the student from the same Poisson batch (one joint mechanism, docs/method.md §1.7).

A private step is driven by its :class:`~dpsad_core.privacy.Mechanism`: the sample rate, and each
release's noise multiplier and clip norm, are read from the very object the accountant then
composes and the ledger records (``mechanism=None``: a step without privacy protection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dpsad_core.diffusion import DiffusionSchedule
from dpsad_core.distributed import SOLO, World, shard_positions, sum_across, sum_module_gradients
from dpsad_core.privacy import Mechanism
from dpsad_core.privacy.randomness import SecretStream
from dpsad_core.training.dp_sgd import (
    PerRecordLoss,
    add_noise_and_average,
    apply_gradients,
    clipped_gradient_sum,
    poisson_sample,
)
from dpsad_core.training.losses import Call, denoising_loss, discriminator_loss, make_student_loss
from dpsad_core.training.planner import DISCRIMINATOR, STUDENT


@dataclass
class DataTensors:
    """A dataset on the training device, images scaled to [-1, 1]."""

    images: torch.Tensor
    labels: torch.Tensor
    unit_of_record: torch.Tensor   # on CPU, for sampling
    num_units: int
    has_units: bool                # True when the unit is a patient (sum records before clipping)


@dataclass
class NoisyBatch:
    x_t: torch.Tensor      # B x K x C x H x W
    t: torch.Tensor        # B x K
    labels: torch.Tensor   # B x K (label dropout applied)
    noise: torch.Tensor    # B x K x C x H x W
    units: torch.Tensor | None
    total: int = -1        # records in the whole batch across workers (-1: this batch is the whole batch)

    def __post_init__(self) -> None:
        if self.total < 0:
            self.total = self.x_t.shape[0]

    @property
    def size(self) -> int:
        return self.x_t.shape[0]

    def flat(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.reshape(-1, *tensor.shape[2:])


def draw_batch(data: DataTensors, *, sample_rate: float, schedule: DiffusionSchedule, draws_per_record: int,
               label_dropout: float, null_label: int, sampling: SecretStream,
               loss_generator: torch.Generator, world: World = SOLO) -> NoisyBatch:
    """A Poisson batch with K draws of (t, eps) per record and x_t formed from each draw.

    ``sampling`` is the run's secret sampling stream. ``loss_generator`` draws the loss's time steps,
    noise and label dropout; it is seeded from the secret key too, because these draws are assigned to
    records by their position in the batch: known draws would let one added record shift every later
    record's draw, and the sum would move by more than one clipped contribution.

    With several workers (``world``), every worker draws the same subsample and the same loss
    randomness for the whole batch, then keeps its own units' records (never part of a unit).
    """
    index = poisson_sample(data.unit_of_record, data.num_units, sample_rate, sampling)
    index = index.to(data.images.device)
    x0 = data.images[index]
    batch, device = x0.shape[0], x0.device
    t = torch.randint(0, schedule.num_steps, (batch, draws_per_record), generator=loss_generator, device=device)
    noise = torch.randn((batch, draws_per_record, *x0.shape[1:]), generator=loss_generator, device=device)
    labels = data.labels[index][:, None].expand(batch, draws_per_record).clone()
    if label_dropout > 0:
        drop = torch.rand((batch, draws_per_record), generator=loss_generator, device=device) < label_dropout
        labels[drop] = null_label
    if world.distributed:
        mine = shard_positions(data.unit_of_record[index.cpu()], world)
        index, x0, t, noise, labels = (v[mine.to(v.device)] for v in (index, x0, t, noise, labels))
    x0_k = x0[:, None].expand(x0.shape[0], draws_per_record, *x0.shape[1:])
    x_t = schedule.q_sample(x0_k.reshape(-1, *x0.shape[1:]), t.reshape(-1), noise.reshape(-1, *x0.shape[1:]))
    units = data.unit_of_record[index.cpu()].to(device) if data.has_units else None
    return NoisyBatch(x_t=x_t.reshape(noise.shape), t=t, labels=labels, noise=noise, units=units, total=batch)


def _private_update(module: nn.Module, optimizer: torch.optim.Optimizer, loss: PerRecordLoss,
                    records: Sequence[torch.Tensor], *,
                    noise: tuple[float, float], expected_batch_size: float, units: torch.Tensor | None,
                    microbatch_size: int,
                    stream: SecretStream) -> dict[str, float]:
    noise_multiplier, clip_norm = noise
    summed, stats = clipped_gradient_sum(module, loss, records, clip_norm=clip_norm, units=units,
                                         microbatch_size=microbatch_size)
    summed = sum_across(summed)  # several workers: the clipped sum of the whole batch, before the noise
    gradients = add_noise_and_average(summed, noise_multiplier=noise_multiplier, clip_norm=clip_norm,
                                      expected_batch_size=expected_batch_size, stream=stream)
    apply_gradients(module, gradients, optimizer)
    return {"loss": stats.mean_loss, "clipped_fraction": stats.clipped_fraction, "grad_norm": stats.mean_norm,
            "batch": float(stats.units)}


def _plain_update(module: nn.Module, optimizer: torch.optim.Optimizer, loss_value: torch.Tensor | None,
                  batch: NoisyBatch) -> dict[str, float]:
    """A step without noise; with several workers, the gradient of the whole batch's mean loss.

    ``loss_value`` is this worker's mean (None when it has no records); weighting it by its share of
    the batch and summing across workers gives the one-process gradient.
    """
    optimizer.zero_grad(set_to_none=True)
    if loss_value is not None:
        (loss_value * (batch.size / batch.total)).backward()
    sum_module_gradients(module)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": float(loss_value.detach()) if loss_value is not None else float("nan")}


def denoise_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: NoisyBatch, *,
                 mechanism: Mechanism | None, expected_batch_size: float, microbatch_size: int,
                 stream: SecretStream) -> dict[str, float]:
    if mechanism is not None:
        return _private_update(model, optimizer, denoising_loss, (batch.x_t, batch.t, batch.labels, batch.noise),
                               noise=_noise_of(mechanism, mechanism.part), expected_batch_size=expected_batch_size,
                               units=batch.units, microbatch_size=microbatch_size, stream=stream)
    if batch.total == 0:
        return {"loss": float("nan")}
    loss = denoising_loss(model, batch.flat(batch.x_t), batch.flat(batch.t), batch.flat(batch.labels),
                          batch.flat(batch.noise)) if batch.size else None
    return _plain_update(model, optimizer, loss, batch)


def distill_step(*, teacher: nn.Module, student: nn.Module, discriminator: nn.Module,
                 student_optimizer: torch.optim.Optimizer, disc_optimizer: torch.optim.Optimizer,
                 batch: NoisyBatch, mechanism: Mechanism, expected_batch_size: float, adversarial_weight: float,
                 distillation_weight: float, microbatch_size: int, stream: SecretStream) -> dict[str, float]:
    """Discriminator update, then student update, both from ``batch`` (one Poisson subsample).

    The discriminator's update is noised when ``mechanism`` names it (``dpsad-paper``'s does not).
    """
    flat_x, flat_t, flat_y = batch.flat(batch.x_t), batch.flat(batch.t), batch.flat(batch.labels)
    with torch.no_grad():
        teacher_eps = teacher(flat_x, flat_t, flat_y).reshape(batch.noise.shape) if batch.size else batch.noise
        student_eps = student(flat_x, flat_t, flat_y).reshape(batch.noise.shape) if batch.size else batch.noise
    disc_records = (batch.x_t, batch.t, batch.labels, teacher_eps, student_eps)
    disc_noise = mechanism.noise_of(DISCRIMINATOR)
    if disc_noise is not None:
        disc_metrics = _private_update(discriminator, disc_optimizer, discriminator_loss, disc_records,
                                       noise=disc_noise, expected_batch_size=expected_batch_size, units=batch.units,
                                       microbatch_size=microbatch_size, stream=stream)
    elif batch.total:
        # dpsad-paper reproduction: the discriminator trains on private inputs without protection.
        disc_loss = discriminator_loss(discriminator, flat_x, flat_t, flat_y, batch.flat(teacher_eps),
                                       batch.flat(student_eps)) if batch.size else None
        disc_metrics = _plain_update(discriminator, disc_optimizer, disc_loss, batch)
    else:
        disc_metrics = {"loss": float("nan")}

    disc_params = {name: p.detach() for name, p in discriminator.named_parameters()}
    disc_buffers = dict(discriminator.named_buffers())

    def disc_call(*inputs: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = functional_call(discriminator, (disc_params, disc_buffers), inputs)
        return output

    loss_terms = _student_loss_terms(disc_call, batch, teacher_eps, student_eps, distillation_weight)
    student_metrics = _private_update(
        student, student_optimizer, make_student_loss(disc_call, adversarial_weight, distillation_weight),
        (batch.x_t, batch.t, batch.labels, batch.noise, teacher_eps), noise=_noise_of(mechanism, STUDENT),
        expected_batch_size=expected_batch_size, units=batch.units, microbatch_size=microbatch_size, stream=stream)
    metrics = {f"student_{k}": v for k, v in student_metrics.items()}
    metrics.update(loss_terms)
    metrics.update({f"disc_{k}": v for k, v in disc_metrics.items() if k != "batch"})
    return metrics


def _noise_of(mechanism: Mechanism, part: str) -> tuple[float, float]:
    noise = mechanism.noise_of(part)
    if noise is None:  # pragma: no cover - the planner always noises the released model
        raise ValueError(f"mechanism {mechanism.part!r} adds no noise to {part!r}")
    return noise


def _student_loss_terms(disc_call: Call, batch: NoisyBatch, teacher_eps: torch.Tensor, student_eps: torch.Tensor,
                        distillation_weight: float) -> dict[str, float]:
    """Batch means of the two terms of the student's loss, at the weights its update starts from.

    For monitoring only (the metrics log stays local): ``student_loss`` is
    ``student_distillation_loss + adversarial_weight * student_adversarial_loss``.
    """
    if not batch.size:
        return {"student_distillation_loss": float("nan"), "student_adversarial_loss": float("nan")}
    with torch.no_grad():
        distillation = (distillation_weight * (teacher_eps - student_eps).pow(2).flatten(2).mean(-1)
                        + (batch.noise - student_eps).pow(2).flatten(2).mean(-1))
        logits = disc_call(batch.flat(batch.x_t), batch.flat(student_eps), batch.flat(batch.t),
                           batch.flat(batch.labels))
        adversarial = F.softplus(-logits)
    return {"student_distillation_loss": float(distillation.mean()),
            "student_adversarial_loss": float(adversarial.mean())}
