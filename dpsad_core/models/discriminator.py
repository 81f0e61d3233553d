"""The DP-SAD discriminator ``D_phi(x_t, eps_out, t, y)`` (docs/method.md §1.1).

It sees the noisy input and one model's noise prediction, concatenated along channels, with the time
step and the class, and returns one logit: "this output came from the teacher".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dpsad_core.errors import ConfigError
from dpsad_core.models.layers import ConditionEmbedding, ResBlock, group_norm


@dataclass(frozen=True)
class DiscriminatorConfig:
    image_channels: int
    num_classes: int
    channels: tuple[int, ...] = (32, 64)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or min(self.channels) < 4:
            raise ConfigError("discriminator channels must be widths >= 4", field="disc_channels",
                              value=self.channels)

    def to_dict(self) -> dict:
        return asdict(self)


class Discriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.channels
        emb_dim = 4 * widths[0]
        self.condition = ConditionEmbedding(widths[0], emb_dim, config.num_classes)
        self.stem = nn.Conv2d(2 * config.image_channels, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        current = widths[0]
        for width in widths:
            self.blocks.append(ResBlock(current, width, emb_dim))
            self.downsamplers.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
            current = width
        self.out_norm = group_norm(current)
        self.head = nn.Linear(current, 1)

    def forward(self, x_t: torch.Tensor, eps: torch.Tensor, timesteps: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        emb = self.condition(timesteps, labels)
        h = self.stem(torch.cat([x_t, eps], dim=1))
        for block, down in zip(self.blocks, self.downsamplers, strict=True):
            h = down(block(h, emb))
        h = F.silu(self.out_norm(h)).mean(dim=(2, 3))
        return self.head(h).squeeze(-1)
