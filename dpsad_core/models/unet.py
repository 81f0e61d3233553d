"""Class-conditional UNet that predicts the noise ``eps(x_t, t, y)`` (DDPM parameterisation)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dpsad_core.errors import ConfigError
from dpsad_core.models.layers import ConditionEmbedding, ResBlock, SelfAttention, group_norm, zero_init


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a UNet. ``channels[i]`` is the width at level i (level 0 = full resolution)."""

    image_channels: int
    resolution: int
    num_classes: int
    channels: tuple[int, ...] = (32, 64)
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = ()
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))
        if self.image_channels not in (1, 3):
            raise ConfigError("image_channels must be 1 or 3", field="image_channels", value=self.image_channels)
        if not self.channels or min(self.channels) < 4:
            raise ConfigError("channels must be a non-empty list of widths >= 4", field="channels",
                              value=self.channels)
        factor = 2 ** (len(self.channels) - 1)
        if self.resolution % factor:
            raise ConfigError(
                f"resolution {self.resolution} is not divisible by {factor}, which {len(self.channels)} UNet "
                "levels need", field="resolution", value=self.resolution,
                remedy="choose a resolution divisible by it (e.g. 8, 16, 28, 32) or fewer levels")
        if self.num_classes < 1:
            raise ConfigError("num_classes must be >= 1", field="num_classes", value=self.num_classes)
        if any(level >= len(self.channels) for level in self.attention_levels):
            raise ConfigError("attention level out of range", field="attention_levels", value=self.attention_levels)

    def to_dict(self) -> dict:
        return asdict(self)


class UNet(nn.Module):
    """A small DDPM UNet (Ho et al. 2020) with class conditioning added to the time embedding."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.channels
        emb_dim = 4 * widths[0]
        self.condition = ConditionEmbedding(widths[0], emb_dim, config.num_classes)
        self.stem = nn.Conv2d(config.image_channels, widths[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_widths = [widths[0]]
        current = widths[0]
        for level, width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                self.down_blocks.append(self._block(current, width, emb_dim, level))
                current = width
                skip_widths.append(current)
            if level < len(widths) - 1:
                self.downsamplers.append(nn.Conv2d(current, current, 3, stride=2, padding=1))
                skip_widths.append(current)

        self.mid = nn.ModuleList([ResBlock(current, current, emb_dim, config.dropout), SelfAttention(current),
                                  ResBlock(current, current, emb_dim, config.dropout)])

        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            for _ in range(config.blocks_per_level + 1):
                self.up_blocks.append(self._block(current + skip_widths.pop(), width, emb_dim, level))
                current = width
            if level > 0:
                self.upsamplers.append(nn.Conv2d(current, current, 3, padding=1))

        self.out_norm = group_norm(current)
        self.out_conv = zero_init(nn.Conv2d(current, config.image_channels, 3, padding=1))

    def _block(self, in_ch: int, out_ch: int, emb_dim: int, level: int) -> nn.Module:
        block = ResBlock(in_ch, out_ch, emb_dim, self.config.dropout)
        if level in self.config.attention_levels:
            return _Sequential(block, SelfAttention(out_ch))
        return block

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb = self.condition(timesteps, labels)
        h = self.stem(x)
        skips = [h]
        blocks = iter(self.down_blocks)
        levels = len(self.config.channels)
        for level in range(levels):
            for _ in range(self.config.blocks_per_level):
                h = next(blocks)(h, emb)
                skips.append(h)
            if level < levels - 1:
                h = self.downsamplers[level](h)
                skips.append(h)
        for module in self.mid:
            h = module(h, emb)
        blocks = iter(self.up_blocks)
        for index, level in enumerate(reversed(range(levels))):
            for _ in range(self.config.blocks_per_level + 1):
                h = next(blocks)(torch.cat([h, skips.pop()], dim=1), emb)
            if level > 0:
                h = self.upsamplers[index](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))


class _Sequential(nn.Module):
    """A ResBlock followed by attention, both taking the conditioning vector."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, emb)
        return x
