"""Where a bundle's images come from: sampled from a released ``model.pt``, or read from a DP-RDM run.

One bundle writer (:mod:`dpsad_core.export.bundle`) serves both: it asks an :class:`ImageSource` for
the images in chunks and writes the same folders, labels, report, manifest and signature whatever
made them.

- :func:`model_source`: a DP-SAD run's released model is sampled (post-processing: free).
- :func:`samples_source`: a DP-RDM run has no model; every one of its images cost privacy when it was
  generated, so the bundle takes images from the run's ``samples.npz`` and never makes new ones.
  ``--count``/``--per-class`` pick a seeded subset; without them every image is exported. Images of
  example queries (label -1) are kept, in their own folder ``example-queries``: they were generated
  under the same accounted mechanism, and their query image is a public image the user supplied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dpsad_core.errors import ConfigError, RunError

#: Folder and class name of DP-RDM images generated for an example query (label -1).
EXAMPLE_FOLDER = "example-queries"
EXAMPLE_CLASS = "example query"
EXAMPLE_LABEL = -1


@dataclass(frozen=True)
class ImageSource:
    """The images a bundle will hold and how to describe where they came from.

    Attributes
    ----------
    class_names
        The run's classes; ``labels`` index them (``-1``: a DP-RDM example query).
    labels
        The label of every image, in bundle order (an int64 array).
    chunks
        Called once by the writer: yields ``(start, uint8 pixels N x H x W[ x C])`` in order.
    model
        The report's ``model`` section: what the images came from (no private model is shipped).
    settings
        Fields added to the report's ``bundle`` section (sampler settings, or the subset's rule).
    contents
        One sentence for the report saying what the bundle holds and what it does not.
    """

    class_names: list[str]
    labels: Any = field(repr=False)
    chunks: Callable[[], Iterator[tuple[int, Any]]] = field(repr=False)
    model: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    contents: str = ""

    def class_name(self, label: int) -> str:
        return EXAMPLE_CLASS if label == EXAMPLE_LABEL else self.class_names[label]


def model_source(run, settings) -> ImageSource:
    """Images sampled from ``run``'s released ``model.pt`` (``settings``: the export's options)."""
    import numpy as np

    from dpsad_core.devices import resolve_device
    from dpsad_core.export.manifest import sha256_file
    from dpsad_core.sampling import SAMPLING_BLOCK, generate, load_released_model, sampler_times, to_uint8
    from dpsad_core.sampling_workers import crew_size, dismiss_workers

    if settings.per_class is None and settings.count is None:
        raise ConfigError("give one of per_class and count", field="per_class", value=None,
                          remedy="e.g. --per-class 100 or --count 1000")
    device = resolve_device(settings.device)
    model, schedule, meta = load_released_model(run.model_path, device, generator=settings.generator)
    class_names = [str(name) for name in meta["class_names"]]
    num_classes = len(class_names)
    if settings.per_class is not None:
        labels = np.repeat(np.arange(num_classes), settings.per_class)
    else:  # spread as evenly as possible: the first (count mod K) classes get one more
        labels = np.sort(np.arange(settings.count) % num_classes)
    steps, times = sampler_times(meta, settings.steps, settings.sampler)
    guidance = meta["guidance"] if settings.guidance is None else settings.guidance
    shape = (model.config.image_channels, model.config.resolution, model.config.resolution)

    def chunks():
        # Whole sampling blocks, enough for every worker under --nproc: image i depends only on the seed and
        # i (generate()), so neither the chunk size nor the number of workers changes the bundle.
        size = SAMPLING_BLOCK * crew_size() * max(1, settings.batch_size // SAMPLING_BLOCK)
        for start in range(0, len(labels), size):
            images = generate(model, schedule, labels=labels[start:start + size], image_shape=shape,
                              sampler=settings.sampler, steps=steps, guidance=guidance, seed=settings.seed,
                              device=device, first_index=start, timesteps=times)
            yield start, to_uint8(images)
        dismiss_workers()  # under --nproc N: all sampled; the other workers need not wait for the report and zip

    return ImageSource(
        class_names=class_names, labels=labels, chunks=chunks,
        model={"sha256": sha256_file(run.model_path), "file": "model.pt", "shipped": False,
               "note": "the released model the images were sampled from; it stays with the exporter. Teacher and "
                       "discriminator weights are never exported"},
        settings={"sampler": settings.sampler, "sample_steps": steps, "guidance": guidance, "seed": settings.seed,
                  "generator": meta["generator"]},
        contents="synthetic images sampled from the released model only: no training image, no teacher or "
                 "discriminator weights, no per-record value")


def samples_source(run, result, settings) -> ImageSource:
    """Images already generated by DP-RDM run ``run`` (its ``samples.npz``), all or a seeded subset.

    Raises
    ------
    RunError
        ``samples.npz`` is missing or unreadable.
    ConfigError
        ``count`` or ``per_class`` asks for more images than the run generated; the message says how
        many there are (exporting cannot make more: every image cost privacy).
    """
    import numpy as np

    path = run.path / "samples.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            pixels, all_labels = np.asarray(data["images"]), np.asarray(data["labels"]).astype(np.int64)
            class_names = [str(name) for name in data["class_names"]]
    except (OSError, KeyError, ValueError) as error:
        raise RunError(f"the DP-RDM images of run {run.run_id} cannot be read from {path} ({error})",
                       remedy="generate them again: dpsad-core rdm generate (a new run, new privacy spend)") from None
    chosen = select_subset(all_labels, per_class=settings.per_class, count=settings.count, seed=settings.seed,
                           class_names=class_names, run_id=run.run_id)
    subset, labels = pixels[chosen], all_labels[chosen]

    def chunks():
        for start in range(0, len(labels), settings.batch_size):
            yield start, subset[start:start + settings.batch_size]

    mechanism = result.mechanism or {}  # result: the run's RunResult
    public = result.public_model or {}
    return ImageSource(
        class_names=class_names, labels=labels, chunks=chunks,
        model={"sha256": None, "file": None, "shipped": False,
               "public_model": public.get("name"), "public_dataset": public.get("public_dataset"),
               "encoder_digest": public.get("encoder_digest"),
               "note": "DP-RDM trains no model on the private data: the images come from a public retrieval-"
                       "augmented diffusion model (trained on public data only) conditioned on privately retrieved "
                       "context; no private model exists to hash or ship"},
        settings={"sampler": mechanism.get("sampler"), "guidance": mechanism.get("guidance"), "seed": settings.seed,
                  "source": "samples.npz of the DP-RDM run (no new image was generated by the export)",
                  "images_in_run": int(len(all_labels)),
                  "subset": ("all" if settings.per_class is None and settings.count is None
                             else f"a seeded random subset (seed {settings.seed})"),
                  "example_queries": (f"images of example queries (label {EXAMPLE_LABEL}) are in "
                                      f"images/{EXAMPLE_FOLDER}/")},
        contents="synthetic images generated by DP-RDM private retrieval when the run was made (every one counted "
                 "by the accountant): no private image, no embedding of the private index, no per-record value")


def select_subset(labels, *, per_class: int | None, count: int | None, seed: int, class_names: list[str],
                  run_id: str):
    """Indices (ascending) of the images to export: all, ``per_class`` of every group, or ``count`` in all.

    A group is a queried class, or the example queries. ``count`` is spread over the groups as evenly
    as their sizes allow. The choice inside a group is random with ``seed``, so it is reproducible.
    """
    import numpy as np

    total = len(labels)
    if per_class is None and count is None:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    groups = {int(label): rng.permutation(np.flatnonzero(labels == label)) for label in np.unique(labels)}
    remedy = (f"ask for at most what exists, or leave out --count/--per-class to export all {total}; exporting "
              "makes no new images (each DP-RDM image cost privacy: generate more with dpsad-core rdm generate)")
    if per_class is not None:
        short = {label: len(members) for label, members in groups.items() if len(members) < per_class}
        if short:
            names = ", ".join(f"{EXAMPLE_CLASS if label == EXAMPLE_LABEL else class_names[label]!r}: {size}"
                              for label, size in short.items())
            raise ConfigError(f"--per-class {per_class} is more than DP-RDM run {run_id} generated for some "
                              f"classes ({names})", field="per_class", value=per_class, remedy=remedy)
        return np.sort(np.concatenate([members[:per_class] for members in groups.values()]))
    count = total if count is None else count  # given here: with neither, everything was returned above
    if count > total:
        raise ConfigError(f"--count {count} is more than the {total} images DP-RDM run {run_id} generated",
                          field="count", value=count, remedy=remedy)
    # Round-robin over the groups (the i-th pick of every group before any (i+1)-th): as even as possible.
    order = sorted(((rank, label, int(index)) for label, members in groups.items()
                    for rank, index in enumerate(members)))
    return np.sort(np.array([index for _, _, index in order[:count]], dtype=np.int64))
