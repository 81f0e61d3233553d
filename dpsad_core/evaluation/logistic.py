"""Downstream utility with a logistic regression on flattened pixels (the linear counterpart of the CNN).

The regularisation strength ``C`` is chosen on a held-out part of the *synthetic* data, never on the
real test set (docs/method.md §3); the chosen model is refitted on all synthetic data and then
tested once on the real test set.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dpsad_core.errors import ConfigError

C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class LogisticResult:
    test_accuracy: float          # on the real test set
    selection_accuracy: float     # on the synthetic hold-out used to choose C
    chosen_c: float
    c_grid: tuple[float, ...]
    train_records: int
    selection_scores: dict[str, float] = field(default_factory=dict)
    selection: str = "synthetic hold-out (the real test set is never used for selection)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def logistic_accuracy(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                      test_labels: np.ndarray, *, c_grid: tuple[float, ...] = C_GRID, holdout: float = 0.2,
                      max_iter: int = 200, seed: int = 0) -> LogisticResult:
    """Fit a logistic regression on ``train_*`` (images in [0, 1]) and report real test accuracy.

    Parameters
    ----------
    train_images, train_labels
        The synthetic set (N x C x H x W) and its labels.
    test_images, test_labels
        The real held-out test set, used once, after selection.
    c_grid
        Candidate inverse regularisation strengths.
    holdout
        Share of the synthetic data held out to choose ``C``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(train_images, dtype=np.float64).reshape(len(train_images), -1)
    y = np.asarray(train_labels)
    test_x = np.asarray(test_images, dtype=np.float64).reshape(len(test_images), -1)
    if len(x) < 20:
        raise ConfigError("need at least 20 training images for a logistic regression", field="count",
                          value=len(x))
    if x.shape[1] != test_x.shape[1]:
        raise ConfigError(f"synthetic and test images differ in size ({x.shape[1]} vs {test_x.shape[1]} values)",
                          field="test", remedy="resize the test set to the model's resolution and channels")
    if not c_grid or any(c <= 0 for c in c_grid):
        raise ConfigError(f"c_grid must be positive values, got {c_grid!r}", field="c_grid", value=c_grid)
    if len(np.unique(y)) < 2:
        raise ConfigError("the synthetic set has a single class: a classifier cannot be trained",
                          field="labels", remedy="sample every class")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = max(1, int(len(x) * holdout))
    val_idx, fit_idx = order[:cut], order[cut:]

    def fit(c: float, index: np.ndarray):
        model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            # A capped iteration count is a deliberate time bound; the hold-out score judges the fit.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[index], y[index])
        return model

    scores = {}
    for c in c_grid:
        scores[c] = float(fit(c, fit_idx).score(x[val_idx], y[val_idx])) if len(np.unique(y[fit_idx])) > 1 else 0.0
    # Ties go to the stronger regularisation (smaller C), which generalises no worse.
    chosen = max(c_grid, key=lambda c: (scores[c], -c))
    final = fit(chosen, np.arange(len(x)))
    test_accuracy = float(final.score(test_x, np.asarray(test_labels)))
    return LogisticResult(test_accuracy=test_accuracy, selection_accuracy=scores[chosen], chosen_c=float(chosen),
                          c_grid=tuple(float(c) for c in c_grid), train_records=len(x),
                          selection_scores={str(c): s for c, s in scores.items()})
