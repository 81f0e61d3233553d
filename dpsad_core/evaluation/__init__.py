"""Evaluation of synthetic data (docs/method.md §3): utility, fidelity, memorisation.

- :mod:`.downstream` and :mod:`.logistic`: a CNN and a logistic regression trained on synthetic data
  only, tested on real held-out data, selected on a synthetic hold-out.
- :mod:`.features`, :mod:`.fidelity`, :mod:`.inception`: Frechet distance and k-NN precision/recall
  on the features of a classifier trained on the real training data; true FID with Inception weights.
- :mod:`.memorisation`: distance to the closest training record against real held-out data.
- :mod:`.evaluate` and :mod:`.report`: ``dpsad-core evaluate`` and the run's ``evaluation.json``.

Names are imported on first use so that reading a stored evaluation (:mod:`.report`) needs no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DownstreamResult": "downstream", "downstream_accuracy": "downstream",
    "LogisticResult": "logistic", "logistic_accuracy": "logistic",
    "frechet_distance": "fidelity", "precision_recall": "fidelity", "fidelity": "fidelity",
    "memorisation": "memorisation", "nearest_records": "memorisation",
    "evaluate_run": "evaluate", "evaluate_images": "evaluate",
    "EvaluationOptions": "report", "EvaluationStage": "report", "EvaluationFinished": "report",
    "FeatureNetSpec": "report", "read_evaluation": "report", "headline": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
