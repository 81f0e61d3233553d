"""``train_with_workers``: the caller is rank 0 of N local workers and gets the engine's events (the workbench's
"all GPUs"); here 2 gloo workers on the CPU, tiny preset, demo digits."""

from __future__ import annotations

import pytest
import torch

from dpsad_core import distributed
from dpsad_core.errors import DeviceError
from dpsad_core.events import RunFinished, RunStarted, StepCompleted
from dpsad_core.training import RunFolder, TrainConfig, resolve_hyperparameters, start_training
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


def test_a_two_worker_run_stopped_by_its_caller_resumes_with_two_workers(workspace, monkeypatch):
    pytest.importorskip("PySide6", reason="the workbench (its resume job) is not installed")
    from dpsad_core.events import RunInterrupted
    from dpsad_workbench.core import resume_job

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    steps = []

    def stop() -> bool:
        return len(steps) >= 2

    events = []
    for event in train_with_workers(config(), workspace=workspace, nproc=2, stop=stop):
        events.append(event)
        if isinstance(event, StepCompleted):
            steps.append(event)
    assert isinstance(events[-1], RunInterrupted)
    run_id = events[-1].run_id
    # As if it had been started on a GPU this machine lacks: the stored device is refused in one line, and the
    # workbench's Settings device (here the CPU) continues it, as train --resume --device does.
    folder = RunFolder.open(workspace, run_id)
    stored = folder.read_json("config.json")
    stored["config"]["device"] = "cuda"
    folder.write_json("config.json", stored)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="--device cpu"):
            list(resume_job(stop=lambda: False, run_id=run_id, workspace=workspace))
    # The workbench resumes it as it was started: two workers (config.json says so).
    resumed = list(resume_job(stop=lambda: False, run_id=run_id, workspace=workspace, device="cpu"))
    assert isinstance(resumed[-1], RunFinished) and resumed[-1].result["workers"] == 2
    one = list(start_training(config(), workspace=workspace))[-1].result
    assert resumed[-1].result["mechanisms"] == one["mechanisms"]
    a, b = (torch.load(RunFolder.open(workspace, r).model_path, weights_only=False)["state_dict"]
            for r in (run_id, one["run_id"]))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
