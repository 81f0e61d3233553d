"""DDPM noise schedules (pure tensor math, no state beyond the schedule itself).

Forward process (Ho et al. 2020, eq. 4): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.
Time steps are 0-based here: ``t`` in ``0..T-1`` corresponds to the paper's ``t = 1..T``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from dpsad_core.errors import ConfigError

ScheduleKind = Literal["linear", "cosine"]


class DiffusionSchedule:
    """Betas and cumulative alphas for ``num_steps`` steps.

    ``linear`` is DDPM's schedule, rescaled so that any T spans the same noise range as T = 1000
    (Nichol & Dhariwal 2021, eq. 17 discussion); ``cosine`` is theirs too (eq. 17).
    """

    def __init__(self, num_steps: int = 1000, kind: ScheduleKind = "linear") -> None:
        if num_steps < 2:
            raise ConfigError("diffusion_steps must be >= 2", field="diffusion_steps", value=num_steps)
        if kind == "linear":
            scale = 1000.0 / num_steps
            betas = torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)
        elif kind == "cosine":
            s = 0.008
            steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            raise ConfigError(f"unknown schedule {kind!r}", field="schedule", value=kind,
                              remedy="use 'linear' or 'cosine'")
        self.num_steps = num_steps
        self.kind = kind
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)

    def coefficients(self, timesteps: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``sqrt(abar_t)`` and ``sqrt(1 - abar_t)`` broadcastable against ``like``."""
        abar = self.alphas_cumprod.to(device=like.device)[timesteps.long()].to(like.dtype)
        shape = (-1,) + (1,) * (like.dim() - 1)
        return abar.sqrt().reshape(shape), (1 - abar).sqrt().reshape(shape)

    def q_sample(self, x0: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw ``x_t`` given ``x_0`` (eq. 4)."""
        signal, sigma = self.coefficients(timesteps, x0)
        return signal * x0 + sigma * noise
