"""The retrieval-augmented diffusion model: a UNet conditioned by cross-attention on a set of embeddings.

Blattmann et al. 2022 (RDM) condition a diffusion model on the CLIP embeddings of ``k`` retrieved
neighbours through cross-attention; DP-RDM (Lebensold et al. 2024) replaces the set by the noisy mean
of the private neighbours (a set of one) and trains on noisy aggregates so the model accepts it.

The context is a set ``(batch, set_size, context_dim)``: each element is projected to a token that the
feature maps attend to at every level (queries from the image, keys and values from the tokens), and
the tokens' mean is also added to the time embedding so that the global appearance (the class) reaches
every residual block. A learned "null" token replaces the whole set for classifier-free guidance
(Ho & Salimans 2022). Built from the engine's layers (:mod:`dpsad_core.models.layers`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dpsad_core.errors import ConfigError
from dpsad_core.models.layers import ResBlock, SelfAttention, group_norm, timestep_embedding, zero_init

__all__ = ["CrossAttention", "RdmConfig", "RetrievalUNet"]


@dataclass(frozen=True)
class RdmConfig:
    """Shape of the retrieval-conditioned UNet; ``channels[i]`` is the width at level ``i``."""

    image_channels: int
    resolution: int
    context_dim: int
    channels: tuple[int, ...] = (32, 64)
    blocks_per_level: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.image_channels not in (1, 3):
            raise ConfigError("image_channels must be 1 or 3", field="image_channels", value=self.image_channels)
        if not self.channels or min(self.channels) < 4:
            raise ConfigError("channels must be widths >= 4", field="channels", value=self.channels)
        factor = 2 ** (len(self.channels) - 1)
        if self.resolution % factor:
            raise ConfigError(f"resolution {self.resolution} is not divisible by {factor}", field="resolution",
                              value=self.resolution,
                              remedy="choose a resolution such as 8, 16, 28 or 32, or fewer levels")
        if self.context_dim < 1:
            raise ConfigError("context_dim must be >= 1", field="context_dim", value=self.context_dim)

    def to_dict(self) -> dict:
        return asdict(self)


class CrossAttention(nn.Module):
    """Single-head attention from the feature map (queries) to the context tokens (keys, values)."""

    def __init__(self, channels: int, token_dim: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.query = nn.Conv2d(channels, channels, 1)
        self.key_value = nn.Linear(token_dim, 2 * channels)
        self.out = zero_init(nn.Conv2d(channels, channels, 1))  # starts as the identity, like the UNet's self-attention

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q = self.query(self.norm(x)).reshape(batch, channels, height * width).transpose(1, 2)
        k, v = self.key_value(tokens).chunk(2, dim=-1)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(channels), dim=-1)
        h = (weights @ v).transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.out(h)


class _Block(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, token_dim: int, dropout: float) -> None:
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, dropout)
        self.cross = CrossAttention(out_channels, token_dim)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.cross(self.res(x, emb), tokens)


class RetrievalUNet(nn.Module):
    """``eps(x_t, t, context)``: the DDPM UNet with the class embedding replaced by retrieved context."""

    def __init__(self, config: RdmConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.channels
        emb_dim = 4 * widths[0]
        token_dim = emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(widths[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.token_mlp = nn.Sequential(nn.Linear(config.context_dim, token_dim), nn.SiLU(),
                                       nn.Linear(token_dim, token_dim))
        self.null_token = nn.Parameter(torch.zeros(token_dim))
        self.pool_proj = nn.Linear(token_dim, emb_dim)
        self.stem = nn.Conv2d(config.image_channels, widths[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_widths = [widths[0]]
        current = widths[0]
        for level, width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                self.down_blocks.append(_Block(current, width, emb_dim, token_dim, config.dropout))
                current = width
                skip_widths.append(current)
            if level < len(widths) - 1:
                self.downsamplers.append(nn.Conv2d(current, current, 3, stride=2, padding=1))
                skip_widths.append(current)
        self.mid_res1 = ResBlock(current, current, emb_dim, config.dropout)
        self.mid_self = SelfAttention(current)
        self.mid_cross = CrossAttention(current, token_dim)
        self.mid_res2 = ResBlock(current, current, emb_dim, config.dropout)
        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(config.blocks_per_level + 1):
                self.up_blocks.append(_Block(current + skip_widths.pop(), widths[level], emb_dim, token_dim,
                                             config.dropout))
                current = widths[level]
            if level > 0:
                self.upsamplers.append(nn.Conv2d(current, current, 3, padding=1))
        self.out_norm = group_norm(current)
        self.out_conv = zero_init(nn.Conv2d(current, config.image_channels, 3, padding=1))

    def tokens(self, context: torch.Tensor, null: torch.Tensor | None = None) -> torch.Tensor:
        """Context ``(batch, set, dim)`` -> tokens; rows where ``null`` is True get the null token."""
        if context.dim() != 3 or context.shape[-1] != self.config.context_dim:
            raise ConfigError(f"context must have shape (batch, set, {self.config.context_dim}), got "
                              f"{tuple(context.shape)}", field="context", value=tuple(context.shape))
        tokens = self.token_mlp(context)
        if null is not None:
            tokens = torch.where(null[:, None, None], self.null_token.expand_as(tokens), tokens)
        return tokens

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                null: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.tokens(context, null)
        emb = self.time_mlp(timestep_embedding(timesteps, self.config.channels[0])) + self.pool_proj(tokens.mean(1))
        h = self.stem(x)
        skips = [h]
        blocks = iter(self.down_blocks)
        levels = len(self.config.channels)
        for level in range(levels):
            for _ in range(self.config.blocks_per_level):
                h = next(blocks)(h, emb, tokens)
                skips.append(h)
            if level < levels - 1:
                h = self.downsamplers[level](h)
                skips.append(h)
        h = self.mid_res2(self.mid_cross(self.mid_self(self.mid_res1(h, emb)), tokens), emb)
        blocks = iter(self.up_blocks)
        for index, level in enumerate(reversed(range(levels))):
            for _ in range(self.config.blocks_per_level + 1):
                h = next(blocks)(torch.cat([h, skips.pop()], dim=1), emb, tokens)
            if level > 0:
                h = self.upsamplers[index](F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))


class ContextTable(nn.Module):
    """Adapts a :class:`RetrievalUNet` to the engine's samplers, which pass integer labels.

    Label ``i`` selects row ``i`` of ``contexts``; label ``len(contexts)`` is the null context, so
    :func:`dpsad_core.diffusion.sample` with ``null_label=len(contexts)`` does classifier-free guidance.
    """

    def __init__(self, model: RetrievalUNet, contexts: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.contexts = contexts
        self.null_label = contexts.shape[0]

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        null = labels >= self.null_label
        rows = self.contexts[labels.clamp(max=self.null_label - 1)]
        return self.model(x, timesteps, rows, null)
