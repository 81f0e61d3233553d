"""Samplers: ancestral DDPM (Ho et al. 2020, Alg. 2) and DDIM (Song et al. 2021, eq. 12).

A sampler takes any ``model(x_t, t, y) -> eps`` and returns images in [-1, 1]. Its randomness comes
from ``noise`` (a callable returning fresh standard normal draws shaped like the batch: the start and
each ancestral step), or else from ``generator``. Classifier-free
guidance (Ho & Salimans 2022) mixes the conditional and the "no label" prediction:
``eps = (1 + w) eps(x, y) - w eps(x, null)``; w = 0 turns it off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from dpsad_core.diffusion.schedule import DiffusionSchedule
from dpsad_core.errors import ConfigError

EpsModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
SamplerKind = Literal["ddim", "ddpm"]
Noise = Callable[[], torch.Tensor]


def _draw(noise: Noise | None, generator: torch.Generator | None, shape: tuple[int, ...],
          device: torch.device) -> torch.Tensor:
    if noise is not None:
        return noise()
    return torch.randn(shape, generator=generator, device=device)


def guided_eps(model: EpsModel, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, *,
               null_label: int, guidance: float) -> torch.Tensor:
    if guidance == 0.0:
        return model(x, t, labels)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, torch.full_like(labels, null_label)]))
    conditional, unconditional = both.chunk(2)
    return (1.0 + guidance) * conditional - guidance * unconditional


def ddim_timesteps(schedule: DiffusionSchedule, steps: int) -> list[int]:
    """DDIM's ``steps`` evenly spaced time steps from T-1 down to 0 (the teacher's sampler)."""
    if not 1 <= steps <= schedule.num_steps:
        raise ConfigError(f"sampling steps must be in 1..{schedule.num_steps}", field="sample_steps", value=steps)
    return torch.linspace(schedule.num_steps - 1, 0, steps).round().long().tolist()


def predicted_x0(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """The x_0 that ``eps`` implies at ``x`` (inverting eq. 4), clamped to the data range [-1, 1]."""
    return ((x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()).clamp(-1, 1)


def ddim_update(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor,
                abar_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (eta = 0): ``(x_prev, x0)``, with the predicted x0 clamped to [-1, 1].

    The step depends on the model only through the clamped x0, which is what a few-step student is
    trained to predict (dpsad_core/training/few_step.py).
    """
    x0 = predicted_x0(x, eps, abar_t)
    eps = (x - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
    return abar_prev.sqrt() * x0 + (1 - abar_prev).clamp(min=0).sqrt() * eps, x0


@torch.no_grad()
def ddim_sample(model: EpsModel, schedule: DiffusionSchedule, labels: torch.Tensor, *, shape: tuple[int, ...],
                steps: int = 25, eta: float = 0.0, guidance: float = 0.0, null_label: int = -1,
                generator: torch.Generator | None = None, noise: Noise | None = None,
                timesteps: list[int] | None = None) -> torch.Tensor:
    """DDIM with ``steps`` evenly spaced time steps; ``eta = 0`` is deterministic given the start noise.

    ``timesteps`` (decreasing) replaces the even spacing: a few-step student samples at the times it
    was trained on, the last one stepping straight to x_0.
    """
    timesteps = ddim_timesteps(schedule, steps) if timesteps is None else [int(t) for t in timesteps]
    if not timesteps or any(not 0 <= t < schedule.num_steps for t in timesteps) or sorted(timesteps,
                                                                                        reverse=True) != timesteps:
        raise ConfigError(f"sampling times must decrease within 0..{schedule.num_steps - 1}, got {timesteps}",
                          field="timesteps", value=timesteps)
    device = labels.device
    x = _draw(noise, generator, (labels.shape[0], *shape), device)
    abar = schedule.alphas_cumprod.to(device=device, dtype=torch.float32)
    for index, t in enumerate(timesteps):
        t_batch = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
        eps = guided_eps(model, x, t_batch, labels, null_label=null_label, guidance=guidance)
        abar_t = abar[t]
        abar_prev = abar[timesteps[index + 1]] if index + 1 < len(timesteps) else torch.tensor(1.0, device=device)
        if eta == 0:
            x, _ = ddim_update(x, eps, abar_t, abar_prev)
            continue
        x0 = predicted_x0(x, eps, abar_t)
        eps = (x - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
        sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).clamp(min=0).sqrt()
        x = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
        if index + 1 < len(timesteps):
            x = x + sigma * _draw(noise, generator, x.shape, device)
    return x.clamp(-1, 1)


@torch.no_grad()
def ddpm_sample(model: EpsModel, schedule: DiffusionSchedule, labels: torch.Tensor, *, shape: tuple[int, ...],
                guidance: float = 0.0, null_label: int = -1,
                generator: torch.Generator | None = None, noise: Noise | None = None) -> torch.Tensor:
    """Ancestral sampling through all T steps, with the posterior variance beta-tilde."""
    device = labels.device
    betas = schedule.betas.to(device=device, dtype=torch.float32)
    abar = schedule.alphas_cumprod.to(device=device, dtype=torch.float32)
    x = _draw(noise, generator, (labels.shape[0], *shape), device)
    for t in reversed(range(schedule.num_steps)):
        t_batch = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
        eps = guided_eps(model, x, t_batch, labels, null_label=null_label, guidance=guidance)
        abar_t = abar[t]
        abar_prev = abar[t - 1] if t > 0 else torch.tensor(1.0, device=device)
        x0 = predicted_x0(x, eps, abar_t)
        # Posterior mean of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 7).
        mean = (abar_prev.sqrt() * betas[t] / (1 - abar_t)) * x0 + ((1 - betas[t]).sqrt() * (1 - abar_prev) /
                                                                       (1 - abar_t)) * x
        if t > 0:
            variance = betas[t] * (1 - abar_prev) / (1 - abar_t)
            x = mean + variance.sqrt() * _draw(noise, generator, x.shape, device)
        else:
            x = mean
    return x.clamp(-1, 1)


def sample(model: EpsModel, schedule: DiffusionSchedule, labels: torch.Tensor, *, shape: tuple[int, ...],
           sampler: SamplerKind = "ddim", steps: int = 25, guidance: float = 0.0, null_label: int = -1,
           generator: torch.Generator | None = None, noise: Noise | None = None,
           timesteps: list[int] | None = None) -> torch.Tensor:
    """One entry point over both samplers (``timesteps``: DDIM's times, for a few-step student)."""
    if sampler == "ddim":
        return ddim_sample(model, schedule, labels, shape=shape, steps=steps, guidance=guidance,
                           null_label=null_label, generator=generator, noise=noise, timesteps=timesteps)
    if sampler == "ddpm":
        return ddpm_sample(model, schedule, labels, shape=shape, guidance=guidance, null_label=null_label,
                           generator=generator, noise=noise)
    raise ConfigError(f"unknown sampler {sampler!r}", field="sampler", value=sampler, remedy="use 'ddim' or 'ddpm'")
