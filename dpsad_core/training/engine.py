"""The training engine: a generator of events over the phases of a privacy plan.

``start_training`` creates a run folder and trains; ``resume_training`` continues one from its last
checkpoint with the same accountant history, RNG states and optimisers, so a resumed run ends with
the same epsilon (and, on the same machine, the same weights) as an uninterrupted one.

Cancellation is cooperative: pass ``stop`` (a callable returning True when the user asked to stop)
or close the generator; either way a checkpoint is written at a step boundary before returning.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpsad_core import distributed
from dpsad_core.devices import resolve_device
from dpsad_core.errors import DeviceError, RunError
from dpsad_core.events import (
    CheckpointWritten,
    Event,
    PhaseStarted,
    RunFinished,
    RunInterrupted,
    RunStarted,
    SampleGrid,
    StepCompleted,
)
from dpsad_core.privacy.calibration import default_delta
from dpsad_core.runs.folder import RUNS_DIR, RunFiles, RunFolder, new_run_id, utc_now
from dpsad_core.runs.lifecycle import RunLife, certified_values, secret_randomness
from dpsad_core.runs.records import RunConfigRecord, RunResult, RunState
from dpsad_core.training.config import Recipe, TrainConfig
from dpsad_core.training.estimate import learn_from_run
from dpsad_core.training.planner import (
    DENOISE,
    DENOISER,
    DISCRIMINATOR,
    DISTILL,
    FEW_STEP,
    POSTPROCESS,
    PRETRAIN,
    STUDENT,
    TEACHER,
    PhasePlan,
    TrainingPlan,
    plan_training,
)

if TYPE_CHECKING:  # the GUI imports the engine without torch, the data or the ledger
    import torch

    from dpsad_core.data.dataset import ImageDataset
    from dpsad_core.diffusion import DiffusionSchedule
    from dpsad_core.models import UNetConfig
    from dpsad_core.privacy.mechanisms import Mechanism
    from dpsad_core.privacy.noisy_count import NoisyCount
    from dpsad_core.privacy.randomness import SecretRandomness
    from dpsad_core.training.few_step import TeacherPool
    from dpsad_core.training.steps import DataTensors

GRID_PER_CLASS = 8
#: A step of each phase kind in denoising steps, before a kind's own steps are timed (bench/step_time.py
#: measures a student + discriminator step on the private data at about 2.2 on a CPU; a few-step
#: distillation step has no per-record gradients and a smaller batch).
PHASE_COST_RATIO = {DENOISE: 1.0, DISTILL: 2.2, FEW_STEP: 0.15}
DISTILL_COST_RATIO = PHASE_COST_RATIO[DISTILL]
#: Teacher trajectories generated per chunk of the few-step student's pool.
POOL_CHUNK = 512


def prepare_run(config: TrainConfig, *, workspace: Path, plan_only: bool = False
                ) -> tuple[ImageDataset, ImageDataset | None, TrainingPlan]:
    """Load the data and make the plan without creating anything (for previews and the GUI).

    With ``plan_only`` (previews) the generated public digits are not rendered: the planner needs only
    their number, and rendering 10,000 of them takes tens of seconds. ``public`` is then None.
    A preview stays local: an undeclared N is planned rounded down, with the noisy count's cost included;
    the run itself plans from the count it draws (:func:`start_training`).
    """
    dataset, public, public_records = _load_run_data(config, workspace, plan_only=plan_only)
    return dataset, public, plan_run(config, dataset, public, public_records)


def _load_run_data(config: TrainConfig, workspace: Path, *, plan_only: bool = False
                   ) -> tuple[ImageDataset, ImageDataset | None, int]:
    """The private dataset, the public one (None when not needed or not rendered) and its number of records."""
    from dpsad_core.data import resolve_data_source
    from dpsad_core.data.synthetic import DEFAULT_COUNT, NUM_CLASSES, RENDERED_DIGITS_SOURCE

    dataset = resolve_data_source(config.data, workspace=workspace, resolution=config.resolution,
                                  min_records=config.min_records)
    if plan_only and config.public_data == RENDERED_DIGITS_SOURCE:
        _check_public_classes(config, dataset, NUM_CLASSES)
        return dataset, None, DEFAULT_COUNT
    public = _load_public_data(config, dataset, workspace)
    return dataset, public, public.num_records if public is not None else 0


def plan_run(config: TrainConfig, dataset: ImageDataset, public: ImageDataset | None, public_records: int,
             count: NoisyCount | None = None) -> TrainingPlan:
    """The plan for ``dataset``; ``count``: the run's :class:`~dpsad_core.privacy.noisy_count.NoisyCount`.

    N is private unless declared public: the plan (sample rate, noise, delta) sees it only as the noisy
    count's published value, and the count's cost is composed before every phase (docs/privacy.md).
    """
    return _plan(config, dataset, public_records, count, _public_overlap(config, dataset, public))


def _plan(config: TrainConfig, dataset: ImageDataset, public_records: int, count: NoisyCount | None,
          overlap_part: str | None) -> TrainingPlan:
    from dpsad_core.runs.lifecycle import count_plan

    units = count_plan(count, declared=dataset.count_declared, exact_units=dataset.num_privacy_units)
    mechanism = count.mechanism() if count is not None else (
        None if dataset.count_declared else _preview_count_mechanism())
    delta = config.delta if config.delta is not None else default_delta(units["private_units"])
    plan = plan_training(recipe=config.recipe, hyper=config.hyper, epsilon=config.epsilon, delta=delta,
                         private_units=units["private_units"], public_records=public_records,
                         reproducible_noise=config.privacy_seed is not None, count=mechanism,
                         units_from=units["units_from"])
    if overlap_part is not None:  # --allow-public-overlap: the "public" phase read private records
        plan = dataclasses.replace(plan, nonprivate_parts=plan.nonprivate_parts + (overlap_part,))
    return plan


def _preview_count_mechanism() -> Mechanism:
    """A preview's stand-in for the count to come: the same mechanism, so its cost is included."""
    from dpsad_core.privacy.noisy_count import count_mechanism

    return count_mechanism()


