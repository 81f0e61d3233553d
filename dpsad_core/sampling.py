"""Sampling from a run's released model, and sample grids as images."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dpsad_core.atomic import atomic_write
from dpsad_core.errors import ConfigError, RunError
from dpsad_core.runs.records import NOT_DP_STAMP

if TYPE_CHECKING:
    from dpsad_core.diffusion.samplers import SamplerKind


def to_uint8(images) -> np.ndarray:
    """[-1, 1] float images (N x C x H x W tensor or array) -> uint8 N x H x W (grey) or N x H x W x 3."""
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    array = np.clip((array + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)


def grid_image(images_uint8: np.ndarray, *, rows: int, cell: int = 32, gap: int = 2) -> np.ndarray:
    """Tile images row by row (one row per class) with nearest-neighbour upscaling to ``cell`` pixels."""
    count, height, width = images_uint8.shape[:3]
    columns = int(np.ceil(count / rows))
    scale = max(1, cell // height)
    tile_h, tile_w = height * scale, width * scale
    shape = (rows * (tile_h + gap) + gap, columns * (tile_w + gap) + gap) + images_uint8.shape[3:]
    canvas = np.full(shape, 255, dtype=np.uint8)
    for index, image in enumerate(images_uint8):
        r, c = divmod(index, columns)
        big = image.repeat(scale, axis=0).repeat(scale, axis=1)
        top, left = gap + r * (tile_h + gap), gap + c * (tile_w + gap)
        canvas[top:top + tile_h, left:left + tile_w] = big
    return canvas


def stamp_not_private(image: np.ndarray) -> np.ndarray:
    """``image`` under a red band that reads NOT DIFFERENTIALLY PRIVATE (grids of a non-private release)."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image).convert("RGB")
    band = 14
    stamped = Image.new("RGB", (max(picture.width, 6 * len(NOT_DP_STAMP) + 8), picture.height + band), "white")
    stamped.paste(picture, (0, band))
    draw = ImageDraw.Draw(stamped)
    draw.rectangle((0, 0, stamped.width, band - 1), fill=(176, 0, 32))
    draw.text((4, 2), NOT_DP_STAMP, fill="white")
    return np.asarray(stamped)


def save_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    def write(handle) -> None:
        Image.fromarray(image).save(handle, format="PNG")

    return atomic_write(path, write)


#: Which network of a run samples: its release (the few-step student when it has one) or the teacher.
GENERATORS = ("release", "teacher")


def load_released_model(model_path: Path, device: str = "cpu",
                        generator: str = "release") -> tuple[Any, Any, dict[str, Any]]:
    """(model, schedule, metadata) from a run's ``model.pt``.

    ``metadata["timesteps"]`` is set for a few-step student: it samples at exactly those times.
    ``generator="teacher"``: the DP teacher a few-step student was distilled from, sampled with DDIM.
    """
    import torch

    from dpsad_core.diffusion import DiffusionSchedule
    from dpsad_core.models import UNet, UNetConfig, VPredictionStudent

    if not model_path.is_file():
        raise RunError(f"{model_path} does not exist", remedy="the run has not finished; resume it first")
    if generator not in GENERATORS:
        raise ConfigError(f"unknown generator {generator!r}", field="generator", value=generator,
                          remedy=f"choose one of: {', '.join(GENERATORS)}")
    payload = torch.load(model_path, map_location="cpu", weights_only=False)
    schedule = DiffusionSchedule(payload["diffusion_steps"], payload["schedule"])
    config = UNetConfig(**payload["unet_config"])
    metadata = dict(payload["metadata"])
    model: UNet | VPredictionStudent
    if generator == "teacher":
        if "teacher" not in payload:
            raise ConfigError(f"run {metadata.get('run_id')} has no separate teacher: its one model already samples "
                              "with DDIM", field="generator", value=generator, remedy="leave out --generator teacher")
        teacher = payload["teacher"]
        model = UNet(config)
        model.load_state_dict(teacher["state_dict"])
        for key in ("prediction", "timesteps"):
            metadata.pop(key, None)
        metadata.update(sample_steps=teacher["sample_steps"], guidance=teacher["guidance"], generator="teacher")
    elif metadata.get("prediction") == "v":
        model = VPredictionStudent(config, schedule.alphas_cumprod)
        model.load_state_dict(payload["state_dict"])
        metadata["generator"] = "few-step student"
    else:
        model = UNet(config)
        model.load_state_dict(payload["state_dict"])
        metadata["generator"] = "release"
    model.to(device).eval()
    return model, schedule, metadata


def sampler_times(metadata: dict[str, Any], steps: int | None, sampler: str = "ddim") -> tuple[int, list[int] | None]:
    """(steps, timesteps) for sampling a loaded model; ``steps`` is the user's override (None: the run's).

    A few-step student samples only with DDIM at the times it learned: anything else is refused.
    """
    times = metadata.get("timesteps")
    if times is None:
        return steps or int(metadata["sample_steps"]), None
    if sampler != "ddim":
        raise ConfigError(f"the few-step student samples with ddim only, not {sampler}", field="sampler",
                          value=sampler, remedy="leave out --sampler, or sample the teacher with --generator teacher")
    if steps not in (None, len(times)):
        raise ConfigError(f"the few-step student samples in exactly {len(times)} steps, not {steps}", field="steps",
                          value=steps, remedy="leave out --steps, or sample the teacher with --generator teacher")
    return len(times), list(times)


