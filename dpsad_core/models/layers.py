"""Building blocks shared by the UNet and the discriminator.

Only layers whose per-record gradients ``torch.func.vmap(grad(...))`` supports: GroupNorm (never
BatchNorm, which mixes records), convolutions, linear layers, embeddings, and hand-written self- and
cross-attention (``nn.MultiheadAttention`` does not work under Opacus' validators).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dpsad_core.errors import ConfigError


def group_norm(channels: int, max_groups: int = 8) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``max_groups`` that divides ``channels``."""
    groups = max(g for g in range(1, max_groups + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def zero_init(layer: nn.Conv2d) -> nn.Conv2d:
    """``layer`` with zero weights and bias: a residual branch that starts as the identity."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer time steps (Ho et al. 2020, after Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class ConditionEmbedding(nn.Module):
    """Time step and class label -> one conditioning vector.

    Class index ``num_classes`` is the "no label" token used for classifier-free guidance. With
    ``num_classes=0`` there is no class embedding: the vector depends on the time step alone.
    """

    def __init__(self, base_dim: int, emb_dim: int, num_classes: int) -> None:
        super().__init__()
        self.base_dim = base_dim
        self.time_mlp = nn.Sequential(nn.Linear(base_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embedding = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

    def forward(self, timesteps: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(timesteps, self.base_dim))
        if self.class_embedding is None:
            if labels is not None:
                raise ValueError("labels were given to a model without class conditioning (num_classes=0)")
            return emb
        if labels is None:
            raise ValueError("a class-conditional model needs labels (num_classes is the 'no label' token)")
        return emb + self.class_embedding(labels)


class ContextEmbedding(nn.Module):
    """A set of context vectors ``(batch, set, context_dim)`` -> tokens for cross-attention, and a vector.

    Each element becomes one token; the tokens' mean, projected, is added to the conditioning vector so
    that the set's global content reaches every residual block, not only the attention layers (the
    pooled text embedding of Stable Diffusion XL plays the same part). A learned null token replaces the
    whole set of the rows marked ``null``, for classifier-free guidance (Ho & Salimans 2022).
    """

    def __init__(self, context_dim: int, token_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.context_dim = context_dim
        self.token_mlp = nn.Sequential(nn.Linear(context_dim, token_dim), nn.SiLU(), nn.Linear(token_dim, token_dim))
        self.null_token = nn.Parameter(torch.zeros(token_dim))
        self.pool_proj = nn.Linear(token_dim, emb_dim)

    def forward(self, context: torch.Tensor, null: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, pooled)``: tokens ``(batch, set, token_dim)``, pooled ``(batch, emb_dim)``."""
        if context.dim() != 3 or context.shape[-1] != self.context_dim:
            raise ConfigError(f"context must have shape (batch, set, {self.context_dim}), got "
                              f"{tuple(context.shape)}", field="context", value=tuple(context.shape))
        tokens = self.token_mlp(context)
        if null is not None:
            tokens = torch.where(null[:, None, None], self.null_token.expand_as(tokens), tokens)
        return tokens, self.pool_proj(tokens.mean(1))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the conditioning vector added in between."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head spatial self-attention with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(batch, 3, channels, height * width).unbind(1)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(channels), dim=-1)
        h = (v @ weights.transpose(1, 2)).reshape(batch, channels, height, width)
        return x + self.out(h)


class CrossAttention(nn.Module):
    """Single-head attention from the feature map (queries) to context tokens (keys and values).

    The cross-attention of latent diffusion (Rombach et al. 2022, eq. 3) with one head, and a residual
    connection whose output layer starts at zero, like :class:`SelfAttention`.
    """

    def __init__(self, channels: int, token_dim: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.query = nn.Conv2d(channels, channels, 1)
        self.key_value = nn.Linear(token_dim, 2 * channels)
        self.out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q = self.query(self.norm(x)).reshape(batch, channels, height * width).transpose(1, 2)
        k, v = self.key_value(tokens).chunk(2, dim=-1)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(channels), dim=-1)
        h = (weights @ v).transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.out(h)
