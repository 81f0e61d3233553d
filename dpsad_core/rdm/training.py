"""Training DP-RDM's public side: the frozen encoder and the retrieval-conditioned model.

Everything here reads only the data the user declares public; no privacy is spent. The model learns
to denoise a public image given the noisy mean of its ``k`` nearest public neighbours (itself
excluded), with a noise std drawn uniformly in ``[0, sigma_max)`` per image, so that it accepts the
privatised context of a DP-RDM query (Lebensold et al. 2024, Section 3.2). The context is dropped
(replaced by the null token) with probability ``context_dropout`` for classifier-free guidance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dpsad_core.errors import ConfigError
from dpsad_core.events import PhaseStarted, SampleGrid, StepCompleted
from dpsad_core.rdm.store import save_public_model

if TYPE_CHECKING:
    from dpsad_core.diffusion.schedule import ScheduleKind

__all__ = ["PRESETS", "TrainPublicConfig", "nearest_public_neighbours", "train_public"]


@dataclass(frozen=True)
class TrainPublicConfig:
    """Settings of ``dpsad-core rdm train-public``; ``PRESETS`` holds the named starting points."""

    public: str
    name: str
    resolution: int | None = None
    encoder_steps: int = 400
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    k: int = 10
    sigma_max: float = 0.3
    context_dropout: float = 0.1
    diffusion_steps: int = 1000
    schedule: ScheduleKind = "linear"
    channels: tuple[int, ...] = (32, 64)
    embedding_dim: int = 32
    sample_steps: int = 25
    guidance: float = 1.0
    seed: int = 0
    min_records: int = 100
    allow_public_overlap: bool = False  # research: public data that shares records with private data (NOT private)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        for name in ("encoder_steps", "steps", "batch_size", "k", "diffusion_steps", "sample_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}", field=name, value=value)
        if not 0.0 <= self.sigma_max < 10.0:
            raise ConfigError(f"sigma_max must be in [0, 10), got {self.sigma_max!r}", field="sigma_max",
                              value=self.sigma_max, remedy="use the largest noise std you plan to query with")
        if not 0.0 <= self.context_dropout < 1.0:
            raise ConfigError("context_dropout must be in [0, 1)", field="context_dropout", value=self.context_dropout)
        if self.lr <= 0:
            raise ConfigError("lr must be > 0", field="lr", value=self.lr)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"encoder_steps": 5, "steps": 4, "batch_size": 16, "warmup_steps": 2, "k": 3, "diffusion_steps": 50,
             "channels": (8, 16), "embedding_dim": 8, "sample_steps": 4},
    "quick": {},
    "standard": {"steps": 8000, "encoder_steps": 1500, "batch_size": 128, "channels": (64, 128)},
}


def make_config(*, public: str, name: str, preset: str = "quick", **overrides: Any) -> TrainPublicConfig:
    """A config from a preset plus overrides (None values are ignored)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}", field="preset", value=preset,
                          remedy=f"use one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{key: value for key, value in overrides.items() if value is not None}}
    return TrainPublicConfig(public=public, name=name, **values)


def nearest_public_neighbours(embeddings: np.ndarray, k: int, *, chunk: int = 2048) -> np.ndarray:
    """Indices ``(n, k)`` of each record's ``k`` nearest other records (cosine; itself excluded)."""
    n = len(embeddings)
    if n < 2:
        raise ConfigError("the public data needs at least 2 records", field="public", value=n)
    k = min(k, n - 1)
    result = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        similarity = embeddings[start:start + chunk] @ embeddings.T
        rows = np.arange(similarity.shape[0])
        similarity[rows, start + rows] = -np.inf
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        result[start:start + chunk] = top
    return result


