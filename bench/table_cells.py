"""The cells of the benchmark table against the literature (docs/method.md §1.4), and the published numbers.

A cell is one (profile, dataset, epsilon, recipe): train a generator with the product's engine, then
score it with ``dpsad-core evaluate`` (downstream CNN on the real test set, Frechet distance on the
features of a classifier trained on the real training data). ``bench/table.py`` runs cells and
renders the table; this file only says what each cell is.

Profiles:
- ``cpu``: what this project's 2-core machine runs with each cell at most about 15 minutes (train,
  sample and evaluate). 16 x 16 images, the quick preset, step counts sized so that every recipe gets
  about the same compute. Far from the published setting: compare recipes with each other here.
- ``gpu``: aimed at the published setting (28 x 28, a larger UNet, thousands of steps, 60,000 synthetic
  images); for a session with an accelerator.
- ``smoke``: seconds, on the embedded demo digits; the tests run it to prove the harness works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

RECIPES = ("dpsad", "dpsad-split", "dpsad-public-teacher", "dpdm", "dpdm-public", "dpsad-paper")
#: Recipes whose release is a few-step student with a teacher to compare it with (docs/method.md §1.9).
STUDENT_RECIPES = ("dpsad",)
EPSILONS = (1.0, 10.0)
DELTA = 1e-5


@dataclass(frozen=True)
class BenchDataset:
    """Where a dataset's splits are, and which public data (same classes) it may pretrain on."""

    name: str
    train: str
    test: str
    public: str | None = None      # None: no public data with the same classes exists here
    duplicates: str = "refuse"     # the import's policy for exact duplicate records (PneumoniaMNIST has 18)

    def available(self) -> bool:
        return self.train in ("demo",) or Path(self.train).exists()


DATASETS = {
    "mnist": BenchDataset("mnist", str(SHARED_DATA / "mnist"), str(SHARED_DATA / "mnist"), public="rendered-digits"),
    "fashion-mnist": BenchDataset("fashion-mnist", str(SHARED_DATA / "fashion-mnist"),
                                  str(SHARED_DATA / "fashion-mnist")),
    "pneumoniamnist": BenchDataset("pneumoniamnist", str(SHARED_DATA / "medmnist" / "pneumoniamnist.npz"),
                                   str(SHARED_DATA / "medmnist" / "pneumoniamnist.npz"), duplicates="merge"),
    "demo": BenchDataset("demo", "demo", "demo", public="rendered-digits"),
}


@dataclass(frozen=True)
class Profile:
    """How big every cell of a profile is."""

    name: str
    preset: str
    resolution: int | None
    per_class: int                  # synthetic images per class for the evaluation
    datasets: tuple[str, ...]
    steps: dict[str, dict[str, int]]   # recipe -> step overrides (same compute for every recipe)
    overrides: dict[str, object] = field(default_factory=dict)
    cnn_epochs: int = 10
    # The CPU cells were measured with exactly cnn_epochs (no minimum of steps): kept so they stay comparable.
    cnn_min_steps: int = 0
    feature_spec: dict[str, int] = field(default_factory=dict)  # FeatureNetSpec fields (default: the product's)
    max_minutes: float | None = None   # the bound the profile promises per cell


# Measured at 16 x 16 on 2 cores (docs/benchmarks.md, step time): a denoiser step of 256 x 4 records
# takes about 2.1 s, a student + discriminator step about 3.9 s. Each recipe gets about 9 minutes of
# steps on the private data; dpsad's teacher is dpdm's model, and its free distillation (no per-record
# gradients, a few minutes) comes on top.
_CPU_STEPS = {
    "dpsad": {"denoiser_steps": 260},
    "dpsad-split": {"denoiser_steps": 130, "student_steps": 70},
    "dpdm": {"denoiser_steps": 260},
    "dpdm-public": {"pretrain_steps": 130, "denoiser_steps": 130},
    "dpsad-public-teacher": {"denoiser_steps": 130, "student_steps": 70},
    "dpsad-paper": {"denoiser_steps": 130, "student_steps": 70},
}
_GPU_STEPS = {
    "dpdm": {"denoiser_steps": 4000},
    "dpdm-public": {"pretrain_steps": 2000, "denoiser_steps": 4000},
    "dpsad": {"denoiser_steps": 4000},
    "dpsad-split": {"denoiser_steps": 2000, "student_steps": 2000},
    "dpsad-public-teacher": {"denoiser_steps": 2000, "student_steps": 2000},
    "dpsad-paper": {"denoiser_steps": 2000, "student_steps": 2000},
}
_SMOKE_STEPS = {recipe: {"denoiser_steps": 3, "pretrain_steps": 2, "student_steps": 2} for recipe in RECIPES}