def _load_public_data(config: TrainConfig, dataset: ImageDataset, workspace: Path) -> ImageDataset | None:
    """The public dataset conformed to the private one (None when the recipe uses none)."""
    if not config.public_data:
        return None
    from dpsad_core.data import resolve_data_source

    public = resolve_data_source(config.public_data, workspace=workspace, resolution=dataset.resolution,
                                 channels=dataset.channels, min_records=1, duplicates="keep")
    _check_public_classes(config, dataset, public.num_classes)
    return public


def _public_overlap(config: TrainConfig, dataset: ImageDataset, public: ImageDataset | None) -> str | None:
    """Refuse public data that holds private records (NotPrivateError); the part to stamp when overridden."""
    if public is None or config.public_data is None:  # public data is loaded only from config.public_data
        return None
    from dpsad_core.data.public_overlap import check_public_data

    return check_public_data(public, dataset, public_spec=config.public_data, private_spec=config.data,
                             allow=config.allow_public_overlap)


def _check_public_classes(config: TrainConfig, dataset: ImageDataset, public_classes: int) -> None:
    from dpsad_core.errors import ConfigError

    if public_classes != dataset.num_classes:
        raise ConfigError(f"the public dataset has {public_classes} classes, the private one "
                          f"{dataset.num_classes}", field="public_data", value=config.public_data,
                          remedy="use public data with the same classes as the private data")


def start_training(config: TrainConfig, *, workspace: Path, stop: Callable[[], bool] | None = None,
                   run_id: str | None = None) -> Iterator[Event]:
    """Create a run and train it; ``run_id`` is chosen by the caller only for a multi-worker launch.

    The run's life (runs/lifecycle.py): settings that cannot be built and a spent cap are refused before
    anything secret is drawn; an undeclared N is then drawn once as a noisy count and charged; the plan
    computed from it is reserved whole; only then does the run folder exist.
    """
    from dpsad_core.runs.lifecycle import LedgerAccount, count_kept, draw_count
    from dpsad_core.training.budget import ledger_fingerprint, planned_mechanisms

    resolve_device(config.device)  # fail before anything is written
    dataset, public, public_records = _load_run_data(config, workspace)
    if not distributed.current_world().is_leader:
        _public_overlap(config, dataset, public)  # refuses as rank 0 does; rank 0's plan records any override
        yield from _follow(config, dataset, public, distributed.share(None), stop, workspace)
        return
    # Everything that can refuse the settings (the models, built on no device) runs before the count is
    # drawn, the ledger reservation and the run folder: a start that fails leaves nothing behind (issue 15).
    _check_models_build(config, dataset)
    overlap_part = _public_overlap(config, dataset, public)
    run_id = run_id or new_run_id(config.recipe.value)
    account = LedgerAccount(workspace=Path(workspace), run_id=run_id,
                            fingerprint=ledger_fingerprint(config, dataset, workspace),
                            name=dataset.name if config.ledger_data is None else None,  # keep the source's name
                            kind="train", recipe=config.recipe.value)
    # An undeclared N is published as a noisy count, drawn once from the run's secret randomness and charged
    # before anything computed from it is used: the plan in config.json is computed from it, a resume reads it
    # there, the other workers get rank 0's plan. A refusal from here on keeps the count's spend.
    randomness = secret_randomness(config.privacy_seed)
    count = draw_count(account, num_units=dataset.num_privacy_units, declared=dataset.count_declared,
                       randomness=randomness, delta=config.delta)
    with count_kept(count, run_id):
        plan = _plan(config, dataset, public_records, count, overlap_part)
    # The other workers build their trainers as soon as they know the run: the same order of exchanges.
    distributed.share({"run_id": run_id, "plan": plan.to_dict(), "records_digest": dataset.records_digest()})
    run = RunFolder(Path(workspace) / RUNS_DIR / run_id)
    trainer = _Trainer(run, config, plan, dataset, public, randomness=randomness)
    # Refuses a run over the dataset's budget cap before its folder exists.
    with count_kept(count, run_id):
        life = RunLife.reserve(account, run, delta=plan.delta, private=plan.is_private,
                               planned=planned_mechanisms(config, plan))
    try:
        # The count is spent before its first use leaves the process (the plan in config.json and the events).
        trainer.record_prior()
        life.record(trainer.accountant)
        stored = RunConfigRecord(
            config=config.to_dict(), dataset=dataset.summary(workspace),
            public_dataset=public.summary(workspace) if public is not None else None,
            plan=plan.to_dict(), created=utc_now(), software=_software_versions(),
            workers=distributed.current_world().size,
        )
    except BaseException:
        life.drop_reservation()
        raise
    life.create(workspace, stored)
    trainer.life = life
    yield from trainer.execute(resumed=False, stop=stop)


