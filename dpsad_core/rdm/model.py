"""The retrieval-augmented diffusion model: the engine's UNet with cross-attention to a set of embeddings.

Blattmann et al. 2022 (RDM) condition a diffusion model on the CLIP embeddings of ``k`` retrieved
neighbours through cross-attention; DP-RDM (Lebensold et al. 2024) replaces the set by the noisy mean
of the private neighbours (a set of one) and trains on noisy aggregates so the model accepts it.

The network is :class:`dpsad_core.models.UNet` with ``context_dim`` set and no class labels
(``num_classes=0``): each element of the context set ``(batch, set, context_dim)`` becomes a token
that the feature maps attend to at every level, the tokens' mean is added to the time embedding so
that the global appearance (the class) reaches every residual block, and a learned null token
replaces the whole set for classifier-free guidance (Ho & Salimans 2022).

Public models trained before the UNet had cross-attention of its own saved the same weights under
other names and a config without ``num_classes``; :func:`load_retrieval_unet` reads both.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from dpsad_core.models.unet import UNet, UNetConfig

__all__ = ["ContextTable", "load_retrieval_unet", "retrieval_unet_config"]


def retrieval_unet_config(*, image_channels: int, resolution: int, context_dim: int,
                          channels: tuple[int, ...] = (32, 64), blocks_per_level: int = 1,
                          dropout: float = 0.0) -> UNetConfig:
    """The shape of a DP-RDM model: a UNet conditioned on context only (no class labels, no attention levels)."""
    return UNetConfig(image_channels=image_channels, resolution=resolution, num_classes=0, channels=channels,
                      blocks_per_level=blocks_per_level, dropout=dropout, context_dim=context_dim)


# Parameter names of the retrieval UNet before it was the engine's UNet (a class of its own) -> names now.
# Its blocks were a ResBlock ``res`` then a CrossAttention ``cross``, and its middle four named layers.
_RETRIEVAL_UNET_V1_NAMES = (
    (re.compile(r"^time_mlp\."), "condition.time_mlp."),
    (re.compile(r"^(token_mlp\.|null_token$|pool_proj\.)"), r"context_embedding.\1"),
    (re.compile(r"^((?:down|up)_blocks\.\d+)\.res\."), r"\1.layers.0."),
    (re.compile(r"^((?:down|up)_blocks\.\d+)\.cross\."), r"\1.layers.1."),
    (re.compile(r"^mid_res1\."), "mid.0."),
    (re.compile(r"^mid_self\."), "mid.1."),
    (re.compile(r"^mid_cross\."), "mid.2."),
    (re.compile(r"^mid_res2\."), "mid.3."),
)


def _upgrade_v1(config: dict[str, Any], state_dict: dict[str, torch.Tensor]
                ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A checkpoint of the former ``RetrievalUNet`` (its config has no ``num_classes``) in today's names."""
    renamed = {}
    for name, tensor in state_dict.items():
        for pattern, replacement in _RETRIEVAL_UNET_V1_NAMES:
            name = pattern.sub(replacement, name)
        renamed[name] = tensor
    return {**config, "num_classes": 0}, renamed


def load_retrieval_unet(payload: dict[str, Any]) -> UNet:
    """The UNet of a public model's ``model.pt`` payload (``config`` and ``state_dict``), in eval mode.

    Loads strictly: a missing or unexpected weight is an error, never a silently random layer.
    """
    config, state_dict = payload["config"], payload["state_dict"]
    if "num_classes" not in config:
        config, state_dict = _upgrade_v1(config, state_dict)
    model = UNet(UNetConfig(**config))
    model.load_state_dict(state_dict)
    return model.eval()


class ContextTable(nn.Module):
    """Adapts a retrieval UNet to the engine's samplers, which pass integer labels.

    Label ``i`` selects row ``i`` of ``contexts``; label ``len(contexts)`` is the null context, so
    :func:`dpsad_core.diffusion.sample` with ``null_label=len(contexts)`` does classifier-free guidance.
    """

    def __init__(self, model: UNet, contexts: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.contexts = contexts
        self.null_label = contexts.shape[0]

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        null = labels >= self.null_label
        rows = self.contexts[labels.clamp(max=self.null_label - 1)]
        return self.model(x, timesteps, context=rows, null_context=null)
