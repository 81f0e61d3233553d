"""The privacy plan: which phases run, on which data, with which calibrated noise (docs/method.md §1.6-§1.7).

The planner is shared by the CLI, the GUI's "New run" screen and the engine, so the numbers a user
sees before starting are the numbers the run uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from dpsad_core.errors import ConfigError
from dpsad_core.privacy import (
    Mechanism,
    calibrate_noise_multiplier,
    combined_noise_multiplier,
    split_noise_multiplier,
)
from dpsad_core.privacy.randomness import REPRODUCIBLE_NOISE_PART
from dpsad_core.runs.lifecycle import certified_values
from dpsad_core.training.config import Hyperparameters, Recipe

TEACHER, STUDENT, DENOISER, PRETRAIN = "teacher", "student", "denoiser", "pretrain"
#: Phase kinds: the denoising loss, DP-SAD's student step on private data, the free few-step distillation.
DENOISE, DISTILL, FEW_STEP = "denoise", "distill", "few-step"
#: Phase privacy: DP-SGD, public data only, unprotected private data, or computed from releases only.
POSTPROCESS = "postprocess"
DISCRIMINATOR = "discriminator"
JOINT_PART = "student+discriminator"


@dataclass(frozen=True)
class PhasePlan:
    """One training phase.

    ``kind`` is "denoise" (teacher or DPDM model: denoising loss), "distill" (student and
    discriminator on the private data) or "few-step" (student and discriminator on the released
    teacher's samples). ``privacy`` is "dp", "public" (public data, no cost), "nonprivate" (private
    data without protection: the release is not differentially private) or "postprocess" (computed
    from an earlier phase's release and public randomness only: no cost, docs/method.md §1.9).
    ``data`` is "private", "public" or "teacher" (the teacher's own samples).
    """

    name: str
    kind: str
    privacy: str
    data: str                      # "private" or "public"
    steps: int
    expected_batch_size: float
    sample_rate: float
    noise_multiplier: float        # what the accountant composes per step (sigma_eff for the joint step)
    model_noise_multiplier: float  # sigma of the trained model's own release (student or denoiser)
    disc_noise_multiplier: float   # sigma of the discriminator's release (0: not privatised)
    disc_private: bool
    network: str = ""              # the network trained, when it is not the one the name says

    @property
    def model(self) -> str:
        """The network this phase trains (public pre-training trains the DPDM denoiser or the teacher)."""
        if self.network:
            return self.network
        return DENOISER if self.name == PRETRAIN else self.name

    def mechanism(self, hyper: Hyperparameters, steps: int | None = None) -> Mechanism | None:
        """The mechanism the accountant composes for ``steps`` steps of this phase (None: no DP cost)."""
        if self.privacy != "dp":
            return None
        steps = self.steps if steps is None else steps
        if self.kind == DENOISE:
            return Mechanism(part=self.name, noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                             steps=steps, clip_norm=hyper.denoiser_clip_norm)
        if not self.disc_private:
            # dpsad-paper: only the student's release is noised (the discriminator is non-private).
            return Mechanism(part=STUDENT, noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                             steps=steps, clip_norm=hyper.student_clip_norm)
        components = (
            {"part": STUDENT, "noise_multiplier": self.model_noise_multiplier, "clip_norm": hyper.student_clip_norm},
            {"part": DISCRIMINATOR, "noise_multiplier": self.disc_noise_multiplier,
             "clip_norm": hyper.disc_clip_norm},
        )
        return Mechanism(part=JOINT_PART, noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                         steps=steps, clip_norm=None, components=components)


@dataclass(frozen=True)
class TrainingPlan:
    recipe: Recipe
    epsilon_target: float
    delta: float
    private_units: int
    public_records: int
    phases: tuple[PhasePlan, ...]
    nonprivate_parts: tuple[str, ...]
    planned_epsilon: dict[str, Any]      # AccountantValues.to_dict() of the full plan
    claimed_epsilon_paper: float | None  # dpsad-paper: what the paper's accounting would claim
    release: str                         # which part is released and sampled from
    warnings: tuple[str, ...]
    #: The noisy count of the units (privacy/noisy_count.py) when N is private: ``Mechanism.to_dict()``,
    #: composed before the phases and included in ``planned_epsilon`` (None: N declared public).
    count_mechanism: dict[str, Any] | None = None
    #: Where ``private_units`` comes from: "declared" (exact, public), "noisy count" (drawn by the run),
    #: "rounded" (a preview: the exact N rounded down, which the run replaces by its noisy count), or ""
    #: (a plan stored before this was recorded).
    units_from: str = ""

    @property
    def is_private(self) -> bool:
        return not self.nonprivate_parts

    def prior_mechanisms(self) -> list[Mechanism]:
        """What the run spends before its phases: the noisy count, if any."""
        return [Mechanism.from_dict(self.count_mechanism)] if self.count_mechanism is not None else []

    def mechanisms(self, hyper: Hyperparameters) -> list[Mechanism]:
        return self.prior_mechanisms() + [m for m in (p.mechanism(hyper) for p in self.phases) if m is not None]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recipe"] = self.recipe.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingPlan:
        data = dict(data)
        data["recipe"] = Recipe(data["recipe"])
        data["phases"] = tuple(PhasePlan(**p) for p in data["phases"])
        for key in ("nonprivate_parts", "warnings"):
            data[key] = tuple(data[key])
        return cls(**data)


def plan_training(*, recipe: Recipe, hyper: Hyperparameters, epsilon: float, delta: float, private_units: int,
                  public_records: int = 0, reproducible_noise: bool = False, count: Mechanism | None = None,
                  units_from: str = "declared") -> TrainingPlan:
    """Calibrate every noise multiplier so that the composed epsilon of the whole plan <= ``epsilon``.

    ``count``: the noisy count that publishes ``private_units`` (N private): its cost is composed before
    every phase, so the whole plan, count included, meets ``epsilon``. ``units_from`` says where
    ``private_units`` comes from (see :class:`TrainingPlan`).
    ``reproducible_noise``: the noise and sampling come from a known seed (``--privacy-seed``), which
    voids the guarantee; the plan lists that among its non-private parts.
    """
    if private_units < 1:
        raise ConfigError("the private dataset is empty", field="data", value=private_units)
    warnings: list[str] = []
    if delta >= 1.0 / private_units:
        warnings.append(f"delta = {delta:g} is not below 1/N = {1.0 / private_units:.3g}: the guarantee allows "
                        "one record in N to be exposed; choose a smaller delta")

    def rate(batch: int, population: int, part: str) -> tuple[float, float]:
        if batch >= population:
            warnings.append(f"{part}: expected batch {batch} >= {population} records, so every record is in every "
                            "batch (sample rate 1): there is no amplification by subsampling")
            return 1.0, float(population)
        return batch / population, float(batch)

    accountant = hyper.accountant
    prior = [count] if count is not None else []
    phases: list[PhasePlan] = []
    nonprivate: list[str] = []
    claimed: float | None = None
    q_s, batch_s = rate(hyper.student_batch_size, private_units, STUDENT)

    def joint_phase(before: list[Mechanism]) -> PhasePlan:
        sigma_eff = calibrate_noise_multiplier(target_epsilon=epsilon, delta=delta, sample_rate=q_s,
                                               steps=hyper.student_steps, prior=prior + before,
                                               accountant=accountant)
        shares = (hyper.student_noise_share, 1.0 - hyper.student_noise_share)
        sigma_student, sigma_disc = split_noise_multiplier(sigma_eff, shares=shares)
        return PhasePlan(name=STUDENT, kind=DISTILL, privacy="dp", data="private", steps=hyper.student_steps,
                         expected_batch_size=batch_s, sample_rate=q_s,
                         noise_multiplier=combined_noise_multiplier([sigma_student, sigma_disc]),
                         model_noise_multiplier=sigma_student, disc_noise_multiplier=sigma_disc, disc_private=True)

    def whole_budget_denoiser(name: str, network: str) -> None:
        """dpdm's model (dpsad's teacher): DP-SGD with the whole budget, after free public pre-training if given
        (DP-Promise-style: DP-SGD then fine-tunes from the public phase's averaged weights)."""
        sample_rate, batch = rate(hyper.denoiser_batch_size, private_units, name)
        sigma = calibrate_noise_multiplier(target_epsilon=epsilon, delta=delta, sample_rate=sample_rate,
                                           steps=hyper.denoiser_steps, prior=prior, accountant=accountant)
        if public_records > 0:
            public_rate, public_batch = _public_rate(hyper.denoiser_batch_size, public_records)
            phases.append(_denoise_phase(PRETRAIN, "public", "public", hyper.pretrain_steps, public_batch,
                                         public_rate, 0.0, network=network))
        phases.append(_denoise_phase(name, "dp", "private", hyper.denoiser_steps, batch, sample_rate, sigma))

    if recipe is Recipe.DPDM:
        whole_budget_denoiser(DENOISER, network="")
        release = DENOISER
    elif recipe is Recipe.DPSAD:
        # The student is post-processing of the teacher: it reads the teacher's own samples only.
        whole_budget_denoiser(TEACHER, network=TEACHER)
        phases.append(PhasePlan(name=STUDENT, kind=FEW_STEP, privacy=POSTPROCESS, data="teacher",
                                steps=hyper.distill_steps, expected_batch_size=float(hyper.distill_batch_size),
                                sample_rate=0.0, noise_multiplier=0.0, model_noise_multiplier=0.0,
                                disc_noise_multiplier=0.0, disc_private=False))
        release = STUDENT
    elif recipe is Recipe.DPSAD_SPLIT:
        sample_rate, batch = rate(hyper.denoiser_batch_size, private_units, TEACHER)
        sigma_t = calibrate_noise_multiplier(target_epsilon=epsilon * hyper.teacher_budget_share, delta=delta,
                                             sample_rate=sample_rate, steps=hyper.denoiser_steps, prior=prior,
                                             accountant=accountant)
        teacher = _denoise_phase(TEACHER, "dp", "private", hyper.denoiser_steps, batch, sample_rate, sigma_t)
        phases += [teacher, joint_phase([m for m in [teacher.mechanism(hyper)] if m is not None])]  # a dp phase
        release = STUDENT
    elif recipe is Recipe.DPSAD_PUBLIC_TEACHER:
        if public_records < 1:
            raise ConfigError("the public dataset is empty", field="public_data", value=public_records)
        sample_rate, batch = _public_rate(hyper.denoiser_batch_size, public_records)
        phases += [_denoise_phase(TEACHER, "public", "public", hyper.denoiser_steps, batch, sample_rate, 0.0),
                   joint_phase([])]
        release = STUDENT
    elif recipe is Recipe.DPSAD_PAPER:
        sample_rate, batch = rate(hyper.denoiser_batch_size, private_units, TEACHER)
        # The paper calibrates the student's noise as if the student were the only mechanism.
        sigma_s = calibrate_noise_multiplier(target_epsilon=epsilon, delta=delta, sample_rate=q_s,
                                             steps=hyper.student_steps, accountant=accountant)
        phases.append(_denoise_phase(TEACHER, "nonprivate", "private", hyper.denoiser_steps, batch, sample_rate, 0.0))
        phases.append(PhasePlan(name=STUDENT, kind=DISTILL, privacy="dp", data="private", steps=hyper.student_steps,
                                expected_batch_size=batch_s, sample_rate=q_s, noise_multiplier=sigma_s,
                                model_noise_multiplier=sigma_s, disc_noise_multiplier=0.0, disc_private=False))
        nonprivate = [TEACHER, DISCRIMINATOR]
        claimed = epsilon
        warnings.append("dpsad-paper trains the teacher and the discriminator on the private data without "
                        "protection: the result is NOT differentially private (epsilon = infinity)")
        release = STUDENT
    else:  # pragma: no cover - Recipe is a closed enum
        raise ConfigError(f"unknown recipe {recipe}", field="recipe", value=recipe)

    if reproducible_noise:
        nonprivate.append(REPRODUCIBLE_NOISE_PART)
        warnings.append("the noise and the sampling come from a known seed (--privacy-seed): anyone with the seed "
                        "can regenerate them, so the result is NOT differentially private (epsilon = infinity)")
    mechanisms = prior + [m for m in (p.mechanism(hyper) for p in phases) if m is not None]
    # Priced as the finished run certifies (min of RDP and PRV, whichever accountant calibrated the noise),
    # so the plan, the ledger's projection and the run's result print one number.
    values, accountant_note = certified_values(mechanisms=mechanisms, delta=delta, nonprivate_parts=tuple(nonprivate))
    if accountant_note is not None:
        warnings.append(accountant_note)
    if private_units < 1000:
        warnings.append(f"only {private_units} privacy units: with so few, the noise needed for epsilon "
                        f"{epsilon:g} leaves little signal; expect low quality")
    return TrainingPlan(recipe=recipe, epsilon_target=epsilon, delta=delta, private_units=private_units,
                        public_records=public_records, phases=tuple(phases), nonprivate_parts=tuple(nonprivate),
                        planned_epsilon=values.to_dict(), claimed_epsilon_paper=claimed, release=release,
                        warnings=tuple(warnings), count_mechanism=count.to_dict() if count is not None else None,
                        units_from=units_from)


def _public_rate(batch: int, records: int) -> tuple[float, float]:
    """Sample rate and expected batch on public data (no privacy amplification needed, so no warning)."""
    return min(1.0, batch / records), float(min(batch, records))


def _denoise_phase(name: str, privacy: str, data: str, steps: int, batch: float, sample_rate: float, sigma: float,
                   network: str = "") -> PhasePlan:
    return PhasePlan(name=name, kind=DENOISE, privacy=privacy, data=data, steps=steps, expected_batch_size=batch,
                     sample_rate=sample_rate, noise_multiplier=sigma, model_noise_multiplier=sigma,
                     disc_noise_multiplier=0.0, disc_private=False, network=network)
