"""Time estimates: a measured step of the plan's own model and batch, cached per machine and model."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    import torch

    from dpsad_core.training import resolve_hyperparameters

    torch.set_num_threads(1)
    monkeypatch.setenv("DPSAD_CACHE_DIR", str(tmp_path / "cache"))
    return resolve_hyperparameters("tiny")


def test_a_step_is_measured_once_per_machine_and_model(tiny, monkeypatch):
    from dpsad_core.training import estimate

    shape = {"channels": 1, "resolution": 8, "num_classes": 10, "device": "cpu"}
    seconds, cached = estimate.denoise_step_seconds(tiny, batch=16, **shape)
    assert seconds > 0 and not cached

    def refuse(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(estimate, "measure_denoise_step", refuse)
    assert estimate.denoise_step_seconds(tiny, batch=16, **shape) == (seconds, True)
    with pytest.raises(AssertionError, match="measured again"):  # another batch is another measurement
        estimate.denoise_step_seconds(tiny, batch=32, **shape)
    monkeypatch.setattr(estimate, "machine_key", lambda device: "another machine")
    with pytest.raises(AssertionError, match="measured again"):
        estimate.denoise_step_seconds(tiny, batch=16, **shape)


def test_the_plan_estimate_counts_each_phases_steps_at_its_cost(tiny, monkeypatch):
    from dpsad_core.training import estimate
    from dpsad_core.training.engine import DISTILL_COST_RATIO

    monkeypatch.setattr(estimate, "measure_denoise_step", lambda hyper, **kwargs: 0.5)
    phases = [{"name": "teacher", "kind": "denoise", "steps": 400, "expected_batch_size": 16.0},
              {"name": "student", "kind": "distill", "steps": 400, "expected_batch_size": 32.0}]
    result = estimate.estimate_plan_seconds({"phases": phases}, {"teacher": 10, "student": 4}, tiny, channels=1,
                                            resolution=8, num_classes=10, device="cpu")
    assert result["seconds"] == pytest.approx(10 * 0.5 + 4 * 0.5 * DISTILL_COST_RATIO)
    assert result["phases"] == pytest.approx({"teacher": 10 * 0.5, "student": 4 * 0.5 * DISTILL_COST_RATIO})
    assert "batch of 16, measured on this machine's cpu (measured just now)" in result["basis"]
