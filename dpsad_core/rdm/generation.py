"""DP-RDM generation: answer queries on the private index within a budget, into a run folder.

The run lives as a training run does (:mod:`dpsad_core.runs.lifecycle`). Unless the index's N is declared
public, the run first draws a noisy count of its privacy units from its secret randomness and charges it
(:mod:`dpsad_core.privacy.noisy_count`); the default delta, a calibrated sigma and the count the report states
come from it, never from the exact N. Before any query reads the private index, the whole request is priced:
the count and ``M`` queries, one sampled Gaussian mechanism run ``M`` times (:mod:`dpsad_core.rdm.planner`).
The request is refused (:class:`~dpsad_core.errors.PrivacyBudgetError`) when that exceeds the run's
``epsilon`` or, composed with every earlier spend on the same dataset, the ledger's cap; the ledger reserves it
in the same transaction. Each batch of queries is recorded in the ledger *before* it reads the index, so a
kill never leaves an uncounted query.

The run folder ``<workspace>/runs/<run_id>/`` holds (no model: every image cost privacy)::

    config.json   the request: recipe "dp-rdm", target epsilon, k, q, sigma, lambda, queries, model, index;
                  the plan (mechanisms, the count it was planned with: private_units, units_from, count_mechanism)
    status.json   running / finished / interrupted / failed (a RunState)
    privacy.json  the accountant's history
    result.json   private, epsilon, delta, accountant values, mechanisms, dataset, unit of privacy
    samples.npz   images (uint8), labels (the queried class; -1 for example queries), class_names, queries
    samples/grid.png
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpsad_core.atomic import atomic_write_bytes
from dpsad_core.errors import ConfigError, PrivacyBudgetError
from dpsad_core.events import PhaseStarted, RunFinished, RunInterrupted, RunStarted, SampleGrid, StepCompleted
from dpsad_core.export.names import PUBLIC_NAME, exported_name
from dpsad_core.privacy.noisy_count import count_mechanism
from dpsad_core.privacy.randomness import REPRODUCIBLE_NOISE_PART
from dpsad_core.rdm.planner import RetrievalSettings, queries_for_budget
from dpsad_core.runs.lifecycle import (
    COUNT_HOLD_DELTA,
    LedgerAccount,
    RunLife,
    certified_values,
    count_kept,
    count_plan,
    draw_count,
    secret_randomness,
)
from dpsad_core.runs.records import DP_RDM_RECIPE, RunConfigRecord, RunResult

__all__ = ["RECIPE", "GenerateConfig", "QuerySpec", "generate_rdm", "plan_query_list"]

RECIPE = DP_RDM_RECIPE


@dataclass(frozen=True)
class QuerySpec:
    """One query: ``kind`` "class" (retrieval restricted to class ``label``) or "example" (a public image)."""

    kind: str
    label: int
    description: str
    embedding: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class GenerateConfig:
    """Settings of ``dpsad-core rdm generate``.

    ``query_mode`` picks the query of a class query: ``"prototype"`` (the mean public embedding of the
    class of the same name) or ``"exemplar"`` (a random public image of that class). When the public
    data has no class of that name, both fall back to a random public exemplar of any class.
    ``sigma`` None: the smallest noise for which the queries (after the run's noisy count) fit ``epsilon``,
    calibrated once the count is drawn (the default delta comes from it).
    """

    model: str
    index: str
    epsilon: float
    k: int = 10
    sample_rate: float = 0.02          # q in the paper, the CLI (--q) and config.json
    sigma: float | None = 0.1
    mix: float = 1.0
    delta: float | None = None
    per_class: int = 0
    classes: tuple[str, ...] = ()
    query_mode: str = "prototype"
    examples: tuple[str, ...] = ()
    per_example: int = 1
    guidance: float = 1.0
    sample_steps: int = 25
    batch_size: int = 100
    seed: int | None = None            # public randomness only: exemplar queries, image sampling
    privacy_seed: int | None = None    # reproducible subsample and noise: the run is NOT private
    allow_public_overlap: bool = False  # research: example images that are private records (run NOT private)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "examples", tuple(str(path) for path in self.examples))
        # Validates k, q and sigma (a sigma still to calibrate is checked when it is).
        RetrievalSettings(k=self.k, sample_rate=self.sample_rate, sigma=1.0 if self.sigma is None else self.sigma)
        if not 0.0 < self.mix <= 1.0:
            raise ConfigError(f"lambda must be in (0, 1], got {self.mix!r}", field="lambda", value=self.mix,
                              remedy="lambda = 0 would ignore the private data")
        if self.query_mode not in ("prototype", "exemplar"):
            raise ConfigError(f"unknown query mode {self.query_mode!r}", field="query_mode", value=self.query_mode,
                              remedy="use 'prototype' or 'exemplar'")
        for name in ("per_class", "per_example"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}", field=name, value=value)
        for name in ("sample_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}", field=name, value=value)
        if not (isinstance(self.epsilon, (int, float)) and math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError(f"epsilon must be a finite number > 0, got {self.epsilon!r}", field="epsilon",
                              value=self.epsilon)
        if self.per_class == 0 and not self.examples:
            raise ConfigError("no queries: give --per-class N (class queries) and/or --example IMAGE",
                              field="per_class", value=0)

    @property
    def settings(self) -> RetrievalSettings:
        if self.sigma is None:
            raise ConfigError("sigma is calibrated by the run, after its noisy count", field="sigma")
        return RetrievalSettings(k=self.k, sample_rate=self.sample_rate, sigma=self.sigma)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lambda"], data["q"] = data.pop("mix"), data.pop("sample_rate")  # the paper's symbols, as written
        data["classes"], data["examples"] = list(self.classes), list(self.examples)
        return data


def plan_query_list(config: GenerateConfig, *, public_model, index, rng: np.random.Generator) -> list[QuerySpec]:
    """The queries a request makes, in order: class queries class by class, then example queries.

    Queries are built from public data only (prototypes, exemplars, the user's public images) and the
    index's class names (the private dataset's declared classes, not its contents).
    """
    from dpsad_core.rdm.encoder import embed_images

    queries: list[QuerySpec] = []
    index_classes = index.class_names
    if config.per_class:
        wanted = config.classes or index_classes
        unknown = [name for name in wanted if name not in index_classes]
        if unknown:
            raise ConfigError(f"class(es) {', '.join(unknown)} are not classes of the private index {index.name!r}",
                              field="classes", value=list(unknown),
                              remedy=f"choose among: {', '.join(index_classes)}")
        prototypes = public_model.prototypes()
        for name in wanted:
            label = index_classes.index(name)
            public_label = public_model.class_names.index(name) if name in public_model.class_names else None
            pool = np.flatnonzero(public_model.labels == public_label) if public_label is not None else \
                np.arange(len(public_model.labels))
            for _ in range(config.per_class):
                if config.query_mode == "prototype" and public_label is not None:
                    query, how = prototypes[public_label], "prototype"
                else:
                    pick = int(rng.choice(pool))
                    query, how = public_model.embeddings[pick], f"exemplar {pick}"
                queries.append(QuerySpec(kind="class", label=label, description=f"class {name} ({how})",
                                         embedding=np.asarray(query, dtype=np.float32)))
    if config.examples:
        images = _load_examples(config.examples, public_model.image_shape)
        embeddings = embed_images(public_model.encoder, images)
        for path, embedding in zip(config.examples, embeddings, strict=True):
            queries.extend(QuerySpec(kind="example", label=-1, description=f"example {Path(path).name}",
                                     embedding=embedding) for _ in range(config.per_example))
    return queries


def _nonprivate_parts(config: GenerateConfig, public_model, index, workspace: Path) -> list[str]:
    """Refuse example images that are private records (NotPrivateError), unless overridden for research; the parts
    that then read private data without protection (also when the public model was trained with the override)."""
    from dpsad_core.data.identity import registered_signatures
    from dpsad_core.data.public_overlap import OVERLAP_PART, OVERRIDE_FLAG, private_examples
    from dpsad_core.errors import NotPrivateError

    parts = []
    if public_model.meta.get("config", {}).get("allow_public_overlap"):
        parts.append(f"public model {public_model.name!r}: its " + OVERLAP_PART)
    if config.examples:
        images = _load_examples(config.examples, public_model.image_shape)
        private = private_examples(images, registered_signatures(workspace, index.fingerprint))
        if private and not config.allow_public_overlap:
            raise NotPrivateError(
                f"{len(private)} of the {len(images)} example image(s) are private records of the index "
                f"{index.name!r} (example(s) number {', '.join(str(i + 1) for i in private)} in the order given): "
                "their images would be released as if public",
                remedy=f"query with images you may share, or for research only pass {OVERRIDE_FLAG} (the run is "
                       "then reported NOT differentially private)")
        if private:
            parts.append("example queries (they are private records)")
    return parts


def _load_examples(paths: Sequence[str], image_shape: tuple[int, ...]) -> np.ndarray:
    from dpsad_core.data.imaging import read_pil_image, stack_images
    from dpsad_core.errors import DataImportError

    arrays = []
    for path in paths:
        if not Path(path).is_file():
            raise DataImportError("no such image file", path=path,
                                  remedy="an example query is a PUBLIC image file (PNG, JPEG, ...) you may share")
        arrays.append(read_pil_image(Path(path)))
    return stack_images(arrays, origins=[str(path) for path in paths], source="example queries",
                        resolution=image_shape[1], channels=image_shape[0])


def _exact_units(index) -> int:
    """The index's exact N: local only, never published (its noisy count is: :func:`generate_rdm`)."""
    return index.num_units


def _count_declared(index) -> bool:
    return bool(index.meta["dataset"].get("count_declared", False))


def _fits_run_budget(config: GenerateConfig, queries: int, delta: float, prior: list) -> RetrievalSettings:
    """The retrieval settings (sigma calibrated when not given) whose queries, after ``prior``, fit the run's
    epsilon at ``delta``; PrivacyBudgetError with the number of queries the budget buys if they do not."""
    from dpsad_core.rdm.planner import sigma_for_budget

    if config.sigma is None:
        sigma = sigma_for_budget(k=config.k, sample_rate=config.sample_rate, queries=queries, epsilon=config.epsilon,
                                 delta=delta, prior=tuple(prior))
        return RetrievalSettings(k=config.k, sample_rate=config.sample_rate, sigma=sigma)
    settings = config.settings
    planned, _ = certified_values(mechanisms=[*prior, settings.mechanism(queries)], delta=delta)
    if planned.certified > config.epsilon:
        try:
            # How many queries fit does not depend on N (q is the analyst's); only delta does.
            fits = queries_for_budget(num_records=1, settings=settings, epsilon=config.epsilon, delta=delta).queries
            advice = f"this budget buys at most {fits} queries at these settings (RDP)"
        except PrivacyBudgetError:
            advice = "this budget does not buy a single query at these settings"
        raise PrivacyBudgetError(
            f"{queries} queries cost epsilon {planned.certified:.4g} (delta {delta:g}), more than the budget "
            f"{config.epsilon:g}; {advice}", remedy="ask for fewer queries, or raise sigma or the budget")
    return settings


def generate_rdm(config: GenerateConfig, *, workspace: Path, stop: Callable[[], bool] | None = None) -> Iterator[Any]:
    """Answer ``config``'s queries on the private index and sample one image per query. A generator.

    The run's life is the engine's (:mod:`dpsad_core.runs.lifecycle`): unless the index's N is declared public,
    a noisy count is drawn from the run's secret randomness and charged first; delta (when not given), the
    calibrated sigma (when not given) and the count the report states come from it, never from the exact N.

    Yields :class:`~dpsad_core.events.RunStarted`, :class:`~dpsad_core.events.PhaseStarted`,
    :class:`~dpsad_core.events.StepCompleted` per batch of queries (``epsilon_spent`` so far),
    :class:`~dpsad_core.events.SampleGrid` and :class:`~dpsad_core.events.RunFinished` (or
    :class:`~dpsad_core.events.RunInterrupted` when ``stop()`` returns True; what was spent stays
    recorded).

    Raises
    ------
    PrivacyBudgetError
        Before any query, if the queries cost more than ``config.epsilon`` or would take the dataset
        over the ledger's cap (after the count was drawn, its spend stays recorded: it decided the refusal).
    """
    import torch

    from dpsad_core.privacy import PrivacyAccountant
    from dpsad_core.privacy.calibration import default_delta
    from dpsad_core.rdm.index import check_index_matches, load_index
    from dpsad_core.rdm.mechanism import answer_query
    from dpsad_core.rdm.store import load_public_model, sample_from_contexts
    from dpsad_core.runs.folder import RUNS_DIR, RunFolder, new_run_id
    from dpsad_core.sampling import grid_image, save_png, to_uint8

    stop = stop or (lambda: False)
    public_model = load_public_model(config.model, workspace=workspace)
    index = load_index(config.index, workspace=workspace)
    check_index_matches(index, public_model)
    rng = np.random.default_rng(config.seed)  # public choices only; None: fresh OS entropy
    # The count, the subsample and the noise: secret and fresh (a known --privacy-seed voids the guarantee).
    randomness = secret_randomness(config.privacy_seed)
    queries = plan_query_list(config, public_model=public_model, index=index, rng=rng)
    nonprivate = _nonprivate_parts(config, public_model, index, workspace)
    if randomness.reproducible:
        nonprivate.append(REPRODUCIBLE_NOISE_PART)
    declared = _count_declared(index)
    # Refusals that need no count come first, so they draw nothing: the budget at the loosest delta the
    # run may get (epsilon only grows as delta shrinks), then the cap with the count alone (draw_count).
    hold = config.delta if config.delta is not None else COUNT_HOLD_DELTA
    _fits_run_budget(config, len(queries), hold, [] if declared else [count_mechanism()])
    dataset = index.meta["dataset"]
    run = RunFolder(Path(workspace) / RUNS_DIR / new_run_id(RECIPE))
    account = LedgerAccount(workspace=Path(workspace), run_id=run.run_id, fingerprint=index.fingerprint,
                            name=dataset["name"], kind="rdm", recipe=RECIPE)
    count = draw_count(account, num_units=_exact_units(index), declared=declared, randomness=randomness,
                       delta=config.delta)
    units = count_plan(count, declared=declared, exact_units=_exact_units(index))
    delta = config.delta if config.delta is not None else default_delta(units["private_units"])
    prior = [count.mechanism()] if count is not None else []
    with count_kept(count, run.run_id):
        settings = _fits_run_budget(config, len(queries), delta, prior)
        planned_mechanisms = [*prior, settings.mechanism(len(queries))]
        planned, note = certified_values(mechanisms=planned_mechanisms, delta=delta)
        life = RunLife.reserve(account, run, delta=delta, private=not nonprivate, planned=planned_mechanisms)
    warnings, local_warnings = _settings_warnings(config, settings, public_model, index)
    life.create(workspace, RunConfigRecord(
        config={**config.to_dict(), "sigma": settings.sigma, "sigma_calibrated": config.sigma is None,
                "recipe": RECIPE, "queries": len(queries), "delta": delta, "data": index.meta.get("data")},
        dataset=dataset, public_dataset=public_model.meta["public_dataset"],
        public_model={"name": public_model.name, "encoder_digest": public_model.encoder_digest},
        plan={"recipe": RECIPE, "nonprivate_parts": nonprivate,
              "mechanisms": [mechanism.to_dict() for mechanism in planned_mechanisms],
              "planned_epsilon": planned.to_dict(), "delta": delta, "warnings": warnings, **units},
        created=utc_now_str(),
    ))
    accountant = PrivacyAccountant(delta=delta)
    for part in nonprivate:
        accountant.mark_nonprivate(part)
    for mechanism in prior:  # the count, composed first (recorded in the ledger before it was used)
        accountant.record(mechanism)
    life.record(accountant)
    life.running(phase="queries", step=0)
    images, started, done = [], time.monotonic(), 0
    try:
        yield RunStarted(run_id=run.run_id, run_dir=run.path, resumed=False,
                         plan={"warnings": warnings + local_warnings, "planned_epsilon": planned.to_dict(),
                               "queries": len(queries), "sigma": settings.sigma, "delta": delta})
        yield PhaseStarted(phase="queries", total_steps=len(queries), start_step=0, privacy="dp")
        candidates = {label: index.labels == label
                      for label in {query.label for query in queries if query.kind == "class"}}
        for start in range(0, len(queries), config.batch_size):
            batch = queries[start:start + config.batch_size]
            tick = time.monotonic()
            mechanism = settings.mechanism(len(batch))
            # The engine's rule: the ledger records a mechanism before it reads the private data.
            life.record(accountant, mechanism)
            contexts = np.stack([
                answer_query(embeddings=index.embeddings, units=index.units, query=query.embedding, settings=settings,
                             mix=config.mix, randomness=randomness, candidates=candidates.get(query.label))
                for query in batch])
            done += len(batch)
            accountant.record(mechanism)
            life.save_privacy(accountant)
            samples = sample_from_contexts(public_model.model, public_model.schedule,
                                           torch.as_tensor(contexts)[:, None],
                                           image_shape=public_model.image_shape, steps=config.sample_steps,
                                           guidance=config.guidance, seed=int(rng.integers(2**31)))
            images.append(to_uint8(samples))
            elapsed = time.monotonic() - started
            yield StepCompleted(phase="queries", step=done, total_steps=len(queries), losses={},
                                epsilon_spent=accountant.epsilon_rdp(), epsilon_target=config.epsilon,
                                seconds=time.monotonic() - tick, eta_seconds=elapsed / done * (len(queries) - done))
            if stop() and done < len(queries):
                life.interrupt(accountant, phase="queries", step=done, message="stopped by request")
                yield RunInterrupted(run_id=run.run_id, phase="queries", step=done,
                                     message=f"stopped after {done} of {len(queries)} queries; their spend is "
                                             "recorded in the ledger (a DP-RDM run is not resumed: start a new one)")
                return
        pixels = np.concatenate(images)
        labels = np.array([query.label for query in queries], dtype=np.int64)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=pixels, labels=labels, class_names=np.array(index.class_names),
                            queries=np.array([query.description for query in queries]))
        atomic_write_bytes(run.path / "samples.npz", buffer.getvalue())
        grid = _grid(pixels, labels, len(index.class_names), grid_image)
        grid_path = save_png(grid, run.path / "samples" / "grid.png")
    except GeneratorExit:  # the consumer dropped the run between batches: what was spent stays recorded
        life.interrupt(accountant, phase="queries", step=done, message="the run was closed")
        raise
    except BaseException as error:
        life.fail(error, phase="queries", step=done, epsilon_spent=accountant.epsilon_rdp())
        raise
    yield SampleGrid(phase="queries", step=done, path=grid_path, image=grid)
    result = _result(run, config, accountant, delta, index, public_model, settings, len(queries), note, started,
                     grid_path, warnings, randomness)
    life.finish(accountant, result, phase="queries", step=done)
    yield RunFinished(run_id=run.run_id, result=result.to_dict())


