"""The few-step student: a UNet that predicts ``v`` and answers like an eps-model (docs/method.md §1.9).

``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (Salimans & Ho 2022, "Progressive Distillation for
Fast Sampling of Diffusion Models", §4 and appendix D). A student that jumps from pure noise to an
image in one step must predict x_0 well where ``abar_t`` is tiny; an eps-prediction divides its error
by ``sqrt(abar_t)`` there (12x at this project's T), a v-prediction does not. The wrapper converts v to
eps, so every sampler, the export and the evaluation use the student like any released model.
"""

from __future__ import annotations

import torch
from torch import nn

from dpsad_core.models.unet import UNet, UNetConfig


class VPredictionStudent(nn.Module):
    """``forward(x_t, t, y) -> eps`` from a UNet whose output is read as v."""

    alphas_cumprod: torch.Tensor  # a buffer (registered below)

    def __init__(self, config: UNetConfig, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.unet = UNet(config)
        self.config = config
        # A buffer so the conversion moves with the model to its device and is saved with it.
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().to(torch.float32).clone())

    def _coefficients(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        abar = self.alphas_cumprod[t.long()].reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return abar.sqrt(), (1 - abar).sqrt()

    def x0(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The student's prediction of the clean image (what its DDIM step lands on)."""
        signal, sigma = self._coefficients(x_t, t)
        return signal * x_t - sigma * self.unet(x_t, t, labels)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        signal, sigma = self._coefficients(x_t, t)
        return signal * self.unet(x_t, t, labels) + sigma * x_t
