"""The frozen image encoder of DP-RDM, trained on public data only.

The paper embeds images with CLIP. Nothing can be downloaded here, so the encoder is a small CNN
trained on the data the user declares public, as a classifier: its penultimate layer, scaled to unit
norm, is the embedding (a cosine classifier, so that nearness in the embedding means "looks like the
same class"). Once trained it is frozen and saved with the public model; the private index and every
query use the same weights, identified by :func:`encoder_digest`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dpsad_core.errors import ConfigError
from dpsad_core.models.layers import group_norm

__all__ = ["EncoderConfig", "ImageEncoder", "embed_images", "encoder_digest", "train_encoder"]


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of the encoder: input images and the embedding dimension."""

    image_channels: int
    resolution: int
    embedding_dim: int = 32
    width: int = 32
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.image_channels not in (1, 3):
            raise ConfigError("image_channels must be 1 or 3", field="image_channels", value=self.image_channels)
        if self.resolution < 4:
            raise ConfigError("resolution must be >= 4", field="resolution", value=self.resolution)
        if not 2 <= self.embedding_dim <= 1024:
            raise ConfigError("embedding_dim must be in 2..1024", field="embedding_dim", value=self.embedding_dim)
        if self.num_classes < 2:
            raise ConfigError("the public data must have at least 2 classes to train the encoder",
                              field="num_classes", value=self.num_classes,
                              remedy="declare a labelled public dataset with several classes")

    def to_dict(self) -> dict:
        return asdict(self)


class ImageEncoder(nn.Module):
    """Images in [-1, 1] -> unit-norm embeddings; a cosine-classifier head for training only."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.features = nn.Sequential(
            nn.Conv2d(config.image_channels, width, 3, padding=1), group_norm(width), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2 if config.resolution >= 16 else 1, padding=1),
            group_norm(2 * width), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), group_norm(2 * width), nn.SiLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, config.embedding_dim))
        self.head = nn.Linear(config.embedding_dim, config.num_classes, bias=False)
        # A fixed temperature for the cosine classifier: logits in [-10, 10] separate classes well.
        self.scale = 10.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings, shape ``(batch, embedding_dim)``."""
        return F.normalize(self.features(images), dim=1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * self(images) @ F.normalize(self.head.weight, dim=1).T


def train_encoder(images: np.ndarray, labels: np.ndarray, *, config: EncoderConfig, steps: int = 300,
                  batch_size: int = 128, lr: float = 2e-3, seed: int = 0) -> Iterator[tuple[int, float, ImageEncoder]]:
    """Train the encoder as a classifier on PUBLIC images (values in [0, 1], N x C x H x W).

    Yields ``(step, loss, encoder)`` after every step so callers can report progress; the last
    encoder yielded is the trained one, in eval mode.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.as_tensor(images, dtype=torch.float32) * 2 - 1
    y = torch.as_tensor(labels, dtype=torch.long)
    encoder = ImageEncoder(config)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    encoder.train()
    for step in range(1, steps + 1):
        batch = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=generator)
        loss = F.cross_entropy(encoder.logits(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == steps:
            encoder.eval()
        yield step, loss.item(), encoder


@torch.no_grad()
def embed_images(encoder: ImageEncoder, images: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
    """Unit-norm float32 embeddings of images in [0, 1] (N x C x H x W)."""
    encoder.eval()
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32) * 2 - 1
    chunks = [encoder(x[start:start + batch_size]) for start in range(0, len(x), batch_size)]
    if not chunks:
        return np.zeros((0, encoder.config.embedding_dim), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32)


def encoder_digest(encoder: ImageEncoder) -> str:
    """SHA-256 of the encoder's weights: ties an index to the encoder that built it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().astype(np.float32).tobytes())
    return digest.hexdigest()