def generate(model, schedule, *, labels, image_shape: tuple[int, ...], sampler: SamplerKind = "ddim", steps: int = 25,
             guidance: float = 0.0, seed: int = 0, device: str = "cpu", first_index: int = 0,
             timesteps: list[int] | None = None):
    """Images in [-1, 1] (on the CPU) for the given class labels: image ``first_index + k`` has label ``labels[k]``.

    ``timesteps``: the DDIM times of a few-step student (:func:`sampler_times`).

    Images are made in blocks of :data:`SAMPLING_BLOCK` consecutive indices (one model batch each), and
    a block's randomness comes from its own generator seeded with ``(seed, block index)``
    (:class:`ImageNoise`): an image depends only on the public ``seed``, its index and its block's
    labels, never on how the work is split. Under ``--nproc N`` (:mod:`dpsad_core.sampling_workers`)
    the blocks are dealt to the workers and gathered back in order, so the images do not depend on N.
    """
    import torch

    from dpsad_core import sampling_workers

    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.numel() == 0:
        raise ConfigError("nothing to sample: the count is 0", field="count", value=0)
    request = SamplingRequest(labels=labels, image_shape=tuple(image_shape), sampler=sampler, steps=steps,
                              guidance=guidance, seed=seed, first_index=first_index,
                              timesteps=tuple(timesteps) if timesteps is not None else None)
    crew = sampling_workers.active_crew()
    if crew is not None:
        return crew.generate(model, schedule, request, device=device)
    return torch.cat([sample_span(model, schedule, request, span, device=device) for span in request.spans()])


#: Images per block: the unit of start noise, of a model batch and of the split across workers. Changing
#: it changes which images a seed gives.
SAMPLING_BLOCK = 128


@dataclass(frozen=True)
class SamplingRequest:
    """One ``generate`` call: what every worker needs to make its share of the images."""

    labels: Any                      # int64 tensor, one label per image
    image_shape: tuple[int, ...]
    sampler: SamplerKind
    steps: int
    guidance: float
    seed: int
    first_index: int = 0
    timesteps: tuple[int, ...] | None = None   # a few-step student's DDIM times

    def spans(self) -> list[tuple[int, int]]:
        """(start, end) positions in ``labels`` of each block: ends at multiples of SAMPLING_BLOCK (global)."""
        count = int(self.labels.numel())
        edges = [0]
        next_edge = (self.first_index // SAMPLING_BLOCK + 1) * SAMPLING_BLOCK - self.first_index
        while next_edge < count:
            edges.append(next_edge)
            next_edge += SAMPLING_BLOCK
        edges.append(count)
        return list(pairwise(edges))


def sample_span(model, schedule, request: SamplingRequest, span: tuple[int, int], *, device: str):
    """The images at positions ``span`` of ``request`` (one block or part of one), on the CPU."""
    from dpsad_core.diffusion import sample

    start, end = span
    noise = ImageNoise(request.seed, request.first_index + start, end - start, request.image_shape, device)
    labels = request.labels[start:end].to(device)
    return sample(model, schedule, labels, shape=request.image_shape, sampler=request.sampler, steps=request.steps,
                  guidance=request.guidance, null_label=model.config.num_classes, noise=noise,
                  timesteps=list(request.timesteps) if request.timesteps is not None else None).cpu()


class ImageNoise:
    """Standard normal draws for images ``first .. first + count - 1``, each from its block's own generator.

    Block ``b`` (images ``b * SAMPLING_BLOCK`` onwards) has a CPU generator seeded from ``(seed, b)``
    (numpy's SeedSequence mixes the two), and every draw takes a whole block's worth and keeps the
    rows asked for: image i's noise is the same whatever range a call covers and on any device.
    """

    def __init__(self, seed: int, first: int, count: int, image_shape: tuple[int, ...], device) -> None:
        import torch

        self._shape, self._device, self._parts = tuple(image_shape), device, []
        for block in range(first // SAMPLING_BLOCK, (first + count - 1) // SAMPLING_BLOCK + 1):
            low = max(first, block * SAMPLING_BLOCK) - block * SAMPLING_BLOCK
            high = min(first + count, (block + 1) * SAMPLING_BLOCK) - block * SAMPLING_BLOCK
            state = np.random.SeedSequence([int(seed), block]).generate_state(1, dtype=np.uint64)[0]
            self._parts.append((torch.Generator().manual_seed(int(state)), low, high))

    def __call__(self):
        import torch

        draws = [torch.randn((SAMPLING_BLOCK, *self._shape), generator=generator)[low:high]
                 for generator, low, high in self._parts]
        return torch.cat(draws).to(self._device)
