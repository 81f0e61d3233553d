"""Noise schedules and samplers (pure math over any eps-prediction model)."""

from dpsad_core.diffusion.samplers import ddim_sample, ddpm_sample, sample
from dpsad_core.diffusion.schedule import DiffusionSchedule

__all__ = ["DiffusionSchedule", "ddim_sample", "ddpm_sample", "sample"]
