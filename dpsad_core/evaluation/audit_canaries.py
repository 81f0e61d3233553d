"""Canaries for the one-run privacy audit: building them, mixing them into the data, scoring them.

A canary is a record the auditor controls. Each one goes into the training set independently with
probability 1/2 (Steinke, Nasr and Jagielski 2023, Algorithm 1); after training, the released model
alone gives each canary a membership score. Canaries that stand out from the data (a bright random
pattern, or a real image with a wrong label) make membership easiest to detect, which is what an
audit wants: it looks for the worst case, not the typical record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpsad_core.data import ImageDataset
from dpsad_core.errors import ConfigError
from dpsad_core.privacy.randomness import SecretStream

CANARY_KINDS: tuple[str, ...] = ("pattern", "mislabelled")
CANARY_PATIENT_PREFIX = "audit-canary-"


@dataclass(frozen=True, eq=False)
class Canaries:
    """``m`` canary records, which of them are included, and where mislabelled ones came from.

    Attributes
    ----------
    images
        float32 ``m x C x R x R`` in [0, 1], like the dataset's.
    labels
        int64 ``m``: the label each canary is trained with (for ``mislabelled``, a wrong one).
    included
        bool ``m``: drawn independently with probability 1/2.
    kind
        ``"pattern"`` (random binary pixels, a random label) or ``"mislabelled"`` (a record of the
        data with another class's label; the record is taken out of the data so that it is seen
        only if included).
    true_labels
        int64 ``m``: for ``mislabelled``, the record's real label (the score compares against it);
        for ``pattern``, -1.
    source_indices
        int64 ``m``: for ``mislabelled``, the records of the data used; for ``pattern``, -1.
    """

    images: np.ndarray
    labels: np.ndarray
    included: np.ndarray
    kind: str
    true_labels: np.ndarray
    source_indices: np.ndarray

    @property
    def count(self) -> int:
        return int(self.labels.size)


def build_canaries(dataset: ImageDataset, *, count: int, kind: str = "pattern", seed: int,
                   inclusion: SecretStream | None = None) -> Canaries:
    """Draw ``count`` canaries shaped like ``dataset`` from ``seed``, and their inclusion.

    The inclusion coin flips come from ``inclusion`` (a secret stream) when given, else from ``seed``
    too (a reproducible audit).
    """
    if kind not in CANARY_KINDS:
        raise ConfigError(f"unknown canary kind {kind!r}", field="canary_kind", value=kind,
                          remedy=f"choose one of: {', '.join(CANARY_KINDS)}")
    if not isinstance(count, (int, np.integer)) or count < 2:
        raise ConfigError("the audit needs at least 2 canaries", field="canaries", value=count,
                          remedy="use --canaries 100 or more (the bound is weak with few)")
    if dataset.num_classes < 2 and kind == "mislabelled":
        raise ConfigError("mislabelled canaries need at least 2 classes", field="canary_kind", value=kind,
                          remedy="use --canary-kind pattern")
    rng = np.random.default_rng(seed)
    shape = (count, dataset.channels, dataset.resolution, dataset.resolution)
    if kind == "pattern":
        # Random binary pixels: as far from natural images as [0, 1] allows, and mutually unrelated,
        # so a model can only fit one by having seen it.
        images = (rng.random(shape) < 0.5).astype(np.float32)
        labels = rng.integers(0, dataset.num_classes, size=count).astype(np.int64)
        true_labels = np.full(count, -1, dtype=np.int64)
        sources = np.full(count, -1, dtype=np.int64)
    else:
        if count > dataset.num_records // 2:
            raise ConfigError(f"{count} mislabelled canaries would take more than half of the "
                              f"{dataset.num_records} records", field="canaries", value=count,
                              remedy="use fewer canaries or --canary-kind pattern")
        sources = np.sort(rng.choice(dataset.num_records, size=count, replace=False)).astype(np.int64)
        images = dataset.images[sources].copy()
        true_labels = dataset.labels[sources].copy()
        # A uniformly random other class: true + 1..(classes - 1), modulo classes.
        shift = rng.integers(1, dataset.num_classes, size=count)
        labels = ((true_labels + shift) % dataset.num_classes).astype(np.int64)
    included = inclusion.bernoulli(count, 0.5) if inclusion is not None else rng.random(count) < 0.5
    return Canaries(images=images, labels=labels, included=included, kind=kind, true_labels=true_labels,
                    source_indices=sources)


def dataset_with_canaries(dataset: ImageDataset, canaries: Canaries, *, name: str) -> ImageDataset:
    """The training set of an audit run: the data (less the mislabelled canaries' sources) plus the
    included canaries, each its own privacy unit."""
    keep = np.ones(dataset.num_records, dtype=bool)
    if canaries.kind == "mislabelled":
        keep[canaries.source_indices] = False
    base = dataset.subset(keep)
    chosen = np.flatnonzero(canaries.included)
    patient_ids = None
    if base.patient_ids is not None:
        clash = np.char.startswith(base.patient_ids, CANARY_PATIENT_PREFIX)
        if clash.any():
            raise ConfigError(f"the data has patient ids starting with {CANARY_PATIENT_PREFIX!r}, which the "
                              "audit reserves for canaries", field="data", value=str(base.patient_ids[clash][0]),
                              remedy="rename those patients before auditing")
        canary_ids = np.array([f"{CANARY_PATIENT_PREFIX}{i}" for i in chosen], dtype=np.str_)
        patient_ids = np.concatenate([base.patient_ids, canary_ids])  # numpy widens the string dtype
    return ImageDataset(images=np.concatenate([base.images, canaries.images[chosen]]).astype(np.float32),
                        labels=np.concatenate([base.labels, canaries.labels[chosen]]).astype(np.int64),
                        class_names=dataset.class_names, patient_ids=patient_ids, name=name,
                        source=f"audit of {dataset.source}")


def denoising_losses(model, schedule, images: np.ndarray, labels: np.ndarray, *, draws: int, seed: int,
                     device: str = "cpu", batch_size: int = 256) -> np.ndarray:
    """Each image's denoising loss ``|| eps - eps_theta(x_t, t, y) ||^2`` averaged over ``draws`` draws.

    Every image gets the same ``draws`` pairs ``(t, eps)`` (stratified over the time steps): common
    random numbers, so differences between images come from the model, not from the draws.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    count = int(labels.size)
    shape = tuple(images.shape[1:])
    steps = schedule.num_steps
    # One time step per stratum of [0, T): the average covers the whole schedule evenly.
    offsets = torch.rand(draws, generator=generator)
    timesteps = ((torch.arange(draws) + offsets) * steps / draws).long().clamp(max=steps - 1)
    noise = torch.randn((draws,) + shape, generator=generator)
    x0_all = torch.as_tensor(images, dtype=torch.float32) * 2 - 1
    y_all = torch.as_tensor(labels, dtype=torch.long)
    losses = torch.zeros(count, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for draw in range(draws):
            t_value, eps = timesteps[draw], noise[draw]
            for start in range(0, count, batch_size):
                x0 = x0_all[start:start + batch_size].to(device)
                t = torch.full((x0.shape[0],), int(t_value), dtype=torch.long, device=device)
                eps_batch = eps.to(device).expand_as(x0)
                x_t = schedule.q_sample(x0, t, eps_batch)
                predicted = model(x_t, t, y_all[start:start + batch_size].to(device))
                per_image = (predicted - eps_batch).pow(2).flatten(1).mean(1)
                losses[start:start + x0.shape[0]] += per_image.double().cpu()
    return (losses / draws).numpy()


def membership_scores(model, schedule, canaries: Canaries, *, draws: int, seed: int,
                      device: str = "cpu") -> np.ndarray:
    """Higher means "more likely trained on", from the released model only.

    ``pattern``: minus the canary's denoising loss. ``mislabelled``: the loss under the real label
    minus the loss under the canary's wrong label, which cancels how hard the image is in itself.
    """
    if draws < 1:
        raise ConfigError("score_draws must be >= 1", field="score_draws", value=draws)
    loss = denoising_losses(model, schedule, canaries.images, canaries.labels, draws=draws, seed=seed,
                            device=device)
    if canaries.kind == "mislabelled":
        reference = denoising_losses(model, schedule, canaries.images, canaries.true_labels, draws=draws,
                                     seed=seed, device=device)
        return reference - loss
    return -loss
