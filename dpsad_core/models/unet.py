"""The UNet that predicts the noise ``eps(x_t, t, y, context)`` (DDPM parameterisation).

One network for every recipe, in the habit of diffusers' ``UNet2DConditionModel``: class labels are
added to the time embedding, and an optional set of context vectors (DP-RDM's retrieved neighbours)
is read by cross-attention after every residual block and in the middle. Without ``context_dim`` the
network, its parameter names and its outputs are those of the plain class-conditional UNet, so the
checkpoints of existing runs load unchanged (``tests/models/test_unet_checkpoints.py`` pins them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dpsad_core.errors import ConfigError
from dpsad_core.models.layers import (
    ConditionEmbedding,
    ContextEmbedding,
    CrossAttention,
    ResBlock,
    SelfAttention,
    group_norm,
    zero_init,
)


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a UNet. ``channels[i]`` is the width at level i (level 0 = full resolution).

    ``num_classes=0`` makes a UNet without class labels; ``context_dim`` (off by default) adds
    cross-attention to a set of context vectors of that size.
    """

    image_channels: int
    resolution: int
    num_classes: int
    channels: tuple[int, ...] = (32, 64)
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = ()
    dropout: float = 0.0
    context_dim: int | None = None

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
        if self.num_classes < 0:
            raise ConfigError("num_classes must be >= 0 (0: no class labels)", field="num_classes",
                              value=self.num_classes)
        if self.context_dim is not None and self.context_dim < 1:
            raise ConfigError("context_dim must be >= 1 (or None: no cross-attention)", field="context_dim",
                              value=self.context_dim)
        if any(level >= len(self.channels) for level in self.attention_levels):
            raise ConfigError("attention level out of range", field="attention_levels", value=self.attention_levels)

    def to_dict(self) -> dict:
        """The fields; ``context_dim`` only when set, so a plain UNet's record is what it always was."""
        fields = asdict(self)
        if self.context_dim is None:
            del fields["context_dim"]
        return fields


class UNet(nn.Module):
    """A small DDPM UNet (Ho et al. 2020): class conditioning added to the time embedding, optional
    cross-attention to context tokens (Rombach et al. 2022).

    With context, every block is ResBlock -> [self-attention] -> cross-attention, the middle is
    ResBlock -> self-attention -> cross-attention -> ResBlock, and the context's pooled tokens are added
    to the conditioning vector (:class:`~dpsad_core.models.layers.ContextEmbedding`).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.channels
        emb_dim = 4 * widths[0]
        self.token_dim = emb_dim
        self.condition = ConditionEmbedding(widths[0], emb_dim, config.num_classes)
        self.context_embedding = (None if config.context_dim is None
                                  else ContextEmbedding(config.context_dim, self.token_dim, emb_dim))
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

        # Built in order (the layers' initialisation draws from the seeded RNG one after the other).
        self.mid = nn.ModuleList([ResBlock(current, current, emb_dim, config.dropout), SelfAttention(current)])
        if config.context_dim is not None:
            self.mid.append(CrossAttention(current, self.token_dim))
        self.mid.append(ResBlock(current, current, emb_dim, config.dropout))

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
        attention: list[nn.Module] = []
        if level in self.config.attention_levels:
            attention.append(SelfAttention(out_ch))
        if self.config.context_dim is not None:
            attention.append(CrossAttention(out_ch, self.token_dim))
        return _Sequential(block, *attention) if attention else block  # a bare ResBlock keeps its old names

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None, null_context: torch.Tensor | None = None) -> torch.Tensor:
        """``eps`` for noisy images ``x`` at ``timesteps``.

        ``labels``: class indices (needed when ``num_classes`` > 0; ``num_classes`` is "no label").
        ``context``: ``(batch, set, context_dim)``, needed when ``context_dim`` is set; rows where the
        boolean ``null_context`` is True read the learned null token instead (classifier-free guidance).
        """
        emb = self.condition(timesteps, labels)
        tokens = None
        if self.context_embedding is not None:
            if context is None:
                raise ValueError("this UNet has cross-attention (context_dim is set): give it a context")
            tokens, pooled = self.context_embedding(context, null_context)
            emb = emb + pooled
        elif context is not None:
            raise ValueError("a context was given to a UNet without cross-attention (context_dim is None)")
        h = self.stem(x)
        skips = [h]
        blocks = iter(self.down_blocks)
        levels = len(self.config.channels)
        for level in range(levels):
            for _ in range(self.config.blocks_per_level):
                h = _apply(next(blocks), h, emb, tokens)
                skips.append(h)
            if level < levels - 1:
                h = self.downsamplers[level](h)
                skips.append(h)
        for module in self.mid:
            h = _apply(module, h, emb, tokens)
        blocks = iter(self.up_blocks)
        for index, level in enumerate(reversed(range(levels))):
            for _ in range(self.config.blocks_per_level + 1):
                h = _apply(next(blocks), torch.cat([h, skips.pop()], dim=1), emb, tokens)
            if level > 0:
                h = self.upsamplers[index](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))


def _apply(layer: nn.Module, h: torch.Tensor, emb: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
    """Cross-attention reads the context tokens, a block of layers both, any other layer the conditioning vector."""
    if isinstance(layer, CrossAttention):
        return layer(h, tokens)
    if isinstance(layer, _Sequential):
        return layer(h, emb, tokens)
    return layer(h, emb)


class _Sequential(nn.Module):
    """A ResBlock followed by self-attention and/or cross-attention."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = _apply(layer, x, emb, tokens)
        return x
