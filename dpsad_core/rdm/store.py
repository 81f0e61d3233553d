"""Where DP-RDM keeps its public models in the workspace, and loading them back.

Layout of ``<workspace>/rdm/models/<name>/`` (everything here derives from PUBLIC data only)::

    meta.json        the training settings, the public dataset's summary, the encoder's digest
    encoder.pt       the frozen encoder (config + weights)
    model.pt         the retrieval-conditioned UNet (EMA weights), its config and diffusion schedule
    public.npz       embeddings and labels of the public set (class prototypes and exemplars come from it)
    samples.png      a grid conditioned on the public class prototypes

Private indexes live apart, under ``<workspace>/rdm/indexes/`` (see :mod:`dpsad_core.rdm.index`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from dpsad_core.data.store import check_name
from dpsad_core.errors import ConfigError, RunError

RDM_DIR = "rdm"
MODELS_DIR = "models"


def models_dir(workspace: Path) -> Path:
    return Path(workspace) / RDM_DIR / MODELS_DIR


def list_public_models(workspace: Path) -> list[str]:
    root = models_dir(workspace)
    return sorted(p.name for p in root.iterdir() if (p / "meta.json").is_file()) if root.is_dir() else []


def check_model_name(name: str, *, workspace: Path, must_exist: bool) -> Path:
    """The folder of public model ``name``; refuses unsafe names, a missing model, or overwriting one."""
    check_name(name)
    path = models_dir(workspace) / name
    exists = (path / "meta.json").is_file()
    if must_exist and not exists:
        known = ", ".join(list_public_models(workspace)) or "none"
        raise RunError(f"no DP-RDM public model {name!r} in {models_dir(workspace)} (known: {known})",
                       remedy="train one first: dpsad-core rdm train-public --public DATA --name NAME")
    if not must_exist and exists:
        raise ConfigError(f"a DP-RDM public model named {name!r} already exists at {path}", field="name", value=name,
                          remedy="choose another --name (trained models are reused, never overwritten)")
    return path


@dataclass(frozen=True)
class PublicModelSaved:
    """Event: a public model (encoder + RDM) was trained and saved."""

    name: str
    path: Path
    summary: dict[str, Any]
    grid_path: Path
    grid: np.ndarray = field(repr=False)


def public_prototypes(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class mean of the public embeddings, scaled to unit norm (zero for an empty class)."""
    from dpsad_core.rdm.mechanism import unit_rows

    sums = np.zeros((num_classes, embeddings.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, embeddings)
    return unit_rows(sums).astype(np.float32)


def sample_from_contexts(model, schedule, contexts, *, image_shape: tuple[int, ...], steps: int, guidance: float,
                         seed: int, batch_size: int = 250):
    """Images in [-1, 1] from DDIM with classifier-free guidance, one per context set ``(n, set, dim)``."""
    import torch

    from dpsad_core.diffusion import sample
    from dpsad_core.rdm.model import ContextTable

    generator = torch.Generator().manual_seed(seed)
    contexts = torch.as_tensor(contexts, dtype=torch.float32)
    chunks = []
    for start in range(0, len(contexts), batch_size):
        table = ContextTable(model, contexts[start:start + batch_size])
        labels = torch.arange(len(table.contexts))
        chunks.append(sample(table, schedule, labels, shape=image_shape, sampler="ddim", steps=steps,
                             guidance=guidance, null_label=table.null_label, generator=generator))
    return torch.cat(chunks)


def save_public_model(*, workspace: Path, config, encoder, model, schedule, public, embeddings: np.ndarray,
                      samples, train_seconds: float) -> PublicModelSaved:
    """Write the public model's folder (files first, ``meta.json`` last: it marks the model complete)."""
    import torch

    from dpsad_core.data.public_overlap import PUBLIC_IDENTITIES, write_public_identities
    from dpsad_core.rdm.encoder import encoder_digest
    from dpsad_core.runs.folder import utc_now
    from dpsad_core.sampling import grid_image, save_png, to_uint8

    path = check_model_name(config.name, workspace=workspace, must_exist=False)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / "encoder.pt", lambda handle: torch.save(
        {"config": encoder.config.to_dict(), "state_dict": encoder.state_dict()}, handle))
    atomic_write(path / "model.pt", lambda handle: torch.save(
        {"config": model.config.to_dict(), "state_dict": model.state_dict(),
         "diffusion_steps": schedule.num_steps, "schedule": schedule.kind}, handle))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, embeddings=embeddings.astype(np.float32), labels=public.labels,
                        class_names=np.array(public.class_names))
    atomic_write_bytes(path / "public.npz", buffer.getvalue())
    # What the public data was, record by record (keyed, label-free), so an index of private data that shares
    # records with it is refused even when the private data is imported after the model was trained.
    write_public_identities(path / PUBLIC_IDENTITIES, public, workspace)
    grid = grid_image(to_uint8(samples), rows=public.num_classes)
    grid_path = save_png(grid, path / "samples.png")
    summary = {
        "name": config.name, "format": "dpsad-rdm-public-model", "version": 1, "created": utc_now(),
        "config": config.to_dict(), "public_dataset": public.summary(workspace),
        "encoder_digest": encoder_digest(encoder),
        "image_shape": list(public.images.shape[1:]), "class_names": list(public.class_names),
        "train_seconds": round(train_seconds, 2),
        "note": "trained on public data only: no privacy was spent",
    }
    atomic_write_json(path / "meta.json", summary)
    return PublicModelSaved(name=config.name, path=path, summary=summary, grid_path=grid_path, grid=grid)


@dataclass(frozen=True)
class PublicModel:
    """A loaded public model: the frozen encoder, the RDM, its schedule and the public embeddings."""

    name: str
    path: Path
    meta: dict[str, Any]
    encoder: Any
    model: Any
    schedule: Any
    embeddings: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["image_shape"])

    @property
    def encoder_digest(self) -> str:
        return self.meta["encoder_digest"]

    def prototypes(self) -> np.ndarray:
        return public_prototypes(self.embeddings, self.labels, len(self.class_names))


def load_public_model(name: str, *, workspace: Path) -> PublicModel:
    """Load public model ``name`` from the workspace (or a path to its folder)."""
    import torch

    from dpsad_core.diffusion import DiffusionSchedule
    from dpsad_core.rdm.encoder import EncoderConfig, ImageEncoder
    from dpsad_core.rdm.model import load_retrieval_unet

    candidate = Path(name)
    path = candidate if (candidate / "meta.json").is_file() else check_model_name(name, workspace=workspace,
                                                                                 must_exist=True)
    try:
        meta = json.loads((path / "meta.json").read_text())
        encoder_payload = torch.load(path / "encoder.pt", map_location="cpu", weights_only=False)
        model_payload = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
        public = np.load(path / "public.npz")
        embeddings, labels = public["embeddings"], public["labels"].astype(np.int64)
        class_names = tuple(str(name) for name in public["class_names"])
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as error:
        raise RunError(f"the DP-RDM public model at {path} cannot be read ({error})",
                       remedy="train it again with: dpsad-core rdm train-public") from None
    encoder = ImageEncoder(EncoderConfig(**encoder_payload["config"]))
    encoder.load_state_dict(encoder_payload["state_dict"])
    encoder.eval()
    model = load_retrieval_unet(model_payload).requires_grad_(False)
    schedule = DiffusionSchedule(model_payload["diffusion_steps"], model_payload["schedule"])
    return PublicModel(name=meta["name"], path=path, meta=meta, encoder=encoder, model=model, schedule=schedule,
                       embeddings=embeddings, labels=labels, class_names=class_names)
