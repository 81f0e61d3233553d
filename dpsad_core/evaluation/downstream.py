"""Downstream utility: train a classifier on synthetic data only, test it on real held-out data.

Model selection (which epoch to keep) looks only at a held-out part of the *synthetic* data, never at
the real test set: choosing on the real test set overstates utility (DPImageBench, docs/method.md §3).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dpsad_core.errors import ConfigError


class SmallCNN(nn.Module):
    """The literature's small CNN for 8-32 pixel images: two conv blocks and a linear head."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.dropout = nn.Dropout(0.25)
        self.head = nn.Linear(64 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2) if x.shape[-1] >= 16 else F.relu(self.conv1(x))
        h = self.pool(F.relu(self.conv2(h)))
        return self.head(self.dropout(h.flatten(1)))


@dataclass(frozen=True)
class DownstreamResult:
    test_accuracy: float          # on the real test set
    selection_accuracy: float     # on the synthetic hold-out used to pick the epoch
    chosen_epoch: int
    epochs: int
    train_records: int
    selection: str = "synthetic hold-out (the real test set is never used for selection)"
    device: str = "cpu"           # where the CNN trained (a resolved torch device)

    def to_dict(self) -> dict:
        return asdict(self)


def downstream_accuracy(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                        test_labels: np.ndarray, *, num_classes: int, epochs: int = 10, min_steps: int = 0,
                        holdout: float = 0.1, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                        device: str = "cpu") -> DownstreamResult:
    """Train :class:`SmallCNN` on ``train_*`` (values in [0, 1], N x C x H x W), report real test accuracy.

    Trains ``epochs`` epochs, or more when that is fewer than ``min_steps`` optimiser steps: 10 epochs
    of 1,000 images is about 100 steps, far from converged (measured on real MNIST at 16x16: 0.875
    after 10 epochs, 0.948 after 1,500 steps; docs/benchmarks.md).

    ``device`` is a resolved torch device (``dpsad_core.devices.resolve_device``): the CNN and each batch
    go there; the images stay on the CPU and the shuffles use a CPU generator, so the epochs see the same
    batches on every device.
    """
    if len(train_images) < 20:
        raise ConfigError("need at least 20 training images for a downstream classifier", field="count",
                          value=len(train_images))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.as_tensor(train_images, dtype=torch.float32) * 2 - 1
    y = torch.as_tensor(train_labels, dtype=torch.long)
    order = torch.randperm(len(x), generator=generator)
    cut = max(1, int(len(x) * holdout))
    val_idx, train_idx = order[:cut], order[cut:]
    # Small synthetic sets would get only a handful of steps per epoch: keep at least about ten.
    batch_size = max(1, min(batch_size, max(16, len(train_idx) // 10)))
    epochs = max(epochs, math.ceil(min_steps / math.ceil(len(train_idx) / batch_size)))
    model = SmallCNN(x.shape[1], num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best_state: dict[str, torch.Tensor] = {}  # every epoch beats -1: the first one fills it
    best_accuracy, best_epoch = -1.0, 0
    for epoch in range(1, epochs + 1):
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(perm), batch_size):
            batch = perm[start:start + batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch].to(device)), y[batch].to(device)).backward()
            optimizer.step()
        accuracy = _accuracy(model, x[val_idx], y[val_idx])
        if accuracy > best_accuracy:
            best_accuracy, best_epoch = accuracy, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test_x = torch.as_tensor(test_images, dtype=torch.float32) * 2 - 1
    test_accuracy = _accuracy(model, test_x, torch.as_tensor(test_labels, dtype=torch.long))
    return DownstreamResult(test_accuracy=test_accuracy, selection_accuracy=best_accuracy, chosen_epoch=best_epoch,
                            epochs=epochs, train_records=len(train_idx), device=str(device))


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = sum(int((model(x[i:i + 1000].to(device)).argmax(1).cpu() == y[i:i + 1000]).sum())
                  for i in range(0, len(x), 1000))
    return correct / max(1, len(x))
