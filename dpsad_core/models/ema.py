"""Exponential moving average of a model's parameters (the weights we sample from)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``shadow = beta_n * shadow + (1 - beta_n) * params`` with ``beta_n = min(decay, (1 - 1/n)^(power + 1))``.

    The power-function profile (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
    Diffusion Models", eq. 3) averages over a fixed *fraction* of the run so far, whatever its length:
    with power 3 about the last quarter. Short DP runs need that: the noise that DP-SGD adds to each
    update averages out over many iterates, and a fixed decay of 0.999 would still be dominated by the
    random initialisation after a few hundred steps.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9995, power: float = 3.0) -> None:
        self.decay = decay
        self.power = power
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1.0 - 1.0 / n) ** (self.power + 1.0)) if n > 1 else 0.0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        beta = self.current_decay()
        for shadow, param in zip(self.model.parameters(), model.parameters(), strict=True):
            shadow.lerp_(param.detach(), 1.0 - beta)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "power": self.power, "num_updates": self.num_updates,
                "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.power, self.num_updates = state["decay"], state["power"], state["num_updates"]
        self.model.load_state_dict(state["model"])
