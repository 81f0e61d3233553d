"""Training: recipes, the privacy plan, DP-SGD steps and the event-generating engine."""

from dpsad_core.privacy.calibration import default_delta
from dpsad_core.runs.folder import RunFolder, list_runs
from dpsad_core.training.config import (
                                        DEFAULT_RECIPE,
                                        PRESETS,
                                        Hyperparameters,
                                        Recipe,
                                        TrainConfig,
                                        resolve_hyperparameters,
)
from dpsad_core.training.engine import prepare_run, resume_training, start_training
from dpsad_core.training.planner import PhasePlan, TrainingPlan, plan_training

__all__ = ["DEFAULT_RECIPE", "PRESETS", "Hyperparameters", "PhasePlan", "Recipe", "RunFolder", "TrainConfig",
           "TrainingPlan", "default_delta", "list_runs", "plan_training", "prepare_run", "resolve_hyperparameters",
           "resume_training", "start_training"]