def _check_models_build(config: TrainConfig, dataset: ImageDataset) -> None:
    """Build the run's networks on PyTorch's meta device (no memory, no weights): whatever refuses the
    settings refuses here, before anything secret is drawn or written."""
    import torch

    from dpsad_core.diffusion import DiffusionSchedule

    schedule = DiffusionSchedule(config.hyper.diffusion_steps, config.hyper.schedule)
    with torch.device("meta"):
        _build_models(config, dataset, schedule, "meta")


def _build_models(config: TrainConfig, dataset: ImageDataset, schedule: DiffusionSchedule,
                  device: str | torch.device) -> tuple[UNetConfig, dict[str, Any]]:
    """The run's UNet config and networks by name (the denoiser or teacher, the student, the discriminator)."""
    from dpsad_core.models import Discriminator, DiscriminatorConfig, UNet, UNetConfig

    hyper = config.hyper
    unet_config = UNetConfig(image_channels=dataset.channels, resolution=dataset.resolution,
                             num_classes=dataset.num_classes, channels=hyper.channels,
                             blocks_per_level=hyper.blocks_per_level, attention_levels=hyper.attention_levels)
    first = DENOISER if config.recipe is Recipe.DPDM else TEACHER
    models: dict[str, Any] = {first: UNet(unet_config).to(device)}
    if config.recipe.distills_for_free:
        from dpsad_core.models import VPredictionStudent

        models[STUDENT] = VPredictionStudent(unet_config, schedule.alphas_cumprod).to(device)
    elif config.recipe.has_student:
        models[STUDENT] = UNet(unet_config).to(device)
    if config.recipe.has_student:
        models["discriminator"] = Discriminator(DiscriminatorConfig(
            image_channels=dataset.channels, num_classes=dataset.num_classes,
            channels=hyper.disc_channels)).to(device)
    return unet_config, models


def resume_training(run_ref: str, *, workspace: Path, stop: Callable[[], bool] | None = None,
                    device: str | None = None) -> Iterator[Event]:
    """Continue run ``run_ref`` from its last checkpoint; ``device`` (``--device``) replaces the start's.

    A checkpoint does not tie a run to a device: it is read onto the CPU and each model, optimiser and
    generator is restored onto the device the resume trains on (see ``_Trainer.load_state_dict``).
    """
    from dpsad_core.data import resolve_data_source
    from dpsad_core.runs.lifecycle import LedgerAccount
    from dpsad_core.training.budget import ledger_fingerprint, planned_mechanisms

    if not distributed.current_world().is_leader:
        # The run folder may be on another machine: rank 0 sends what this worker needs.
        shared = distributed.share(None)
        record = RunConfigRecord.from_dict(shared["config_json"], source=f"rank 0's config.json of {shared['run_id']}")
        config = TrainConfig.from_dict(record.config)
        dataset = resolve_data_source(config.data, workspace=workspace, resolution=record.resolution,
                                      min_records=config.min_records)
        public = _load_public_data(config, dataset, workspace)
        yield from _follow(config, dataset, public, {"run_id": shared["run_id"], "plan": dict(record.plan),
                                                     "records_digest": shared["records_digest"]}, stop, workspace)
        return
    run = RunFolder.open(workspace, run_ref)
    _check_run_in_workspace(run, workspace)
    stored = run.config()
    state = run.state
    if state is RunState.FINISHED:
        raise RunError(f"run {run.run_id} has already finished", remedy="start a new run instead")
    if state is RunState.CANCELLED:
        raise RunError(f"run {run.run_id} was cancelled: it has ended, and what it spent stays counted on its dataset",
                       remedy="start a new run instead")
    config = resume_device(TrainConfig.from_dict(stored.config), device, run.run_id)
    plan = TrainingPlan.from_dict(stored.plan)
    dataset = resolve_data_source(config.data, workspace=workspace, resolution=stored.resolution,
                                  min_records=config.min_records)
    if dataset.fingerprint(workspace) != stored.fingerprint:
        raise RunError(f"the data at {config.data!r} is not the data run {run.run_id} started with "
                       "(its fingerprint differs)", remedy="restore the original data, or start a new run")
    public = _load_public_data(config, dataset, workspace)
    _public_overlap(config, dataset, public)  # the plan recorded any override at the start
    distributed.share({"run_id": run.run_id, "records_digest": dataset.records_digest(),
                       "config_json": dataclasses.replace(stored, config=config.to_dict()).to_dict()})
    # The same run: its own earlier entry is replaced, not added to.
    account = LedgerAccount(workspace=Path(workspace), run_id=run.run_id,
                            fingerprint=ledger_fingerprint(config, dataset, workspace),
                            name=dataset.name if config.ledger_data is None else None, kind="train",
                            recipe=config.recipe.value)
    life = RunLife.reserve(account, run, delta=plan.delta, private=plan.is_private,
                           planned=planned_mechanisms(config, plan))
    try:
        trainer = _Trainer(run, config, plan, dataset, public)
    except BaseException:
        life.drop_reservation()
        raise
    trainer.life = life
    yield from trainer.execute(resumed=True, stop=stop)


def resume_device(config: TrainConfig, device: str | None, run_id: str) -> TrainConfig:
    """The settings a resume trains with: the start's, on ``device`` when one is given (config.json keeps the start's).

    A run started on a GPU that this machine lacks is refused in one line naming the way to continue it.
    """
    if device is not None:
        resolve_device(device)
        return dataclasses.replace(config, device=device)
    try:
        resolve_device(config.device)
    except DeviceError as error:
        raise DeviceError(f"run {run_id} was started on {config.device!r}, which this machine cannot use "
                          f"({error.message})",
                          remedy=f"continue it on the CPU: dpsad-core train --resume {run_id} --device cpu") from None
    return config


