"""Evaluation of synthetic data (METHOD.md section 3). So far: downstream classifier accuracy."""

from dpsad_core.evaluation.downstream import DownstreamResult, downstream_accuracy

__all__ = ["DownstreamResult", "downstream_accuracy"]