def _settings_warnings(config: GenerateConfig, settings: RetrievalSettings, public_model,
                       index) -> tuple[list[str], list[str]]:
    """Warnings to keep with the run, and warnings only shown here (they read the private class sizes)."""
    kept, local = [], []
    sigma_max = public_model.meta["config"]["sigma_max"]
    if settings.sigma > sigma_max:
        kept.append(f"sigma {settings.sigma:g} is above the noise the public model was trained with (sigma_max "
                    f"{sigma_max:g}): images may degrade; train a model with a larger --sigma-max")
    counts = index.meta["dataset"]["class_counts"]
    wanted = config.classes or tuple(counts)
    if config.per_class and min((counts.get(name, 0) for name in wanted), default=0) * config.sample_rate < config.k:
        # Computed from the private class sizes without noise: printed for the user, never written to the
        # run folder, whose files may be exported.
        local.append(f"in some queried class the subsample is expected to hold fewer than k = {config.k} records "
                     "(q x class size): its means are padded with zeros and carry less signal; raise q or lower k")
    return kept, local


def _grid(pixels: np.ndarray, labels: np.ndarray, num_classes: int, grid_image) -> np.ndarray:
    """Up to 8 images per queried class (one row each), example queries in a last row."""
    rows = []
    for label in [*range(num_classes), -1]:
        chosen = np.flatnonzero(labels == label)[:8]
        if chosen.size:
            row = np.zeros((8, *pixels.shape[1:]), dtype=np.uint8) + 255
            row[:chosen.size] = pixels[chosen]
            rows.append(row)
    return grid_image(np.concatenate(rows), rows=len(rows))