def _check_run_in_workspace(run: RunFolder, workspace: Path) -> None:
    """A run's spend is in its own workspace's ledger: resuming it from another would split it in two."""
    home = run.path.resolve().parent.parent
    if home != Path(workspace).resolve():
        raise RunError(f"run {run.run_id} belongs to the workspace {home}, not {Path(workspace).resolve()}: resuming "
                       "it here would record its privacy spend in two ledgers",
                       remedy=f"resume it in its own workspace: dpsad-core train --resume {run.run_id} "
                              f"--workspace {home}")


def _follow(config: TrainConfig, dataset: ImageDataset, public: ImageDataset | None, header: dict[str, Any],
            stop: Callable[[], bool] | None, workspace: Path) -> Iterator[Event]:
    """A worker of rank > 0: the same training, with rank 0's run id, plan and state; it writes nothing."""
    # Not the keyed fingerprint: another machine's workspace has another identity key (records_digest).
    if dataset.records_digest() != header["records_digest"]:
        raise RunError(f"worker rank {distributed.current_world().rank} reads other data at {config.data!r} "
                       "than rank 0 (other records, or in another order)",
                       remedy="give every machine the same data (the same import)")
    trainer = _Trainer(_FollowerRun(header["run_id"]), config, TrainingPlan.from_dict(header["plan"]), dataset,
                       public)
    yield from trainer.execute(resumed=False, stop=stop)


class _FollowerRun:
    """The run folder as a worker of rank > 0 sees it: rank 0 owns every file, so nothing is written."""

    def __init__(self, run_id: str) -> None:
        self.run_id, self.path = run_id, Path(run_id)
        self.checkpoint_path = self.model_path = self.path / "unused"

    def load_checkpoint(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"state": RunState.RUNNING.value}

    def read_json(self, name: str) -> dict[str, Any]:  # pragma: no cover - only rank 0 reads the folder
        raise RunError(f"worker rank {distributed.current_world().rank} has no run folder to read {name} from")

    def config(self) -> RunConfigRecord:  # pragma: no cover - only rank 0 reads the folder
        return RunConfigRecord.from_dict(self.read_json("config.json"))

    def lock(self) -> None: ...
    def unlock(self) -> None: ...
    def set_status(self, *args: Any, **kwargs: Any) -> None: ...
    def write_json(self, *args: Any) -> None: ...
    def save_torch(self, *args: Any) -> None: ...
    def append_metrics(self, *args: Any) -> None: ...
    def truncate_metrics(self, *args: Any) -> None: ...
    def write_result(self, *args: Any) -> None: ...