def train_public(config: TrainPublicConfig, *, workspace: Path,
                 stop: Callable[[], bool] | None = None) -> Iterator[Any]:
    """Train the encoder, then the RDM, on the public data; save both. A generator of events.

    Yields :class:`~dpsad_core.events.PhaseStarted` and :class:`~dpsad_core.events.StepCompleted` for
    the ``encoder`` and ``rdm`` phases (epsilon 0: public data only), a
    :class:`~dpsad_core.events.SampleGrid` (one row per public class, conditioned on its prototype)
    and finally :class:`~dpsad_core.rdm.store.PublicModelSaved`. ``stop()`` returning True abandons
    the training without saving anything.
    """
    import torch
    from torch.nn import functional as F

    from dpsad_core.data import resolve_data_source
    from dpsad_core.data.public_overlap import check_against_workspace
    from dpsad_core.diffusion import DiffusionSchedule
    from dpsad_core.models import UNet
    from dpsad_core.models.ema import EMA
    from dpsad_core.rdm.encoder import EncoderConfig, embed_images, train_encoder
    from dpsad_core.rdm.model import retrieval_unet_config
    from dpsad_core.rdm.store import check_model_name, public_prototypes, sample_from_contexts

    check_model_name(config.name, workspace=workspace, must_exist=False)
    public = resolve_data_source(config.public, workspace=workspace, resolution=config.resolution,
                                 min_records=config.min_records, duplicates="keep")
    # Public data that holds records of a private dataset of this workspace is refused (NotPrivateError).
    check_against_workspace(public, public_spec=config.public, workspace=workspace,
                            allow=config.allow_public_overlap)
    if public.resolution % 2 ** (len(config.channels) - 1):
        # Fail before any training, with the remedy, rather than deep in the model constructor.
        retrieval_unet_config(image_channels=public.channels, resolution=public.resolution,
                              context_dim=config.embedding_dim, channels=config.channels)
    stop = stop or (lambda: False)
    started = time.monotonic()

    # -- the encoder -------------------------------------------------------------------------------
    encoder_config = EncoderConfig(image_channels=public.channels, resolution=public.resolution,
                                   embedding_dim=config.embedding_dim, num_classes=max(2, public.num_classes))
    yield PhaseStarted(phase="encoder", total_steps=config.encoder_steps, start_step=0, privacy="public")
    encoder = None
    for step, encoder_loss, trained in train_encoder(public.images, public.labels, config=encoder_config,
                                                     steps=config.encoder_steps, seed=config.seed):
        yield StepCompleted(phase="encoder", step=step, total_steps=config.encoder_steps, losses={"loss": encoder_loss},
                            epsilon_spent=0.0, epsilon_target=0.0, seconds=0.0,
                            eta_seconds=0.0)
        encoder = trained  # the last one is the encoder the model uses
        if stop():
            return
    if encoder is None:  # pragma: no cover - encoder_steps >= 1 (TrainPublicConfig), so one was trained
        raise RuntimeError("the public encoder was not trained")
    embeddings = embed_images(encoder, public.images)
    neighbours = nearest_public_neighbours(embeddings, config.k)

    # -- the retrieval-conditioned model -------------------------------------------------------------
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed + 1)
    model = UNet(retrieval_unet_config(image_channels=public.channels, resolution=public.resolution,
                                       context_dim=config.embedding_dim, channels=config.channels))
    ema = EMA(model)
    schedule = DiffusionSchedule(config.diffusion_steps, config.schedule)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    images = torch.as_tensor(public.images) * 2 - 1
    unit_neighbours = torch.as_tensor(embeddings)[torch.as_tensor(neighbours)]  # (n, k, d), unit rows
    neighbour_means = unit_neighbours.mean(dim=1)
    yield PhaseStarted(phase="rdm", total_steps=config.steps, start_step=0, privacy="public")
    phase_start = time.monotonic()
    for step in range(1, config.steps + 1):
        tick = time.monotonic()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, step / max(1, config.warmup_steps))
        batch = torch.randint(0, len(images), (min(config.batch_size, len(images)),), generator=generator)
        x0 = images[batch]
        # The noisy aggregate the model will see at query time: mean + N(0, s^2 I), s ~ U[0, sigma_max).
        noise_std = torch.rand(len(batch), 1, generator=generator) * config.sigma_max
        context = neighbour_means[batch] + noise_std * torch.randn(neighbour_means[batch].shape, generator=generator)
        null = torch.rand(len(batch), generator=generator) < config.context_dropout
        timesteps = torch.randint(0, schedule.num_steps, (len(batch),), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        prediction = model(schedule.q_sample(x0, timesteps, eps), timesteps, context=context[:, None, :],
                           null_context=null)
        loss = F.mse_loss(prediction, eps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model)
        elapsed = time.monotonic() - phase_start
        yield StepCompleted(phase="rdm", step=step, total_steps=config.steps, losses={"loss": loss.item()},
                            epsilon_spent=0.0, epsilon_target=0.0, seconds=time.monotonic() - tick,
                            eta_seconds=elapsed / step * (config.steps - step))
        if stop():
            return

    # -- a grid from the public prototypes, then save -----------------------------------------------
    prototypes = public_prototypes(embeddings, public.labels, public.num_classes)
    per_class = 8
    contexts = torch.as_tensor(np.repeat(prototypes, per_class, axis=0))[:, None, :]
    samples = sample_from_contexts(ema.model, schedule, contexts, image_shape=tuple(public.images.shape[1:]),
                                   steps=min(config.sample_steps, config.diffusion_steps), guidance=config.guidance,
                                   seed=config.seed + 2)
    saved = save_public_model(
        workspace=workspace, config=replace(config, resolution=public.resolution), encoder=encoder, model=ema.model,
        schedule=schedule, public=public, embeddings=embeddings, samples=samples,
        train_seconds=time.monotonic() - started)
    yield SampleGrid(phase="rdm", step=config.steps, path=saved.grid_path, image=saved.grid)
    yield saved
