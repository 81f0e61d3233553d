"""What an evaluation yields and stores: options, progress events and the run's ``evaluation.json``.

``<run folder>/evaluation.json`` (written atomically) has these top-level sections:

``downstream``
    ``cnn`` and ``logistic``: accuracy on the real test set of a classifier trained on the synthetic
    set only, and how it was selected (a synthetic hold-out, never the real test set).
``fidelity``
    ``frechet_distance_classifier_features`` (a Frechet distance on the features of a classifier
    trained on the real training data: *not* FID), ``fid`` (only with Inception weights, else
    null), ``precision``, ``recall``, ``k`` and ``per_class``.
``memorisation``
    ``dcr_share_closer_to_training_than_holdout`` (about 0.5 is good), ``n``, ``near_copy_count``,
    ``near_copy_threshold`` and the details, in pixel space and in feature space.
``config``
    Counts, seeds, the sampler, the test set, the feature extractor; ``computed`` is the UTC time.

Privacy: these numbers are computed from the private training data and the real test set without
differential privacy. They stay in the local run folder; releasing any of them releases information
that the run's epsilon does not cover (the ``privacy_note`` field says so in the file itself).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dpsad_core.atomic import atomic_write_json
from dpsad_core.errors import ConfigError, RunError

EVALUATION_FILE = "evaluation.json"
CLOSEST_PAIRS_FILE = "evaluation-closest-pairs.png"
SCHEMA_VERSION = 1
PRIVACY_NOTE = ("computed from the private training data and the real test set WITHOUT differential privacy; "
                "local only: publishing these numbers releases information the run's epsilon does not cover")
SELECTION_NOTE = "model selection used a hold-out of the synthetic data; the real test set was used once, for the score"


@dataclass(frozen=True)
class FeatureNetSpec:
    """How the feature classifier is trained; part of the cache key, so changing it retrains.

    Parameters
    ----------
    channels
        Channels of the last convolution. The features are its output averaged over a 2 x 2 grid
        (``4 * channels`` values), the layer the linear head reads: like Inception's pool features,
        they describe what the image looks like, not only its class, so noise does not land on the
        class manifolds (it does with a class-bottleneck layer: measured, precision 0.5 for noise).
    epochs
        Passes over (at most ``max_records`` of) the real training data; more when needed to reach
        ``min_steps`` optimiser steps (small datasets).
    max_records
        Cap on the training records, to bound the time on a CPU.
    seed
        Seeds the subset, the initialisation and the batch order.
    """

    channels: int = 64
    epochs: int = 4
    min_steps: int = 500
    max_records: int = 20000
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("channels", "epochs", "min_steps", "max_records", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}", field=name, value=value)
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}", field="lr", value=self.lr)

    @property
    def feature_dim(self) -> int:
        return 4 * self.channels

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class EvaluationOptions:
    """How to evaluate a run.

    Parameters
    ----------
    per_class, count
        Synthetic images to sample: ``per_class`` per class, or ``count`` in all (spread evenly
        over the classes). At most one; neither means 100 per class.
    seed
        Seeds the sampler and the classifiers.
    device
        Where to sample and train the downstream CNN ("auto", "cpu", "cuda", "cuda:N"); the logistic
        regression and the feature classifier run on the CPU.
    sample_steps
        DDIM steps (default: the run's setting).
    generator
        "release" (the released model: for ``dpsad`` its few-step student) or "teacher" (the DP
        teacher it was distilled from, sampled with DDIM).
    guidance
        Classifier-free guidance weight for sampling (default: the run's). Sampling is
        post-processing of the released model, so trying weights costs no privacy.
    cnn_epochs, cnn_min_steps
        Epochs of the downstream CNN, or more when they are fewer than ``cnn_min_steps`` optimiser
        steps (small sets need many epochs to converge); the epoch kept is chosen on the synthetic
        hold-out. ``cnn_min_steps=0`` trains exactly ``cnn_epochs``.
    k
        Neighbourhood size of the precision/recall manifolds.
    feature_spec
        How the feature classifier is trained (part of its cache key).
    inception_weights
        A pytorch-fid Inception-v3 state dict (``pt_inception-2015-12-05-*.pth``): adds true FID.
    samples
        An ``.npz`` of images the run's model made earlier (``dpsad-core sample --npz``: uint8
        ``images`` and ``labels``), evaluated instead of sampling anew.
    """

    per_class: int | None = None
    count: int | None = None
    seed: int = 0
    device: str = "auto"
    sample_steps: int | None = None
    generator: str = "release"
    guidance: float | None = None
    cnn_epochs: int = 10
    cnn_min_steps: int = 1500
    k: int = 3
    feature_spec: FeatureNetSpec = field(default_factory=FeatureNetSpec)
    inception_weights: str | None = None
    samples: str | None = None

    def __post_init__(self) -> None:
        if self.samples is not None and (self.count is not None or self.per_class is not None):
            raise ConfigError("a samples file fixes the images: do not give a count as well", field="samples",
                              value=self.samples, remedy="drop --count/--per-class, or drop --samples")
        if self.samples is not None and not Path(self.samples).is_file():
            raise ConfigError(f"{self.samples} is not a file", field="samples", value=self.samples,
                              remedy="pass the .npz written by: dpsad-core sample RUN --npz FILE")
        if self.per_class is not None and self.count is not None:
            raise ConfigError("give either a count or a per-class number of images, not both", field="count",
                              value=self.count, remedy="pass --count N or --per-class N")
        for name in ("per_class", "count", "sample_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}", field=name, value=value)
        if self.guidance is not None and not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise ConfigError(f"guidance must be a number >= 0, got {self.guidance!r}", field="guidance",
                              value=self.guidance, remedy="pass --guidance 0 (none) or a weight such as 1 or 2")
        if self.samples is not None and self.guidance is not None:
            raise ConfigError("a samples file fixes the images: a guidance weight would not be used",
                              field="guidance", value=self.guidance, remedy="drop --guidance, or drop --samples")
        if not isinstance(self.cnn_epochs, int) or self.cnn_epochs < 1:
            raise ConfigError(f"cnn_epochs must be >= 1, got {self.cnn_epochs!r}", field="cnn_epochs",
                              value=self.cnn_epochs)
        if not isinstance(self.cnn_min_steps, int) or self.cnn_min_steps < 0:
            raise ConfigError(f"cnn_min_steps must be a whole number >= 0, got {self.cnn_min_steps!r}",
                              field="cnn_min_steps", value=self.cnn_min_steps)
        if not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"k must be a whole number >= 1, got {self.k!r}", field="k", value=self.k)
        if self.inception_weights is not None and not Path(self.inception_weights).is_file():
            raise ConfigError(f"{self.inception_weights} is not a file", field="inception_weights",
                              value=self.inception_weights,
                              remedy="pass the pytorch-fid weights file pt_inception-2015-12-05-6726825d.pth")

    def synthetic_count(self, num_classes: int) -> int:
        if self.count is not None:
            return self.count
        return (self.per_class or 100) * num_classes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationStage:
    """A stage of the evaluation has started (``stage`` is a short name, ``detail`` says what it does)."""

    stage: str
    index: int
    total: int
    detail: str


@dataclass(frozen=True)
class EvaluationFinished:
    run_id: str
    path: Path
    result: dict[str, Any]


def write_evaluation(run_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``evaluation.json`` into the run folder atomically (a kill leaves the old file or the new)."""
    return atomic_write_json(Path(run_dir) / EVALUATION_FILE, result)


def read_evaluation(run_dir: Path) -> dict[str, Any] | None:
    """The run's stored evaluation, or None when it has not been evaluated."""
    path = Path(run_dir) / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RunError(f"{path} cannot be read ({error})",
                       remedy="evaluate the run again: dpsad-core evaluate RUN --test DATA") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        raise RunError(f"{path} has an unknown format",
                       remedy="evaluate the run again: dpsad-core evaluate RUN --test DATA")
    return data


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The top-level scalars of an evaluation, for summaries (CLI output, reports, the GUI)."""
    return {
        "cnn_accuracy": result["downstream"]["cnn"]["accuracy"],
        "logistic_accuracy": result["downstream"]["logistic"]["accuracy"],
        "frechet_distance_classifier_features": result["fidelity"]["frechet_distance_classifier_features"],
        "fid": result["fidelity"]["fid"],
        "precision": result["fidelity"]["precision"],
        "recall": result["fidelity"]["recall"],
        "dcr_share_closer_to_training_than_holdout":
            result["memorisation"]["dcr_share_closer_to_training_than_holdout"],
        "near_copy_count": result["memorisation"]["near_copy_count"],
        "synthetic_count": result["memorisation"]["n"],
    }
