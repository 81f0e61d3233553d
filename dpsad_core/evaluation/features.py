"""The feature extractor for fidelity metrics: a classifier trained on the domain's real training data.

The standard Inception weights cannot be downloaded on our machines (docs/method.md §3), so the
Frechet distance and precision/recall are computed on the penultimate-layer features of a small CNN
trained on the *real training data* of the domain. Those numbers are named for what they are
("Frechet distance on classifier features"), never "FID"; true FID needs ``--inception-weights``
(:mod:`dpsad_core.evaluation.inception`).

The trained extractor is cached per dataset fingerprint under ``<workspace>/evaluation/`` so repeated
evaluations of runs on the same data use the same features and are comparable. The cache holds
weights fitted to private data: it stays in the local workspace and is never exported.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dpsad_core.atomic import atomic_write
from dpsad_core.errors import ConfigError, RunError
from dpsad_core.evaluation.report import FeatureNetSpec

CACHE_DIR = "evaluation"


class FeatureNet(nn.Module):
    """Two conv blocks, a 2 x 2 average pool (the features) and a linear head reading them."""

    def __init__(self, channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, width, 3, padding=1)
        self.head = nn.Linear(4 * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2) if x.shape[-1] >= 16 else F.relu(self.conv1(x))
        return F.adaptive_avg_pool2d(F.relu(self.conv2(h)), 2).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class FeatureExtractor:
    """A trained :class:`FeatureNet` with what it was trained on, ready to embed images.

    ``validation_accuracy`` is measured on a held-out tenth of the real training data; a poor
    value means the features, and every metric computed on them, carry little information.
    """

    net: FeatureNet
    spec: FeatureNetSpec
    fingerprint: str
    channels: int
    resolution: int
    num_classes: int
    validation_accuracy: float
    train_records: int

    def describe(self) -> dict[str, Any]:
        return {"kind": "classifier trained on the real training data: its last convolution pooled 2 x 2, "
                        "the layer its linear head reads",
                "feature_dim": self.spec.feature_dim, "validation_accuracy": self.validation_accuracy,
                "train_records": self.train_records, "spec": asdict(self.spec),
                "note": "not Inception features: distances are comparable only between runs on the same data"}

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Features (N x feature_dim, float64) of ``images`` in [0, 1], N x C x H x W."""
        _check_shape(images, self.channels, self.resolution)
        self.net.eval()
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32) * 2 - 1
        chunks = [self.net.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat(chunks).double().numpy()


def train_feature_extractor(images: np.ndarray, labels: np.ndarray, *, num_classes: int,
                            fingerprint: str = "", spec: FeatureNetSpec | None = None) -> FeatureExtractor:
    """Train a :class:`FeatureNet` on real training images (in [0, 1]) and their labels."""
    spec = spec or FeatureNetSpec()
    if len(images) < 20:
        raise ConfigError("need at least 20 real training images to train the feature classifier",
                          field="train_records", value=len(images))
    generator, validation, fitted = _draw(len(images), spec)
    torch.manual_seed(spec.seed)
    images, labels = np.asarray(images), np.asarray(labels)
    val_x = torch.as_tensor(images[validation], dtype=torch.float32) * 2 - 1
    train_x = torch.as_tensor(images[fitted], dtype=torch.float32) * 2 - 1
    val_y = torch.as_tensor(labels[validation], dtype=torch.long)
    train_y = torch.as_tensor(labels[fitted], dtype=torch.long)
    net = FeatureNet(train_x.shape[1], num_classes, spec.channels)
    optimizer = torch.optim.Adam(net.parameters(), lr=spec.lr)
    steps_per_epoch = -(-len(train_x) // spec.batch_size)
    for _ in range(max(spec.epochs, -(-spec.min_steps // steps_per_epoch))):
        net.train()
        perm = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(perm), spec.batch_size):
            batch = perm[start:start + spec.batch_size]
            optimizer.zero_grad()
            F.cross_entropy(net(train_x[batch]), train_y[batch]).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(val_x).argmax(1) == val_y).float().mean())
    return FeatureExtractor(net=net, spec=spec, fingerprint=fingerprint, channels=int(train_x.shape[1]),
                            resolution=int(train_x.shape[-1]), num_classes=num_classes, validation_accuracy=accuracy,
                            train_records=len(train_x))


def unseen_records(num_records: int, spec: FeatureNetSpec) -> np.ndarray:
    """Indices of the training records :func:`train_feature_extractor` did not fit on (sorted).

    Its validation tenth and everything past ``max_records``: real images whose features are not
    flattered by the extractor having learnt them, for a fair real-data reference.
    """
    _, _, fitted = _draw(num_records, spec)
    return np.setdiff1d(np.arange(num_records), fitted)


def _draw(num_records: int, spec: FeatureNetSpec) -> tuple[torch.Generator, np.ndarray, np.ndarray]:
    """(generator, validation indices, fitted indices): at most ``max_records``, a tenth for validation."""
    generator = torch.Generator().manual_seed(spec.seed)
    used = torch.randperm(num_records, generator=generator)[:spec.max_records].numpy()
    cut = max(1, len(used) // 10)
    return generator, used[:cut], used[cut:]


def cache_path(workspace: Path, fingerprint: str, spec: FeatureNetSpec) -> Path:
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:24]
    return Path(workspace) / CACHE_DIR / f"feature-net-{digest}-{spec.key()}.pt"


def cached_feature_extractor(dataset, *, workspace: Path, spec: FeatureNetSpec | None = None
                             ) -> tuple[FeatureExtractor, bool]:
    """(extractor, loaded_from_cache) for an :class:`~dpsad_core.data.ImageDataset` of real training data.

    Trains and caches the extractor on first use; later calls with the same data (same fingerprint)
    and spec load it, so their features are identical. The fingerprint is keyed with ``workspace``'s
    identity key, the one its runs and ledger use.
    """
    spec = spec or FeatureNetSpec()
    fingerprint = dataset.fingerprint(workspace)
    path = cache_path(workspace, fingerprint, spec)
    if path.is_file():
        return _load(path, fingerprint), True
    extractor = train_feature_extractor(dataset.images, dataset.labels, num_classes=dataset.num_classes,
                                        fingerprint=fingerprint, spec=spec)
    payload = {"state_dict": extractor.net.state_dict(), "spec": asdict(spec), "fingerprint": fingerprint,
               "channels": extractor.channels, "resolution": extractor.resolution,
               "num_classes": extractor.num_classes, "validation_accuracy": extractor.validation_accuracy,
               "train_records": extractor.train_records}
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return extractor, False


def _load(path: Path, fingerprint: str) -> FeatureExtractor:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        spec = FeatureNetSpec(**payload["spec"])
        net = FeatureNet(payload["channels"], payload["num_classes"], spec.channels)
        net.load_state_dict(payload["state_dict"])
    except Exception as error:  # noqa: BLE001 - any unreadable cache file is the same problem to the user
        raise RunError(f"{path} cannot be read ({type(error).__name__}: {error})",
                       remedy="delete it; the feature classifier is retrained on the next evaluation") from None
    if payload["fingerprint"] != fingerprint:
        raise RunError(f"{path} was trained on other data (fingerprint differs)",
                       remedy="delete it; the feature classifier is retrained on the next evaluation")
    net.eval()
    return FeatureExtractor(net=net, spec=spec, fingerprint=fingerprint, channels=payload["channels"],
                            resolution=payload["resolution"], num_classes=payload["num_classes"],
                            validation_accuracy=payload["validation_accuracy"],
                            train_records=payload["train_records"])


def _check_shape(images: np.ndarray, channels: int, resolution: int) -> None:
    shape = np.shape(images)
    if len(shape) != 4 or shape[1] != channels or shape[2] != resolution or shape[3] != resolution:
        raise ConfigError(f"images of shape {shape} do not match the feature classifier's input "
                          f"(N x {channels} x {resolution} x {resolution})", field="images", value=shape,
                          remedy="resize the images to the training data's resolution and channels")
