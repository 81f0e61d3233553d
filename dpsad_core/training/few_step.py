"""Few-step distillation of a released teacher: free post-processing (docs/method.md §1.9).

The teacher has been trained with DP-SGD (or on declared public data): its weights are a release
whose privacy cost is already counted. Everything below is a function of those weights and of public
randomness (the run's ``--seed``) only: the private images are not an argument of any function here,
so training the student costs no privacy, however many steps it takes.

What the student learns (and why this distillation):
- A *pool* of the teacher's own DDIM trajectories: start noise, then the teacher's state at each of
  the student's k times, and its final image. Sampling the teacher is the only way the private data
  reaches the student, through the released weights.
- Progressive distillation's target (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling
  of Diffusion Models", §3 eq. 8), taken over many teacher steps at once as in Luhman & Luhman 2021
  ("Knowledge Distillation in Iterative Generative Models"): from the teacher's state at time
  ``tau_i``, the x_0 that makes one DDIM step land exactly on the teacher's state at ``tau_{i+1}``
  (or on its final image). One round reaches 1-4 steps; repeated halving would need log2(25) rounds
  of the same cost, and consistency distillation (Song et al. 2023) needs many more steps to converge
  than a CPU run can give. The student predicts v (models/student.py).
- DP-SAD's adversarial term (docs/method.md §1.3), as in adversarial diffusion distillation (Sauer et
  al. 2023, "Adversarial Diffusion Distillation"): the discriminator sees the student's input and a
  clean prediction, the teacher's (the target) or the student's, and the student is also trained to
  fool it. Averaging an ambiguous target makes a regression blurry; the adversarial term pushes
  toward a sharp image instead. ``adversarial_weight = 0`` is the plain regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from dpsad_core.diffusion import DiffusionSchedule
from dpsad_core.diffusion.samplers import ddim_timesteps, ddim_update, guided_eps

if TYPE_CHECKING:
    from dpsad_core.models import VPredictionStudent

#: The pool's start noise comes from ``--seed`` plus this offset (public randomness, like sample grids).
POOL_SEED_OFFSET = 5


def student_timesteps(num_steps: int, sample_steps: int) -> list[int]:
    """``sample_steps`` evenly spaced times from T-1 down; the last step goes straight to x_0.

    (DDIM's own grid ends at t = 0, where a step barely changes the image: a few-step sampler cannot
    afford to spend one of its steps there.)
    """
    return [round((num_steps - 1) * (sample_steps - i) / sample_steps) for i in range(sample_steps)]


@dataclass
class TeacherPool:
    """The teacher's trajectories at the student's times (public: a function of the released teacher).

    ``states[:, i]`` is the teacher's x at ``timesteps[i]``; ``targets[:, i]`` the x_0 the student must
    predict there. Everything stays on the CPU; batches move to the training device.
    """

    labels: torch.Tensor    # M
    states: torch.Tensor    # M x k x C x H x W
    targets: torch.Tensor   # M x k x C x H x W
    timesteps: list[int]

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    def state_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "states": self.states, "targets": self.targets, "timesteps": self.timesteps}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TeacherPool:
        return cls(state["labels"], state["states"], state["targets"], list(state["timesteps"]))

    @classmethod
    def concatenate(cls, parts: list[TeacherPool]) -> TeacherPool:
        return cls(torch.cat([p.labels for p in parts]), torch.cat([p.states for p in parts]),
                   torch.cat([p.targets for p in parts]), parts[0].timesteps)


def pool_labels(num_classes: int, size: int) -> torch.Tensor:
    """Balanced class labels (the class list is public by declaration)."""
    return torch.arange(size) % num_classes


@torch.no_grad()
def teacher_trajectories(teacher: nn.Module, schedule: DiffusionSchedule, labels: torch.Tensor, *,
                         image_shape: tuple[int, ...], teacher_steps: int, timesteps: list[int],
                         generator: torch.Generator, guidance: float = 0.0, null_label: int = -1) -> TeacherPool:
    """One chunk of the pool: the teacher's DDIM (its ``teacher_steps`` grid plus the student's times)."""
    device = labels.device
    grid = sorted(set(ddim_timesteps(schedule, teacher_steps)) | set(timesteps), reverse=True)
    abar = schedule.alphas_cumprod.to(device=device, dtype=torch.float32)
    x = torch.randn((labels.shape[0], *image_shape), generator=generator, device=device)
    states = []
    for index, t in enumerate(grid):
        if t in timesteps:
            states.append(x)
        t_batch = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
        eps = guided_eps(teacher, x, t_batch, labels, null_label=null_label, guidance=guidance)
        abar_prev = abar[grid[index + 1]] if index + 1 < len(grid) else torch.tensor(1.0, device=device)
        x, _ = ddim_update(x, eps, abar[t], abar_prev)
    landings = states[1:] + [x.clamp(-1, 1)]
    targets = [_landing_x0(state, landing, abar[t], abar[timesteps[i + 1]] if i + 1 < len(timesteps) else None)
               for i, (t, state, landing) in enumerate(zip(timesteps, states, landings, strict=True))]
    return TeacherPool(labels.cpu(), torch.stack(states, 1).cpu(), torch.stack(targets, 1).cpu(), list(timesteps))


def _landing_x0(x: torch.Tensor, landing: torch.Tensor, abar_t: torch.Tensor,
                abar_next: torch.Tensor | None) -> torch.Tensor:
    """The x_0 whose DDIM step from ``x`` at ``abar_t`` lands on ``landing`` (Salimans & Ho 2022, eq. 8).

    ``x_next = sqrt(abar') x0 + sqrt(1 - abar') (x - sqrt(abar) x0) / sqrt(1 - abar)``, solved for x0;
    the last step lands on x_0 itself (``abar_next`` None, i.e. abar' = 1).
    """
    if abar_next is None:
        return landing
    ratio = ((1 - abar_next) / (1 - abar_t)).sqrt()
    return (landing - ratio * x) / (abar_next.sqrt() - ratio * abar_t.sqrt())


@torch.no_grad()
def diffused_states(teacher: nn.Module, schedule: DiffusionSchedule, pool: TeacherPool, rows: torch.Tensor,
                    segment: torch.Tensor, *, teacher_steps: int, generator: torch.Generator,
                    device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh (state, target) pairs: a teacher sample diffused to a student time, then the teacher's own steps.

    The stochastic single step of DP-SAD (docs/method.md §1.3): ``x_tau`` comes from a clean image by the
    forward process with fresh noise, here the teacher's final image of pool entry ``rows`` (a release,
    never a private record), so the student sees new states at every step rather than the pool's fixed
    trajectories. The target is what the teacher's DDIM makes of that state over the segment down to the
    next student time, as for the pool (:func:`_landing_x0`); it costs the segment's teacher steps.
    """
    times = pool.timesteps
    x0 = pool.targets[rows, len(times) - 1].to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    abar = schedule.alphas_cumprod.to(device=device, dtype=torch.float32)
    scale = abar[torch.as_tensor(times, dtype=torch.long)[segment].to(device)].reshape(-1, *([1] * (x0.dim() - 1)))
    states = scale.sqrt() * x0 + (1 - scale).sqrt() * noise
    targets = segment_targets(teacher, schedule, states, segment.to(device), pool.labels[rows].to(device),
                              timesteps=times, teacher_steps=teacher_steps)
    return states, targets


@torch.no_grad()
def segment_targets(teacher: nn.Module, schedule: DiffusionSchedule, states: torch.Tensor, segment: torch.Tensor,
                    labels: torch.Tensor, *, timesteps: list[int], teacher_steps: int) -> torch.Tensor:
    """The x_0 targets of ``states`` (row r at student time ``timesteps[segment[r]]``): the teacher's DDIM
    (its ``teacher_steps`` grid, as in :func:`teacher_trajectories`) run down to the next student time."""
    device = states.device
    abar = schedule.alphas_cumprod.to(device=device, dtype=torch.float32)
    grid = sorted(set(ddim_timesteps(schedule, teacher_steps)) | set(timesteps), reverse=True)
    targets = torch.empty_like(states)
    for index, start in enumerate(timesteps):
        chosen = (segment == index).nonzero().flatten()
        if chosen.numel() == 0:
            continue
        end = timesteps[index + 1] if index + 1 < len(timesteps) else None
        x = states[chosen]
        steps = [g for g in grid if g <= start and (end is None or g > end)]
        for position, g in enumerate(steps):
            following = steps[position + 1] if position + 1 < len(steps) else end
            abar_next = abar[following] if following is not None else torch.tensor(1.0, device=device)
            t_batch = torch.full((x.shape[0],), g, device=device, dtype=torch.long)
            x, _ = ddim_update(x, teacher(x, t_batch, labels[chosen]), abar[g], abar_next)
        landing = x if end is not None else x.clamp(-1, 1)
        targets[chosen] = _landing_x0(states[chosen], landing, abar[start], abar[end] if end is not None else None)
    return targets


def few_step_update(*, student: VPredictionStudent, discriminator: nn.Module | None,
                    student_optimizer: torch.optim.Optimizer,
                    disc_optimizer: torch.optim.Optimizer | None, pool: TeacherPool, schedule: DiffusionSchedule,
                    batch_size: int, adversarial_weight: float, generator: torch.Generator,
                    device: torch.device | str, teacher: nn.Module | None = None,
                    teacher_steps: int = 25) -> dict[str, float]:
    """One step: the discriminator, then the student, on a batch of (pool entry, student time) pairs.

    With ``teacher``, the states are fresh (:func:`diffused_states`) instead of the pool's trajectories.
    """
    rows = torch.randint(0, pool.size, (batch_size,), generator=generator)
    segment = torch.randint(0, len(pool.timesteps), (batch_size,), generator=generator)
    if teacher is None:
        x = pool.states[rows, segment].to(device)
        target = pool.targets[rows, segment].to(device)
    else:
        x, target = diffused_states(teacher, schedule, pool, rows, segment, teacher_steps=teacher_steps,
                                    generator=generator, device=device)
    labels = pool.labels[rows].to(device)
    t = torch.as_tensor(pool.timesteps, dtype=torch.long)[segment].to(device)
    abar = schedule.alphas_cumprod.to(device=device, dtype=torch.float32)[t]
    # Truncated-SNR weighting (Salimans & Ho 2022, §4): an x_0 error costs more where the noise is small.
    weight = torch.clamp(abar / (1 - abar), min=1.0).reshape(-1, *([1] * (x.dim() - 1)))
    metrics: dict[str, float] = {}
    if adversarial_weight > 0 and discriminator is not None and disc_optimizer is not None:
        with torch.no_grad():
            fake = student.x0(x, t, labels)
        disc_loss = F.softplus(-discriminator(x, target, t, labels)).mean() + F.softplus(
            discriminator(x, fake, t, labels)).mean()
        disc_optimizer.zero_grad(set_to_none=True)
        disc_loss.backward()
        disc_optimizer.step()
        metrics["disc_loss"] = float(disc_loss.detach())
    prediction = student.x0(x, t, labels)
    distillation = (weight * (prediction - target).pow(2)).mean()
    loss = distillation
    if adversarial_weight > 0 and discriminator is not None and disc_optimizer is not None:
        for parameter in discriminator.parameters():
            parameter.requires_grad_(False)
        fool = F.softplus(-discriminator(x, prediction, t, labels)).mean()
        for parameter in discriminator.parameters():
            parameter.requires_grad_(True)
        loss = distillation + adversarial_weight * fool
        metrics["student_adversarial_loss"] = float(fool.detach())
    student_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    student_optimizer.step()
    student_optimizer.zero_grad(set_to_none=True)
    metrics.update(student_loss=float(loss.detach()), student_distillation_loss=float(distillation.detach()))
    return metrics