PROFILES = {
    "cpu": Profile("cpu", preset="quick", resolution=16, per_class=500,
                   datasets=("mnist", "fashion-mnist", "pneumoniamnist"), steps=_CPU_STEPS,
                   overrides={"accountant": "prv"}, max_minutes=15),
    "gpu": Profile("gpu", preset="standard", resolution=None, per_class=6000,
                   datasets=("mnist", "fashion-mnist", "pneumoniamnist"), steps=_GPU_STEPS,
                   overrides={"accountant": "prv", "denoiser_batch_size": 2048, "student_batch_size": 2048,
                              "draws_per_record": 8, "sample_steps": 50}, cnn_epochs=20),
    "smoke": Profile("smoke", preset="tiny", resolution=8, per_class=5, datasets=("demo",), steps=_SMOKE_STEPS,
                     cnn_epochs=1, feature_spec={"epochs": 1, "min_steps": 20}),
}

# Downstream CNN accuracy on the real test set at (epsilon 1, epsilon 10), delta 1e-5 (docs/method.md §1.4).
PUBLISHED = {
    "mnist": {"DP-SAD (paper)": (0.962, 0.976), "DPDM (accuracy-tuned)": (0.953, 0.981),
              "DPGEN": (0.905, 0.936), "GS-WGAN": (0.143, 0.808)},
    "fashion-mnist": {"DP-SAD (paper)": (0.844, 0.896), "DPDM (accuracy-tuned)": (0.794, 0.862),
                      "DPGEN": (0.828, 0.878), "GS-WGAN": (0.166, 0.658)},
}


@dataclass(frozen=True)
class Cell:
    profile: str
    dataset: str
    epsilon: float
    recipe: str

    @property
    def cell_id(self) -> str:
        return f"{self.dataset}-eps{self.epsilon:g}-{self.recipe}"

    @property
    def engine_recipe(self) -> str:
        """``dpdm-public`` is the dpdm recipe given the dataset's public data."""
        return "dpdm" if self.recipe == "dpdm-public" else self.recipe

    @property
    def public_data(self) -> str | None:
        if self.recipe in ("dpsad-public-teacher", "dpdm-public"):
            return DATASETS[self.dataset].public
        return None

    def applicable(self) -> str | None:
        """None when the cell can run; otherwise why not."""
        if self.recipe in ("dpsad-public-teacher", "dpdm-public") and DATASETS[self.dataset].public is None:
            return "no public data with the same classes"
        return None

    def overrides(self) -> dict[str, object]:
        profile = PROFILES[self.profile]
        return {**profile.overrides, **profile.steps[self.recipe]}

    def command(self) -> str:
        return f"python bench/table.py run --profile {self.profile} --cell {self.cell_id}"


def cells(profile: str) -> list[Cell]:
    """Every cell of a profile, in the order the table shows them."""
    spec = PROFILES[profile]
    return [Cell(profile, dataset, epsilon, recipe)
            for dataset in spec.datasets for epsilon in EPSILONS for recipe in RECIPES]


def find_cell(profile: str, cell_id: str) -> Cell:
    for cell in cells(profile):
        if cell.cell_id == cell_id:
            return cell
    known = ", ".join(c.cell_id for c in cells(profile))
    raise SystemExit(f"no cell {cell_id!r} in profile {profile!r}; known: {known}")
