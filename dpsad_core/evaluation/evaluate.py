"""Evaluate a finished run: sample from its released model, score utility, fidelity and memorisation.

:func:`evaluate_run` is a generator of :class:`~dpsad_core.evaluation.report.EvaluationStage` events
ending with :class:`~dpsad_core.evaluation.report.EvaluationFinished`; the CLI prints them and the
GUI can relay them, as for training. :func:`evaluate_images` scores a given synthetic set (the
benchmark and tests use it directly).

The run's private training data is resolved from its ``config.json`` exactly as a resume does, and
its fingerprint is checked, so the memorisation metrics compare against the data the model saw.

A DP-RDM run (``dpsad-core rdm generate``) has no model: its ``samples.npz`` is the synthetic set
(example-query images, label -1, have no class and are left out), and the private retrieval set,
resolved as the index was built from it and checked by fingerprint, plays the training set's part
for memorisation (see :func:`_evaluate_rdm_run`).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.errors import ConfigError, RunError
from dpsad_core.evaluation.report import (
    CLOSEST_PAIRS_FILE,
    PRIVACY_NOTE,
    SCHEMA_VERSION,
    SELECTION_NOTE,
    EvaluationFinished,
    EvaluationOptions,
    EvaluationStage,
    write_evaluation,
)
from dpsad_core.runs.records import RunConfigRecord, RunKind, RunState

STAGES = ("load", "sample", "downstream", "fidelity", "memorisation")


def evaluate_run(run_ref: str, *, test: str, workspace: Path, options: EvaluationOptions | None = None
                 ) -> Iterator[EvaluationStage | EvaluationFinished]:
    """Evaluate run ``run_ref`` (id or folder) against the real test data ``test`` and store the result.

    Parameters
    ----------
    run_ref
        A run id in the workspace, or a run folder.
    test
        Real held-out data the model never saw: "demo" (its test split), a saved dataset's name, or
        a path (IDX folders and MedMNIST files give their test split).
    workspace
        The workspace (runs, saved datasets, the feature-extractor cache).
    options
        Counts, seeds, device; see :class:`EvaluationOptions`.

    Yields
    ------
    EvaluationStage, then EvaluationFinished
        The last event holds the result dict also written to ``<run folder>/evaluation.json``.
    """
    from dpsad_core.data import resolve_data_source
    from dpsad_core.devices import resolve_device
    from dpsad_core.sampling import generate, load_released_model, sampler_times
    from dpsad_core.sampling_workers import dismiss_workers
    from dpsad_core.training import RunFolder, TrainConfig

    options = options or EvaluationOptions()
    total = len(STAGES)
    yield EvaluationStage("load", 1, total, "loading the released model, the training data and the test data")
    run = RunFolder.open(workspace, run_ref)
    stored = run.config()
    if stored.kind is RunKind.DP_RDM:
        yield from _evaluate_rdm_run(run, stored, test=test, workspace=workspace, options=options)
        return
    device = resolve_device(options.device)
    model, schedule, meta = load_released_model(run.model_path, device, generator=options.generator)
    config = TrainConfig.from_dict(stored.config)
    training = resolve_data_source(config.data, workspace=workspace, resolution=stored.resolution, min_records=0)
    if training.fingerprint(workspace) != stored.fingerprint:
        raise RunError(f"the data at {config.data!r} is not the data run {run.run_id} was trained on "
                       "(its fingerprint differs)", remedy="restore the original training data")
    real_test = resolve_data_source(test, workspace=workspace, split="test", duplicates="keep",
                                    resolution=training.resolution, channels=training.channels, min_records=1)
    _check_held_out(real_test, training, test, workspace)

    steps, times = sampler_times(meta, options.sample_steps)
    guidance = meta["guidance"] if options.guidance is None else options.guidance
    began = time.perf_counter()
    if options.samples:
        yield EvaluationStage("sample", 2, total, f"reading the synthetic images in {options.samples}")
        synthetic, labels = load_samples(options.samples, channels=training.channels,
                                         resolution=training.resolution, num_classes=training.num_classes)
    else:
        count = options.synthetic_count(training.num_classes)
        yield EvaluationStage("sample", 2, total,
                              f"sampling {count} synthetic images from the {meta['generator']} ({steps} DDIM steps, "
                              f"guidance {guidance:g})")
        labels = np.sort(np.arange(count) % training.num_classes)
        shape = (model.config.image_channels, model.config.resolution, model.config.resolution)
        images = generate(model, schedule, labels=labels, image_shape=shape, steps=steps, timesteps=times,
                          guidance=guidance, seed=options.seed, device=device)
        dismiss_workers()  # under --nproc N: the other workers are done; the scoring below is rank 0's
        synthetic = ((images.numpy() + 1) / 2).clip(0, 1).astype(np.float32)
    sample_seconds = time.perf_counter() - began

    stages = evaluate_images(synthetic, labels, training=training, test=real_test, workspace=workspace,
                             options=options, first_stage=3, closest_pairs_png=run.path / CLOSEST_PAIRS_FILE)
    result = yield from stages
    result["run_id"] = run.run_id
    result["private_run"] = bool(meta["private"])
    if options.samples:
        result["config"].update(samples_file=Path(options.samples).name, sampler=None, sample_steps=None)
    else:
        result["config"].update(samples_file=None, sampler="ddim", sample_steps=steps, generator=meta["generator"])
    result["config"].update(guidance=None if options.samples else guidance, device=device,
                            seconds={**result["config"]["seconds"], "sample": round(sample_seconds, 2)})
    path = write_evaluation(run.path, result)
    yield EvaluationFinished(run_id=run.run_id, path=path, result=result)


def _check_held_out(real_test, training, test: str, workspace: Path) -> None:
    """The test set must not be the training set: accuracy on it would say nothing about new data."""
    if real_test.fingerprint(workspace) == training.fingerprint(workspace):
        raise ConfigError(f"the test data {test!r} is the training data of this run (same fingerprint)",
                          field="test", value=test,
                          remedy="pass real images the model never saw: the test split of the same source "
                                 "(for example the MNIST folder or the .npz file) or a held-out dataset")


def _evaluate_rdm_run(run, stored: RunConfigRecord, *, test: str, workspace: Path, options: EvaluationOptions
                     ) -> Iterator[EvaluationStage | EvaluationFinished]:
    """Evaluate a DP-RDM run's generated images (no sampling: each image cost privacy when it was made)."""
    from dpsad_core.data import resolve_data_source

    total = len(STAGES)
    if options.samples or options.count is not None or options.per_class is not None:
        raise ConfigError(f"run {run.run_id} is a DP-RDM run: its generated images (samples.npz) are what is "
                          "evaluated, and making more would spend privacy", field="count",
                          value=options.samples or options.count or options.per_class,
                          remedy="drop --count/--per-class/--samples (generate more with dpsad-core rdm generate)")
    path = run.path / "samples.npz"
    if run.state is not RunState.FINISHED or not path.is_file() or not run.has_result:
        raise RunError(f"DP-RDM run {run.run_id} did not finish, so it has no complete set of images",
                       remedy="generate a new one with dpsad-core rdm generate")
    training = rdm_private_data(stored, workspace=workspace, run_id=run.run_id)
    real_test = resolve_data_source(test, workspace=workspace, split="test", duplicates="keep",
                                    resolution=training.resolution, channels=training.channels, min_records=1)
    _check_held_out(real_test, training, test, workspace)
    began = time.perf_counter()
    with np.load(path, allow_pickle=False) as data:
        images, labels = np.asarray(data["images"]), np.asarray(data["labels"]).astype(np.int64)
    queried = labels >= 0
    yield EvaluationStage("sample", 2, total, f"reading the {int(queried.sum())} class-query images DP-RDM run "
                                              f"{run.run_id} generated ({int((~queried).sum())} example-query "
                                              "images, which have no class, left out)")
    synthetic, labels = conform_samples(images[queried], labels[queried], path=path, channels=training.channels,
                                        resolution=training.resolution, num_classes=training.num_classes,
                                        remedy="generate the run again with dpsad-core rdm generate")
    sample_seconds = time.perf_counter() - began
    result = yield from evaluate_images(synthetic, labels, training=training, test=real_test, workspace=workspace,
                                        options=options, first_stage=3,
                                        closest_pairs_png=run.path / CLOSEST_PAIRS_FILE)
    run_result = run.result()
    mechanism = run_result.mechanism or {}
    result["run_id"] = run.run_id
    result["private_run"] = run_result.private
    result["config"].update(recipe=run_result.recipe, samples_file=path.name, sampler=mechanism.get("sampler"),
                            sample_steps=None, guidance=mechanism.get("guidance"),
                            device=result["downstream"]["cnn"]["device"],  # where its CNN trained: nothing sampled
                            example_queries_left_out=int((~queried).sum()),
                            training_set_role="the private retrieval set (DP-RDM never trained on it)",
                            seconds={**result["config"]["seconds"], "sample": round(sample_seconds, 2)})
    written = write_evaluation(run.path, result)
    yield EvaluationFinished(run_id=run.run_id, path=written, result=result)