def _result(run, config: GenerateConfig, accountant, delta: float, index, public_model, settings: RetrievalSettings,
            count: int, note: str | None, started: float, grid_path: Path, warnings: list[str],
            randomness) -> RunResult:
    values, final_note = certified_values(accountant)
    private = accountant.is_private
    dataset = index.meta["dataset"]
    return RunResult(
        run_id=run.run_id, run_dir=str(run.path), recipe=RECIPE, private=private,
        epsilon=values.to_dict()["certified"] if private else None, epsilon_target=config.epsilon,
        delta=delta,
        accountant_values={"rdp": values.rdp if private else None,
                           "prv": None if math.isnan(values.prv) or not private else values.prv,
                           "rdp_order": values.rdp_order, "note": final_note or note},
        mechanisms=tuple(m.to_dict() for m in accountant.mechanisms),
        nonprivate_parts=tuple(accountant.nonprivate_parts),
        mechanism={"name": "DP-RDM private retrieval (Lebensold et al. 2024, arXiv 2403.14421)",
                   "k": settings.k, "q": settings.sample_rate, "sigma": settings.sigma, "lambda": config.mix,
                   "noise_multiplier": settings.noise_multiplier, "sensitivity": 2.0 / settings.k,
                   "queries": count, "query_mode": config.query_mode, "guidance": config.guidance,
                   "sampler": f"ddim {config.sample_steps} steps"},
        unit_of_privacy="patient" if dataset.get("unit") == "patient" else "image",
        dataset={"name": dataset["name"], "fingerprint": dataset["fingerprint"],
                 "num_records": dataset["num_records"], "num_units": dataset["num_privacy_units"]},
        public_model={"name": public_model.name,
                      "public_dataset": exported_name(public_model.meta["public_dataset"], PUBLIC_NAME),
                      "encoder_digest": public_model.encoder_digest},
        samples_npz=str(run.path / "samples.npz"), sample_grid=str(grid_path), images=count,
        generate_seconds=round(time.monotonic() - started, 2), warnings=tuple(warnings),
        secure_rng=not randomness.reproducible, secure_rng_note=randomness.description,
        finished=utc_now_str(),
    )


def utc_now_str() -> str:
    from dpsad_core.runs.folder import utc_now

    return utc_now()
