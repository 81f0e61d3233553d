"""``train_with_workers``: the caller is rank 0 of N local workers and gets the engine's events (the workbench's
"all GPUs"); here 2 gloo workers on the CPU, tiny preset, demo digits."""

from __future__ import annotations

import pytest
import torch

from dpsad_core.events import RunFinished, RunStarted, StepCompleted
from dpsad_core.training import RunFolder, TrainConfig, resolve_hyperparameters, start_training
from dpsad_core.training import distributed
from dpsad_core.training.local_workers import train_with_workers

pytestmark = pytest.mark.slow


def config(privacy_seed: int | None = 7) -> TrainConfig:
    return TrainConfig(data="demo", recipe="dpdm", epsilon=10.0, preset="tiny", hyper=resolve_hyperparameters("tiny"),
                       device="cpu", privacy_seed=privacy_seed)


def test_two_local_workers_train_the_one_process_model_and_hand_back_rank_0s_events(workspace, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    events = list(train_with_workers(config(), workspace=workspace, nproc=2))
    assert isinstance(events[0], RunStarted) and any(isinstance(e, StepCompleted) for e in events)
    two = events[-1].result
    assert isinstance(events[-1], RunFinished) and two["workers"] == 2
    assert distributed.current_world().size == 1  # this process left the group
    one = list(start_training(config(), workspace=workspace))[-1].result
    assert two["mechanisms"] == one["mechanisms"] and one["workers"] == 1
    weights = [torch.load(RunFolder.open(workspace, r["run_id"]).model_path, weights_only=False)["state_dict"]
               for r in (two, one)]
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=1e-5, atol=1e-6)
    assert len(list((workspace / "runs").iterdir())) == 2  # the other worker wrote no run folder