def rdm_private_data(stored: RunConfigRecord, *, workspace: Path, run_id: str):
    """The private retrieval set of a DP-RDM run, as its index was built (see ``rdm.index.build_index``).

    Resolved from ``config.json``'s ``data``, checked by the fingerprint of the records as imported,
    then converted to the public model's resolution and channels (as the index was).
    """
    from dpsad_core.data import conform_dataset, resolve_data_source
    from dpsad_core.errors import DataImportError

    data = stored.data
    if not data:
        raise RunError(f"DP-RDM run {run_id} does not record where its private data is",
                       remedy="the run predates this record: evaluate a newer DP-RDM run")
    resolution, channels = stored.resolution, stored.channels
    try:
        dataset = resolve_data_source(data, workspace=workspace, min_records=0)
    except DataImportError:  # images of mixed sizes: converted while loading, as the index did
        dataset = resolve_data_source(data, workspace=workspace, resolution=resolution, channels=channels,
                                      min_records=0)
    if dataset.fingerprint(workspace) != stored.fingerprint:
        raise RunError(f"the data at {data!r} is not the private data DP-RDM run {run_id} retrieved from (its "
                       "fingerprint differs)", remedy="restore the original private data")
    return conform_dataset(dataset, resolution=resolution, channels=channels)


def evaluate_images(synthetic: np.ndarray, labels: np.ndarray, *, training, test, workspace: Path,
                    options: EvaluationOptions | None = None, first_stage: int = 1,
                    closest_pairs_png: Path | None = None) -> Generator[EvaluationStage, None, dict[str, Any]]:
    """Score synthetic images (N x C x H x W in [0, 1]) against real training and test datasets.

    A generator of stage events whose return value (``StopIteration.value``) is the result dict
    in the ``evaluation.json`` layout (without the run's own fields).
    """
    from dpsad_core.devices import resolve_device
    from dpsad_core.evaluation.downstream import downstream_accuracy
    from dpsad_core.evaluation.features import cached_feature_extractor, unseen_records
    from dpsad_core.evaluation.fidelity import fidelity, frechet_distance
    from dpsad_core.evaluation.logistic import logistic_accuracy
    from dpsad_core.evaluation.memorisation import memorisation, save_closest_pairs
    from dpsad_core.runs.folder import utc_now

    options = options or EvaluationOptions()
    _check_sets(synthetic, labels, training, test, workspace)
    total = first_stage - 1 + 3
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    yield EvaluationStage("downstream", first_stage, total,
                          "training a CNN and a logistic regression on the synthetic images")
    cnn = downstream_accuracy(synthetic, labels, test.images, test.labels, num_classes=training.num_classes,
                              epochs=options.cnn_epochs, min_steps=options.cnn_min_steps, seed=options.seed,
                              device=resolve_device(options.device))
    logistic = logistic_accuracy(synthetic, labels, test.images, test.labels, seed=options.seed)
    seconds["downstream"], clock = round(time.perf_counter() - clock, 2), time.perf_counter()

    yield EvaluationStage("fidelity", first_stage + 1, total,
                          "Frechet distance and precision/recall on the features of a classifier trained (or "
                          "loaded from the cache) on the real training data")
    extractor, cached = cached_feature_extractor(training, workspace=workspace, spec=options.feature_spec)
    fake_features, test_features = extractor(synthetic), extractor(test.images)
    fid_result = fidelity(test_features, test.labels, fake_features, labels, class_names=training.class_names,
                          k=options.k)
    # Reference: real training images the extractor did not fit on, as many as there are synthetic
    # images where possible, against the same test set: about what a perfect generator would score
    # (fewer images raise a Frechet distance, so compare it at the same count).
    unseen = unseen_records(training.num_records, extractor.spec)
    reference_index = np.random.default_rng(options.seed).permutation(unseen)[:len(synthetic)]
    training_features = extractor(training.images)
    reference = frechet_distance(test_features, training_features[reference_index]) \
        if len(reference_index) >= 2 else None
    fid = None
    if options.inception_weights:
        from dpsad_core.evaluation.inception import fid_from_weights

        fid = fid_from_weights(options.inception_weights, test.images, synthetic)
    seconds["fidelity"], clock = round(time.perf_counter() - clock, 2), time.perf_counter()

    yield EvaluationStage("memorisation", first_stage + 2, total,
                          "distance of each synthetic image to its closest training image, against the test set's")
    pixel = memorisation(synthetic, training.images, test.images, space="pixel")
    feature_space = memorisation(fake_features, training_features, test_features, space="classifier features")
    pairs_image = None
    if closest_pairs_png is not None:
        pairs_image = save_closest_pairs(pixel, synthetic, training.images, closest_pairs_png).name
    seconds["memorisation"] = round(time.perf_counter() - clock, 2)

    pixel_dict = pixel.to_dict()
    return {
        "schema": SCHEMA_VERSION,
        "computed": utc_now(),
        "privacy_note": PRIVACY_NOTE,
        "downstream": {
            "cnn": {"accuracy": cnn.test_accuracy, **cnn.to_dict()},
            "logistic": {"accuracy": logistic.test_accuracy, **logistic.to_dict()},
            "selection": SELECTION_NOTE,
        },
        "fidelity": {
            "frechet_distance_classifier_features": fid_result.frechet_distance,
            "frechet_distance_classifier_features_real_reference": reference,
            "real_reference_count": int(len(reference_index)),
            "real_reference": "real training images the feature classifier was not fitted on, against the test set",
            "fid": fid,
            "precision": fid_result.precision, "recall": fid_result.recall, "k": fid_result.k,
            "per_class": fid_result.per_class,
            "reference_set": "the real test set",
            "feature_extractor": dict(extractor.describe(), loaded_from_cache=cached),
        },
        "memorisation": {
            "dcr_share_closer_to_training_than_holdout": pixel.share_closer_to_training_than_holdout,
            "n": pixel.synthetic_count,
            "near_copy_count": pixel.near_copy_count,
            "near_copy_threshold": pixel.near_copy_threshold,
            "near_copy_rule": (f"a synthetic image is a near-copy when its distance to the closest training image "
                               f"is at most the {pixel.near_copy_quantile:.0%} quantile of the real test images' "
                               "distances (about that share is flagged even without copying)"),
            "holdout": "the real test set",
            "distance": "root-mean-square pixel difference on images in [0, 1]",
            "pixel": pixel_dict,
            "feature_space": feature_space.to_dict(),
            "closest_pairs_image": pairs_image,
        },
        "config": {
            "synthetic_count": int(len(synthetic)),
            "synthetic_per_class": {name: int((labels == i).sum()) for i, name in enumerate(training.class_names)},
            "seed": options.seed, "cnn_epochs": options.cnn_epochs, "cnn_min_steps": options.cnn_min_steps,
            "k": options.k,
            "training_set": _describe(training, workspace), "test_set": _describe(test, workspace),
            "class_names_match": tuple(test.class_names) == tuple(training.class_names),
            "inception_weights": Path(options.inception_weights).name if options.inception_weights else None,
            "seconds": seconds,
        },
    }


