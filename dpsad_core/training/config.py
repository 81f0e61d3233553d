"""Training configuration: recipes, presets and the fully resolved config written into each run.

A preset fills every hyper-parameter; ``overrides`` (CLI ``--set key=value``) change single fields. The
resolved :class:`TrainConfig` round-trips through JSON and is stored in the run folder, so a run can
always be resumed or audited with exactly the settings it used.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from dpsad_core.errors import ConfigError

if TYPE_CHECKING:  # the diffusion package imports torch; a config does not need it
    from dpsad_core.diffusion.schedule import ScheduleKind


class Recipe(str, enum.Enum):
    """Which parts exist and how each may touch the private data (docs/method.md §1.6)."""

    DPSAD = "dpsad"                                # DP teacher (whole budget), few-step student distilled for free
    DPSAD_SPLIT = "dpsad-split"                    # DP teacher, DP student + discriminator: the budget split
    DPSAD_PUBLIC_TEACHER = "dpsad-public-teacher"  # teacher on user-declared public data, DP student + D
    DPDM = "dpdm"                                  # one model trained with DP-SGD (baseline)
    DPSAD_PAPER = "dpsad-paper"                    # reproduction: non-private teacher and D => epsilon = inf

    @property
    def is_private(self) -> bool:
        return self is not Recipe.DPSAD_PAPER

    @property
    def has_student(self) -> bool:
        return self is not Recipe.DPDM

    @property
    def distills_for_free(self) -> bool:
        """The student learns from the released teacher only (post-processing, docs/method.md §1.9)."""
        return self is Recipe.DPSAD

    @property
    def public_data_use(self) -> str | None:
        """What ``--public-data`` is for in this recipe (None: the recipe takes none)."""
        return {Recipe.DPSAD: "optional: the teacher pre-trains on it (free) before DP-SGD",
                Recipe.DPDM: "optional: the model pre-trains on it (free) before DP-SGD",
                Recipe.DPSAD_PUBLIC_TEACHER: "required: the teacher learns only from it (free)"}.get(self)

    @property
    def description(self) -> str:
        """One line for the analyst (CLI help, the GUI's New run)."""
        return _RECIPE_DESCRIPTIONS[self]


_RECIPE_DESCRIPTIONS = {
    Recipe.DPSAD: "A teacher trained with differential privacy on your data, then a fast student that learns only "
                  "from the teacher's own images: the student costs no privacy and makes images in 4 steps.",
    Recipe.DPSAD_SPLIT: "A private teacher, then a private student and discriminator on your data: the privacy "
                        "budget is split between them.",
    Recipe.DPSAD_PUBLIC_TEACHER: "A teacher trained on data you declare public (free), then a private student "
                                 "and discriminator on your data.",
    Recipe.DPDM: "One model trained with differential privacy on your data (the DPDM baseline).",
    Recipe.DPSAD_PAPER: "The paper's recipe, for research only: the teacher sees your data without protection, "
                        "so the result is NOT differentially private.",
}

#: The recipe a run gets when none is named: measured best among the sound recipes at equal compute
#: (docs/benchmarks.md: MNIST at epsilon 10, dpdm 0.719 and dpdm pre-trained on public data 0.753
#: against dpsad-split 0.607; the demo and the CPU aim agree).
DEFAULT_RECIPE = Recipe.DPDM

#: Recipe names as ``config.json`` files written before ``dpsad`` meant free distillation.
_LEGACY_RECIPE_NAMES: dict[object, str] = {"dpsad": Recipe.DPSAD_SPLIT.value}

#: ``config.json``'s format: 2 since ``dpsad`` is the free-distillation recipe (format 1 meant dpsad-split);
#: 3 since the denoiser's settings and ``draws_per_record`` have their names (:data:`LEGACY_SETTING_NAMES`).
CONFIG_FORMAT = 3

#: Hyper-parameter names before format 3, and the names they are read as: the phase they drive trains
#: dpdm's only model as well as a teacher, and K draws per record sat beside the noise multiplier. A
#: ``config.json`` of an older run and ``--set old_name=value`` both keep working through this table.
LEGACY_SETTING_NAMES: dict[str, str] = {
    "teacher_steps": "denoiser_steps",
    "teacher_batch_size": "denoiser_batch_size",
    "teacher_lr": "denoiser_lr",
    "teacher_clip_norm": "denoiser_clip_norm",
    "noise_multiplicity": "draws_per_record",
}


#: Widest layer accepted for a network level (``--set channels=...``): far past any preset (128).
MAX_WIDTH = 4096
#: Where the few-step student's training states come from (``Hyperparameters.distill_states``).
DISTILL_STATES = ("trajectories", "diffused")


@dataclass(frozen=True)
class Hyperparameters:
    """Everything a preset decides. Names are what ``--set`` accepts."""

    # networks
    channels: tuple[int, ...] = (16, 32)
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = ()
    disc_channels: tuple[int, ...] = (16, 32)
    # diffusion
    diffusion_steps: int = 500
    schedule: ScheduleKind = "linear"
    # optimisation (the denoiser phase: dpdm's only model, the DP-SAD recipes' teacher)
    denoiser_steps: int = 400
    pretrain_steps: int = 400              # dpdm with public data: free pre-training steps before DP-SGD
    denoiser_batch_size: int = 256         # expected Poisson batch size
    denoiser_lr: float = 2e-3
    denoiser_clip_norm: float = 0.1
    # optimisation (student + discriminator phase)
    student_steps: int = 100
    student_batch_size: int = 256
    student_lr: float = 1e-3
    student_clip_norm: float = 0.1
    disc_lr: float = 1e-3
    disc_clip_norm: float = 0.1
    student_noise_share: float = 0.7       # share of the joint step's 1/sigma^2 given to the student's release
    adversarial_weight: float = 1.0        # lambda in docs/method.md §1.3 (paper: 1)
    distillation_weight: float = 1.0       # weight of the teacher term in L_dis (paper: 1)
    # shared
    draws_per_record: int = 4              # K draws of (t, eps) per record, averaged before clipping
    warmup_steps: int = 20
    ema_decay: float = 0.9995
    ema_power: float = 3.0                 # power-function EMA: averages about the last 1/(power+1) of a phase
    label_dropout: float = 0.1             # for classifier-free guidance
    teacher_budget_share: float = 0.5      # dpsad: share of the target epsilon calibrated for the teacher alone
    accountant: str = "rdp"                # accountant used to calibrate noise ("rdp" fast, "prv" tighter; quick
                                           # and standard use prv, tiny keeps rdp for fast tests)
    # free few-step distillation (dpsad: post-processing of the released teacher, docs/method.md §1.9)
    distill_steps: int = 600               # student + discriminator steps on the teacher's pool (no privacy cost)
    distill_batch_size: int = 128
    # 0 (the plain regression) measured 8 points of CNN accuracy above 0.1 on the same MNIST teacher
    # (bench/distill_sweep.py, docs/benchmarks.md); the discriminator is then not trained at all.
    distill_adversarial_weight: float = 0.0
    pool_size: int = 2048                  # teacher trajectories the student learns from
    # "trajectories": the pool's own states (cheap); "diffused": fresh forward-diffused teacher images with
    # the teacher's steps as targets (about 6x the compute per step; measured +2.4 points on the same teacher)
    distill_states: str = "trajectories"
    student_sample_steps: int = 4          # network evaluations per image of the few-step student
    # sampling and bookkeeping
    sample_steps: int = 25
    guidance: float = 0.0
    sample_every: int = 50
    checkpoint_every: int = 25
    microbatch_size: int = 64              # records per vmap chunk: speed and memory only (64 measured fastest)

    def __post_init__(self) -> None:
        for name in ("channels", "attention_levels", "disc_channels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("channels", "disc_channels"):
            widths = getattr(self, name)
            if not widths or not all(1 <= width <= MAX_WIDTH for width in widths):
                raise ConfigError(f"{name} must be one or more widths from 1 to {MAX_WIDTH}, got {widths}", field=name,
                                  value=widths, remedy=f"e.g. --set {name}=16,32")
        if not all(0 <= level < len(self.channels) for level in self.attention_levels):
            raise ConfigError(f"attention_levels must name levels 0 to {len(self.channels) - 1} of channels, got "
                              f"{self.attention_levels}", field="attention_levels", value=self.attention_levels)
        for item in fields(self):  # NaN passes every comparison below: refuse it (and infinity) first
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{item.name} must be a finite number, got {value}", field=item.name, value=value)
        positive_ints = ("diffusion_steps", "denoiser_batch_size", "student_batch_size", "draws_per_record",
                         "sample_steps", "sample_every", "checkpoint_every", "microbatch_size", "blocks_per_level",
                         "distill_batch_size", "pool_size", "student_sample_steps")
        for name in positive_ints:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1", field=name, value=getattr(self, name))
        for name in ("denoiser_steps", "student_steps", "warmup_steps", "pretrain_steps", "distill_steps"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0", field=name, value=getattr(self, name))
        for name in ("denoiser_lr", "student_lr", "disc_lr", "denoiser_clip_norm", "student_clip_norm",
                     "disc_clip_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number", field=name, value=value)
        for name in ("student_noise_share", "teacher_budget_share"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ConfigError(f"{name} must be strictly between 0 and 1", field=name, value=value)
        if not 0 <= self.label_dropout < 1:
            raise ConfigError("label_dropout must be in [0, 1)", field="label_dropout", value=self.label_dropout)
        if self.guidance < 0:
            raise ConfigError("guidance must be >= 0", field="guidance", value=self.guidance)
        if self.ema_power < 0:
            raise ConfigError("ema_power must be >= 0", field="ema_power", value=self.ema_power)
        if not 0 <= self.ema_decay < 1:
            raise ConfigError("ema_decay must be in [0, 1)", field="ema_decay", value=self.ema_decay)
        if self.schedule not in ("linear", "cosine"):
            raise ConfigError("schedule must be 'linear' or 'cosine'", field="schedule", value=self.schedule)
        if self.distill_states not in DISTILL_STATES:
            raise ConfigError(f"distill_states must be one of {', '.join(DISTILL_STATES)}", field="distill_states",
                              value=self.distill_states)
        if self.accountant not in ("rdp", "prv"):
            raise ConfigError("accountant must be 'rdp' or 'prv'", field="accountant", value=self.accountant)
        if self.distillation_weight < 0:
            raise ConfigError("distillation_weight must be >= 0", field="distillation_weight",
                              value=self.distillation_weight)
        if self.distill_adversarial_weight < 0:
            raise ConfigError("distill_adversarial_weight must be >= 0", field="distill_adversarial_weight",
                              value=self.distill_adversarial_weight)
        if self.student_sample_steps > 8:
            raise ConfigError("student_sample_steps must be 1 to 8: the student is a few-step sampler",
                              field="student_sample_steps", value=self.student_sample_steps)
        if self.adversarial_weight < 0:
            raise ConfigError("adversarial_weight must be >= 0", field="adversarial_weight",
                              value=self.adversarial_weight)
        if self.sample_steps > self.diffusion_steps:
            raise ConfigError("sample_steps cannot exceed diffusion_steps", field="sample_steps",
                              value=self.sample_steps)


PRESETS: dict[str, Hyperparameters] = {
    # Seconds on 2 CPU cores: for tests and smoke checks. Learns nothing useful.
    "tiny": Hyperparameters(channels=(8, 16), disc_channels=(8, 8), diffusion_steps=100, denoiser_steps=4,
                            pretrain_steps=4, denoiser_batch_size=16, student_steps=4, student_batch_size=16,
                            draws_per_record=2,
                            warmup_steps=1, sample_steps=5, sample_every=2, checkpoint_every=2,
                            microbatch_size=16, distill_steps=4, distill_batch_size=16, pool_size=32),
    # A few minutes on 2 CPU cores at 8 x 8 (the demo); roughly 4x per step at 16 x 16. Noise is
    # calibrated with PRV: 1-3 s more planning for about 6% less noise at the same guarantee
    # (docs/benchmarks.md, the CPU aim).
    "quick": Hyperparameters(accountant="prv"),
    # Larger model and longer run (GPU, or an hour-scale CPU run).
    "standard": Hyperparameters(channels=(32, 64, 128), attention_levels=(2,), disc_channels=(32, 64),
                                denoiser_steps=1000, denoiser_batch_size=512, student_steps=500,
                                student_batch_size=512, sample_every=100, checkpoint_every=50, accountant="prv",
                                distill_steps=3000, distill_batch_size=256, pool_size=8192),
}


def resolve_hyperparameters(preset: str, overrides: dict[str, Any] | None = None) -> Hyperparameters:
    """The preset's values with ``overrides`` applied; values given as strings are parsed by field type."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}", field="preset", value=preset,
                          remedy=f"choose one of: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    if not overrides:
        return base
    known = {f.name: f for f in fields(Hyperparameters)}
    parsed: dict[str, Any] = {}
    for key, value in current_setting_names(overrides).items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}", field=key, value=value,
                              remedy=f"known settings: {', '.join(sorted(known))}")
        parsed[key] = _parse_like(getattr(base, key), value, key)
    return dataclasses.replace(base, **parsed)


def current_setting_names(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with every name of :data:`LEGACY_SETTING_NAMES` replaced by the name it has now.

    Raises
    ------
    ConfigError
        A setting is given under both its old and its new name.
    """
    for old, name in LEGACY_SETTING_NAMES.items():
        if old in settings and name in settings:
            raise ConfigError(f"{name} is given twice: as {name} and by its former name {old}", field=name,
                              value=settings[old], remedy=f"keep only {name}")
    return {LEGACY_SETTING_NAMES.get(key, key): value for key, value in settings.items()}


def _parse_like(example: Any, value: Any, name: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if isinstance(example, tuple):
            return tuple(int(v) for v in value.replace("(", "").replace(")", "").split(",") if v.strip())
        if isinstance(example, bool):
            return value.lower() in ("1", "true", "yes")
        if isinstance(example, int):
            return int(value)
        if isinstance(example, float):
            return float(value)
    except ValueError:
        raise ConfigError(f"cannot read {value!r} as a value for {name}", field=name, value=value,
                          remedy=f"give a {type(example).__name__}, like {example!r}") from None
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Written as ``config.json`` into the run folder."""

    data: str
    recipe: Recipe = DEFAULT_RECIPE
    epsilon: float = 10.0
    delta: float | None = None               # None: min(1e-5, 0.1 / number of privacy units)
    preset: str = "quick"
    hyper: Hyperparameters = field(default_factory=Hyperparameters)
    public_data: str | None = None           # dpsad-public-teacher: data the user declares public
    max_steps: int | None = None             # cap on the steps of each phase (spend is reported as actual)
    resolution: int | None = None
    seed: int = 0                            # public randomness only: model initialisation, sample grids
    privacy_seed: int | None = None          # reproducible noise and sampling: the run is NOT private
    device: str = "auto"
    min_records: int = 100
    ledger_data: str | None = None           # audit runs: the source data whose ledger entry pays for the run
    allow_public_overlap: bool = False       # research: use public data that shares records (run NOT private)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipe", Recipe(self.recipe))
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError("epsilon must be a positive number", field="epsilon", value=self.epsilon,
                              remedy="pass --epsilon, e.g. --epsilon 10")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError("delta must be in (0, 1)", field="delta", value=self.delta,
                              remedy="pass --delta well below 1/N, e.g. --delta 1e-5")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= 2**63 - 1:
            raise ConfigError(f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed!r}", field="seed",
                              value=self.seed)
        if self.max_steps is not None and self.max_steps < 0:
            raise ConfigError("max_steps must be >= 0", field="max_steps", value=self.max_steps)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}", field="device", value=self.device,
                              remedy="use auto, cpu or cuda")
        if self.recipe is Recipe.DPSAD_PUBLIC_TEACHER and not self.public_data:
            raise ConfigError("the dpsad-public-teacher recipe needs a public dataset", field="public_data",
                              remedy="pass --public-data PATH with data you are allowed to treat as public")
        if self.recipe.public_data_use is None and self.public_data:
            users = ", ".join(r.value for r in Recipe if r.public_data_use is not None)
            raise ConfigError(f"--public-data is used by the {users} recipes, not {self.recipe.value}",
                              field="public_data", value=self.public_data)

    def to_dict(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        result["recipe"] = self.recipe.value
        result["format"] = CONFIG_FORMAT
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        data = dict(data)
        if data.pop("format", 1) < 2:  # an older run: its names are read as they were meant
            data["recipe"] = _LEGACY_RECIPE_NAMES.get(data.get("recipe"), data.get("recipe"))
        data["hyper"] = Hyperparameters(**current_setting_names(data.get("hyper", {})))
        return cls(**data)