class _Trainer:
    def __init__(self, run: RunFiles, config: TrainConfig, plan: TrainingPlan, dataset: ImageDataset,
                 public: ImageDataset | None, randomness: SecretRandomness | None = None) -> None:
        import torch

        self._began = time.monotonic()  # what the run costs besides its steps is learnt for the time estimate

        from dpsad_core.diffusion import DiffusionSchedule
        from dpsad_core.models import EMA
        from dpsad_core.privacy import PrivacyAccountant
        from dpsad_core.privacy.randomness import SecretRandomness

        self.run, self.config, self.plan, self.hyper = run, config, plan, config.hyper
        self.dataset = dataset
        self.world = distributed.current_world()
        self.device = distributed.worker_device(resolve_device(config.device), self.world)
        torch.manual_seed(config.seed)
        self.schedule = DiffusionSchedule(self.hyper.diffusion_steps, self.hyper.schedule)
        self.unet_config, self.models = _build_models(config, dataset, self.schedule, self.device)
        self.null_label = dataset.num_classes
        first = DENOISER if config.recipe is Recipe.DPDM else TEACHER
        if config.recipe.distills_for_free:
            from dpsad_core.training.few_step import student_timesteps

            self.student_times = student_timesteps(self.hyper.diffusion_steps, self.hyper.student_sample_steps)
        self.emas = {name: EMA(self.models[name], self.hyper.ema_decay, self.hyper.ema_power)
                     for name in (first, STUDENT) if name in self.models}
        lrs = {TEACHER: self.hyper.denoiser_lr, DENOISER: self.hyper.denoiser_lr, STUDENT: self.hyper.student_lr,
               "discriminator": self.hyper.disc_lr}
        self.base_lr = {name: lrs[name] for name in self.models}
        self.optimizers = {name: torch.optim.Adam(model.parameters(), lr=self.base_lr[name])
                           for name, model in self.models.items()}
        self.accountant = PrivacyAccountant(delta=plan.delta)
        # The randomness the guarantee rests on is secret and fresh per run (a resume restores it from
        # the checkpoint; a start passes the one its noisy count came from); config.seed drives only what
        # may be public (initialisation, sample grids).
        self.randomness = randomness if randomness is not None else secret_randomness(config.privacy_seed)
        if self.world.distributed:
            # Every worker draws the same subsample and noise: rank 0's key (see distributed.py).
            self.randomness = SecretRandomness.from_state_dict(distributed.share(self.randomness.state_dict()))
            for model in self.models.values():
                distributed.sync_module(model)
            for ema in self.emas.values():
                distributed.sync_module(ema.model)
        self.loss_generator = torch.Generator(device=self.device).manual_seed(
            self.randomness.stream("loss").seed())
        self.phase_index, self.step, self.elapsed = 0, 0, 0.0
        self.ended = False  # finished or stopped: closing the generator afterwards changes nothing
        # The run's folder and ledger account; start_training / resume_training give it the reserved spend.
        self.life = RunLife(run)
        self.private_data: DataTensors | None = self._tensors(dataset)
        self.public_data: DataTensors | None = self._tensors(public) if public is not None else None
        # The few-step student's pool of teacher trajectories, and the public generator that draws its
        # batches (post-processing: config.seed, not the secret key).
        self.pool: TeacherPool | None = None
        self.student_seconds = 0.0  # the free distillation's compute: its pool and its steps
        self.distill_generator = torch.Generator().manual_seed(config.seed + 3)

    # -- state -------------------------------------------------------------------------------------
    def _tensors(self, dataset: ImageDataset) -> DataTensors:
        import torch

        from dpsad_core.training.steps import DataTensors

        units = torch.as_tensor(dataset.privacy_units(), dtype=torch.long)
        return DataTensors(images=torch.as_tensor(dataset.images, device=self.device) * 2 - 1,
                           labels=torch.as_tensor(dataset.labels, dtype=torch.long, device=self.device),
                           unit_of_record=units, num_units=int(dataset.num_privacy_units),
                           has_units=dataset.patient_ids is not None)

    def state_dict(self) -> dict[str, Any]:
        return {
            "phase_index": self.phase_index, "step": self.step, "elapsed": self.elapsed,
            "models": {name: model.state_dict() for name, model in self.models.items()},
            "emas": {name: ema.state_dict() for name, ema in self.emas.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "accountant": self.accountant.state_dict(),
            # The run's secret key: only ever in this local checkpoint, never in a file that is exported.
            "rng": {"secret": self.randomness.state_dict(), "loss": self.loss_generator.get_state(),
                    "distill": self.distill_generator.get_state()},
            "pool": self.pool.state_dict() if self.pool is not None else None,
            "student_seconds": self.student_seconds,
            "workers": self.world.size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from dpsad_core.privacy import PrivacyAccountant
        from dpsad_core.privacy.randomness import SecretRandomness

        if "secret" not in state["rng"]:
            raise RunError(f"run {self.run.run_id} was started by an older version that drew its noise from a "
                           "known seed, so it cannot continue as a private run", remedy="start a new run")
        self.phase_index, self.step, self.elapsed = state["phase_index"], state["step"], state["elapsed"]
        for name, model in self.models.items():
            model.load_state_dict(state["models"][name])
        for name, ema in self.emas.items():
            ema.load_state_dict(state["emas"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.accountant = PrivacyAccountant.from_state_dict(state["accountant"])
        self.randomness = SecretRandomness.from_state_dict(state["rng"]["secret"])
        loss_state = state["rng"]["loss"]
        if loss_state.numel() == self.loss_generator.get_state().numel():
            self.loss_generator.set_state(loss_state)
        else:
            # Written on another kind of device (a CUDA generator's state is a seed and an offset, a CPU one's
            # a Mersenne Twister's): this device's generator restarts from the run's secret loss stream.
            self.loss_generator.manual_seed(self.randomness.stream("loss").seed())
        if "distill" in state["rng"]:
            self.distill_generator.set_state(state["rng"]["distill"])
        self.student_seconds = state.get("student_seconds", 0.0)
        if state.get("pool") is not None:
            from dpsad_core.training.few_step import TeacherPool

            self.pool = TeacherPool.from_state_dict(state["pool"])

    def record_prior(self) -> None:
        """Compose what the plan spent before its phases (the noisy count) once: a checkpoint already has it."""
        spent = {mechanism.part for mechanism in self.accountant.mechanisms}
        for mechanism in self.plan.prior_mechanisms():
            if mechanism.part not in spent:
                self.accountant.record(mechanism)

    def checkpoint(self) -> CheckpointWritten:
        self.run.save_torch(self.run.checkpoint_path, self.state_dict())
        return CheckpointWritten(phase=self._phase.name, step=self.step, path=self.run.checkpoint_path)

    # -- main loop ---------------------------------------------------------------------------------
    @property
    def _phase(self) -> PhasePlan:
        return self.plan.phases[min(self.phase_index, len(self.plan.phases) - 1)]

    def _phase_limit(self, phase: PhasePlan) -> int:
        cap = self.config.max_steps
        return phase.steps if cap is None else min(phase.steps, cap)

    def execute(self, *, resumed: bool, stop: Callable[[], bool] | None) -> Iterator[Event]:
        self.run.lock()
        try:
            if resumed or self.world.distributed:
                # Several workers: rank 0's checkpoint (or None on a fresh start) restores every worker.
                state = distributed.share(self.run.load_checkpoint() if resumed else None)
                if state is not None:
                    self.load_state_dict(state)
                if resumed:
                    self.run.truncate_metrics(self.phase_index, self.step)
            # From the plan on every path: a resume without a checkpoint starts a fresh accountant, and
            # the plan's non-private parts must not be lost with it.
            for part in self.plan.nonprivate_parts:
                self.accountant.mark_nonprivate(part)
            self.record_prior()
            self.life.record(self.accountant)
            self.life.running(phase=self._phase.name, step=self.step)
            yield RunStarted(run_id=self.run.run_id, run_dir=self.run.path, resumed=resumed,
                             plan=self.plan.to_dict())
            interrupted = yield from self._phases(stop)
            if interrupted:
                return
            result = self._finish()
            if self.world.size == 1:  # the plan estimator's step time, from the best measurement there is
                # What the run cost besides its steps, when it ran in one go (a resume pays a second start).
                overhead = None if resumed else time.monotonic() - self._began - self.elapsed
                learn_from_run(self.run.path, self.device, overhead_seconds=overhead)
            self.ended = True
            yield RunFinished(run_id=self.run.run_id, result=result)
        except GeneratorExit:
            # The consumer dropped the generator between steps: the state is consistent, keep it.
            if not self.ended:
                self._interrupt("the run was closed")
            raise
        except distributed.WorkerLostError as error:
            # Another worker died mid-step: the last checkpoint stands, the ledger keeps what was spent.
            self.life.abort(phase=self._phase.name, step=self.step,
                            message=f"{error.message}; resuming continues from the last checkpoint")
            raise
        except KeyboardInterrupt:
            # Interrupted inside a step (a second Ctrl-C): the last checkpoint stands and resumes.
            self.life.abort(phase=self._phase.name, step=self.step,
                            message="aborted during a step; resuming continues from the last checkpoint")
            raise
        except BaseException as error:
            # The recorded spend (it includes the step that was cut short) stays; the reservation goes.
            self.life.fail(error, phase=self._phase.name, step=self.step)
            raise
        finally:
            self.run.unlock()

    def _eta_seconds(self, recent: dict[str, list[float]]) -> float:
        """Time left: each remaining phase's steps at that kind's recent step time.

        Before a kind's first step, its step is taken to cost ``PHASE_COST_RATIO`` denoising steps.
        """
        mean = {kind: sum(times) / len(times) for kind, times in recent.items() if times}
        for kind, ratio in PHASE_COST_RATIO.items():
            if kind not in mean and DENOISE in mean:
                mean[kind] = ratio * mean[DENOISE]
        left = 0.0
        for index, phase in enumerate(self.plan.phases[self.phase_index:], start=self.phase_index):
            steps = self._phase_limit(phase) - (self.step if index == self.phase_index else 0)
            left += steps * mean.get(phase.kind, 0.0)
        return left

    def _phases(self, stop: Callable[[], bool] | None) -> Generator[Event, None, bool]:
        """The events of the remaining phases; True when stopped on request."""
        recent: dict[str, list[float]] = {kind: [] for kind in PHASE_COST_RATIO}
        while self.phase_index < len(self.plan.phases):
            phase = self.plan.phases[self.phase_index]
            limit = self._phase_limit(phase)
            if phase.privacy == POSTPROCESS:
                self._drop_data()
            if self.step == 0:
                self._begin_phase(phase)
            yield PhaseStarted(phase=phase.name, total_steps=limit, start_step=self.step, privacy=phase.privacy)
            while self.step < limit:
                if distributed.any_rank(stop is not None and stop()):
                    event = self._interrupt("stopped on request")
                    self.ended = True
                    yield event
                    return True
                # One object per step: it drives the step, the ledger records it first, the accountant composes it.
                mechanism = phase.mechanism(self.hyper, steps=1)
                self.life.record(self.accountant, mechanism)
                began = time.perf_counter()
                losses = self._train_step(phase, mechanism)
                self.step += 1
                seconds = time.perf_counter() - began
                self.elapsed += seconds
                if phase.kind == FEW_STEP:
                    self.student_seconds += seconds
                recent[phase.kind] = (recent[phase.kind] + [seconds])[-20:]
                epsilon_rdp = self.accountant.epsilon_rdp()
                epsilon = self._epsilon_bound(epsilon_rdp)
                self.run.append_metrics({"phase_index": self.phase_index, "phase": phase.name, "step": self.step,
                                         "seconds": seconds, "epsilon_rdp": _json_float(epsilon_rdp),
                                         "epsilon_bound": _json_float(epsilon), **losses})
                yield StepCompleted(phase=phase.name, step=self.step, total_steps=limit, losses=losses,
                                    epsilon_spent=epsilon, epsilon_target=self.plan.epsilon_target, seconds=seconds,
                                    eta_seconds=self._eta_seconds(recent))
                if (self.step % self.hyper.sample_every == 0 or self.step == limit) and self.world.is_leader:
                    yield self._sample_grid(phase)
                if self.step % self.hyper.checkpoint_every == 0 or self.step == limit:
                    self.life.save_privacy(self.accountant)
                    self.life.running(phase=phase.name, step=self.step, epsilon_spent=_json_float(epsilon))
                    yield self.checkpoint()
            self.phase_index += 1
            self.step = 0
        return False

    def _drop_data(self) -> None:
        """From here on the run computes from releases only: the data tensors leave its reach."""
        self.private_data = self.public_data = None

    def _begin_phase(self, phase: PhasePlan) -> None:
        previous = self.plan.phases[self.phase_index - 1] if self.phase_index > 0 else None
        if previous is not None and previous.name == PRETRAIN and phase.model == previous.model:
            # After public pre-training: DP-SGD starts from the averaged public weights with a fresh
            # optimiser and a fresh average (the public phase is free; only what follows is counted).
            import torch

            name = phase.model
            self.models[name].load_state_dict(self.emas[name].model.state_dict())
            self.emas[name].num_updates = 0
            self.optimizers[name] = torch.optim.Adam(self.models[name].parameters(), lr=self.base_lr[name])
        if phase.kind == FEW_STEP:
            self._begin_few_step()
        elif phase.name == STUDENT:
            # The student starts from the teacher's averaged weights. For a DP or public teacher this
            # is post-processing of an already accounted release: it costs no privacy.
            teacher = self.emas[TEACHER].model
            self.models[STUDENT].load_state_dict(teacher.state_dict())
            self.emas[STUDENT].model.load_state_dict(teacher.state_dict())

    def _begin_few_step(self) -> None:
        """The student starts from the released teacher's weights and learns from its trajectories.

        Post-processing (docs/method.md §1.9): the teacher's averaged weights are the release whose
        cost the accountant has counted; the pool is sampled from them with public randomness.
        """
        import torch

        from dpsad_core.training.few_step import POOL_SEED_OFFSET, TeacherPool, pool_labels, teacher_trajectories

        began = time.perf_counter()
        teacher = self.emas[TEACHER].model
        self.models[STUDENT].unet.load_state_dict(teacher.state_dict())
        self.emas[STUDENT].model.load_state_dict(self.models[STUDENT].state_dict())
        labels = pool_labels(self.dataset.num_classes, self.hyper.pool_size)
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed + POOL_SEED_OFFSET)
        shape = (self.dataset.channels, self.dataset.resolution, self.dataset.resolution)
        self.pool = TeacherPool.concatenate([
            teacher_trajectories(teacher, self.schedule, labels[start:start + POOL_CHUNK].to(self.device),
                                 image_shape=shape, teacher_steps=self.hyper.sample_steps, timesteps=self.student_times,
                                 generator=generator)
            for start in range(0, labels.numel(), POOL_CHUNK)])
        self.student_seconds += time.perf_counter() - began

    def _few_step(self, phase: PhasePlan) -> dict[str, float]:
        from dpsad_core.training.few_step import few_step_update

        if self.pool is None:  # pragma: no cover - _begin_phase (or the checkpoint) made it
            raise RuntimeError(f"phase {phase.name} has no pool of teacher trajectories")
        metrics = few_step_update(student=self.models[STUDENT], discriminator=self.models[DISCRIMINATOR],
                                  student_optimizer=self.optimizers[STUDENT],
                                  disc_optimizer=self.optimizers[DISCRIMINATOR], pool=self.pool,
                                  schedule=self.schedule, batch_size=int(phase.expected_batch_size),
                                  adversarial_weight=self.hyper.distill_adversarial_weight,
                                  generator=self.distill_generator, device=self.device,
                                  teacher=self.emas[TEACHER].model if self.hyper.distill_states == "diffused" else None,
                                  teacher_steps=self.hyper.sample_steps)
        self.emas[STUDENT].update(self.models[STUDENT])
        return metrics

    def _train_step(self, phase: PhasePlan, mechanism: Mechanism | None) -> dict[str, float]:
        from dpsad_core.training.steps import denoise_step, distill_step, draw_batch

        for name, optimizer in self.optimizers.items():
            warm = min(1.0, (self.step + 1) / max(1, self.hyper.warmup_steps))
            for group in optimizer.param_groups:
                group["lr"] = self.base_lr[name] * warm
        if phase.kind == FEW_STEP:
            return self._few_step(phase)
        data = self.public_data if phase.data == "public" else self.private_data
        if data is None:  # pragma: no cover - only post-processing phases (which train here on no data) drop it
            raise RuntimeError(f"phase {phase.name} needs the {phase.data} data, which the run has dropped")
        sample_rate = mechanism.sample_rate if mechanism is not None else phase.sample_rate
        noise = self.randomness.stream("noise")
        batch = draw_batch(data, sample_rate=sample_rate, schedule=self.schedule,
                           draws_per_record=self.hyper.draws_per_record, label_dropout=self.hyper.label_dropout,
                           null_label=self.null_label, sampling=self.randomness.stream("sampling"),
                           loss_generator=self.loss_generator, world=self.world)
        if phase.kind == DENOISE:
            model = self.models[phase.model]
            metrics = denoise_step(model, self.optimizers[phase.model], batch, mechanism=mechanism,
                                   expected_batch_size=phase.expected_batch_size,
                                   microbatch_size=self.hyper.microbatch_size, stream=noise)
            metrics = {f"{phase.name}_{k}": v for k, v in metrics.items()}
            self.emas[phase.model].update(model)
        elif mechanism is None:  # pragma: no cover - the planner makes every distillation phase a dp one
            raise RuntimeError(f"distillation phase {phase.name} has no mechanism")
        else:
            metrics = distill_step(
                teacher=self.emas[TEACHER].model, student=self.models[STUDENT],
                discriminator=self.models["discriminator"], student_optimizer=self.optimizers[STUDENT],
                disc_optimizer=self.optimizers["discriminator"], batch=batch, mechanism=mechanism,
                expected_batch_size=phase.expected_batch_size, adversarial_weight=self.hyper.adversarial_weight,
                distillation_weight=self.hyper.distillation_weight, microbatch_size=self.hyper.microbatch_size,
                stream=noise)
            self.emas[STUDENT].update(self.models[STUDENT])
        if mechanism is not None:
            self.accountant.record(mechanism)
        return distributed.mean_metrics(metrics, batch.size)

    def _sample_grid(self, phase: PhasePlan) -> SampleGrid:
        import torch

        from dpsad_core.sampling import generate, grid_image, save_png, stamp_not_private, to_uint8

        labels = torch.arange(self.dataset.num_classes).repeat_interleave(GRID_PER_CLASS)
        part = phase.name
        few_step = phase.kind == FEW_STEP
        images = generate(self.emas[phase.model].model, self.schedule, labels=labels,
                          image_shape=(self.dataset.channels, self.dataset.resolution, self.dataset.resolution),
                          steps=self.hyper.sample_steps, guidance=0.0 if few_step else self.hyper.guidance,
                          seed=self.config.seed + 2, device=self.device,
                          timesteps=self.student_times if few_step else None)
        grid = grid_image(to_uint8(images), rows=self.dataset.num_classes)
        if not self.plan.is_private:
            grid = stamp_not_private(grid)
        path = save_png(grid, self.run.path / "samples" / f"{self.phase_index}-{part}-{self.step:05d}.png")
        save_png(grid, self.run.path / "samples" / "latest.png")
        return SampleGrid(phase=part, step=self.step, path=path, image=grid)

    def _interrupt(self, message: str) -> RunInterrupted:
        phase = self._phase
        self.run.save_torch(self.run.checkpoint_path, self.state_dict())
        self.life.interrupt(self.accountant, phase=phase.name, step=self.step, message=message)
        return RunInterrupted(run_id=self.run.run_id, phase=phase.name, step=self.step, message=message)

    def _epsilon_bound(self, epsilon_rdp: float) -> float:
        """A true upper bound on the epsilon spent so far, cheap enough for every step.

        The RDP epsilon of the steps taken is one. When the noise was calibrated with PRV, the whole
        plan's PRV epsilon is at most the target, and the steps taken are a prefix of the plan, which
        spends no more: so the target is one too. Without it a PRV-calibrated run would show its
        (looser) RDP number climbing past the target although the certified epsilon stays below it.
        """
        if self.hyper.accountant == "prv" and self.plan.is_private:
            return min(epsilon_rdp, self.plan.epsilon_target)
        return epsilon_rdp

    # -- results -----------------------------------------------------------------------------------
    def _finish(self) -> dict[str, Any]:
        if not self.world.is_leader:
            return {"run_id": self.run.run_id}  # rank 0 writes the release and reports it

        release = self.plan.release
        payload: dict[str, Any] = {
            "unet_config": self.unet_config.to_dict(), "state_dict": self.emas[release].model.state_dict(),
            "diffusion_steps": self.hyper.diffusion_steps, "schedule": self.hyper.schedule,
            "metadata": {"run_id": self.run.run_id, "recipe": self.config.recipe.value,
                         "private": self.plan.is_private, "class_names": list(self.dataset.class_names),
                         "sample_steps": self.hyper.sample_steps, "guidance": self.hyper.guidance},
        }
        if self.config.recipe.distills_for_free:
            # The few-step student is what samples by default; its teacher (the DP release it was
            # distilled from) stays available for DDIM sampling.
            payload["metadata"].update(prediction="v", timesteps=list(self.student_times),
                                       sample_steps=len(self.student_times), guidance=0.0)
            payload["teacher"] = {"state_dict": self.emas[TEACHER].model.state_dict(),
                                  "sample_steps": self.hyper.sample_steps, "guidance": self.hyper.guidance}
        self.run.save_torch(self.run.model_path, payload)
        values, accountant_note = certified_values(self.accountant)
        nonprivate = list(dict.fromkeys([*self.plan.nonprivate_parts, *self.accountant.nonprivate_parts]))
        result = RunResult(
            run_id=self.run.run_id, run_dir=str(self.run.path), recipe=self.config.recipe.value,
            private=not nonprivate,
            epsilon=values.to_dict()["certified"], epsilon_target=self.plan.epsilon_target,
            delta=self.plan.delta,
            accountant_values={"rdp": _json_float(values.rdp), "prv": _json_float(values.prv),
                               "rdp_order": values.rdp_order, "note": accountant_note},
            mechanisms=tuple(m.to_dict() for m in self.accountant.mechanisms),
            nonprivate_parts=tuple(nonprivate),
            claimed_epsilon_paper=self.plan.claimed_epsilon_paper,
            unit_of_privacy="patient" if self.dataset.patient_ids is not None else "image",
            # As config.json recorded it at the start (keyed with the workspace's identity key).
            dataset={"name": self.dataset.name,
                     "fingerprint": self.run.config().fingerprint,
                     "num_records": self.dataset.num_records, "num_units": self.dataset.num_privacy_units},
            steps={p.name: self._phase_limit(p) for p in self.plan.phases},
            model_path=str(self.run.model_path),
            sample_grid=str(self.run.path / "samples" / "latest.png"),
            student=({"sample_steps": len(self.student_times), "teacher_sample_steps": self.hyper.sample_steps,
                      "pool_size": self.hyper.pool_size, "distill_steps": self._phase_limit(self.plan.phases[-1]),
                      "seconds": round(self.student_seconds, 2)}
                     if self.config.recipe.distills_for_free else None),
            train_seconds=round(self.elapsed, 2), device=self.device, workers=self.world.size,
            secure_rng=not self.randomness.reproducible, secure_rng_note=self.randomness.description,
            finished=utc_now(),
        )
        self.life.finish(self.accountant, result, phase=self._phase.name, step=self.step)
        return result.to_dict()


def _json_float(value: float) -> float | None:
    return None if value is None or math.isinf(value) or math.isnan(value) else float(value)


def _software_versions() -> dict[str, str]:
    import platform

    import numpy
    import opacus
    import torch

    import dpsad_core

    return {"dpsad_core": dpsad_core.__version__, "torch": torch.__version__, "opacus": opacus.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}