def load_samples(path: str | Path, *, channels: int, resolution: int, num_classes: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(images N x C x H x W float32 in [0, 1], labels) from a ``dpsad-core sample --npz`` file."""
    from dpsad_core.errors import DataImportError

    path = Path(path)
    remedy = "pass the .npz written by: dpsad-core sample RUN --npz FILE"
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = np.asarray(data["images"]), np.asarray(data["labels"])
    except KeyError as error:
        raise DataImportError(f"has no {error} array", path=path, remedy=remedy) from None
    except (OSError, ValueError) as error:
        raise DataImportError(f"is not a readable .npz file ({error})", path=path, remedy=remedy) from None
    return conform_samples(images, labels, path=path, channels=channels, resolution=resolution,
                           num_classes=num_classes, remedy=remedy)


def conform_samples(images: np.ndarray, labels: np.ndarray, *, path: Path, channels: int, resolution: int,
                    num_classes: int, remedy: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x H x W, N x H x W x C or N x C x H x W; uint8 or [0, 1]) as N x C x H x W float32 in [0, 1]."""
    from dpsad_core.errors import DataImportError

    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.ndim != 4 or images.shape[1:] != (channels, resolution, resolution) or len(labels) != len(images):
        raise DataImportError(f"holds images of shape {images.shape} and {len(labels)} labels; the run's model "
                              f"makes {channels} x {resolution} x {resolution} images", path=path, remedy=remedy)
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise DataImportError(f"labels must be whole numbers 0..{num_classes - 1}", path=path, remedy=remedy)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return (images.astype(np.float32) / scale).clip(0, 1), labels.astype(np.int64)


def _check_sets(synthetic: np.ndarray, labels: np.ndarray, training, test, workspace: Path) -> None:
    if synthetic.ndim != 4 or synthetic.shape[1:] != training.images.shape[1:]:
        raise ConfigError(f"synthetic images of shape {synthetic.shape} do not match the training data "
                          f"({training.images.shape[1:]})", field="synthetic")
    if not np.isfinite(synthetic).all():
        raise RunError("the model sampled NaN or infinite values", remedy="the model diverged; train it again")
    if len(synthetic) < 20 or len(labels) != len(synthetic):
        raise ConfigError(f"need at least 20 synthetic images with one label each, got {len(synthetic)}",
                          field="count", value=len(synthetic), remedy="pass --count 20 or more")
    if test.num_classes != training.num_classes:
        raise ConfigError(f"the test set {test.name!r} has {test.num_classes} classes, the training data "
                          f"{training.num_classes}", field="test", value=test.name,
                          remedy="pass the test split of the data the run was trained on")
    if test.fingerprint(workspace) == training.fingerprint(workspace):
        raise ConfigError(f"the test set {test.name!r} is the training data itself", field="test", value=test.name,
                          remedy="pass real data the model never saw (the dataset's test split)")


def _describe(dataset, workspace: Path) -> dict[str, Any]:
    return {"name": dataset.name, "num_records": dataset.num_records, "fingerprint": dataset.fingerprint(workspace),
            "class_names": list(dataset.class_names), "resolution": dataset.resolution}

