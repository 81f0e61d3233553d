"""Resuming a run on another kind of device than it was checkpointed on (issue 17), checked on the CPU.

A checkpoint written on a GPU is simulated: its tensors are tagged ``cuda:0`` in the file (torch then
refuses to load it on a CPU-only machine unless mapped) and its loss generator state is a CUDA
generator's (a seed and an offset, 16 bytes, where a CPU generator's is 5,056).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
import torch

from dpsad_core.errors import DeviceError
from dpsad_core.events import RunInterrupted
from dpsad_core.training import RunFolder, resume_training, start_training
from tests.training.test_engine import run_all, tiny_config

CUDA_GENERATOR_STATE_BYTES = 16  # torch's CUDA (Philox) generator state: a 64-bit seed and a 64-bit offset


@contextlib.contextmanager
def storages_tagged_as(location: str):
    """While inside, torch.save records every CPU storage as living on ``location`` (as a GPU run writes)."""
    import torch.serialization as serialization

    def tagger(storage):
        return location if storage.device.type == "cpu" else None

    entry = (0, tagger, lambda storage, where: None)  # first in the registry; loading is torch's own
    serialization._package_registry.append(entry)  # private: torch has no public way to unregister
    serialization._package_registry.sort(key=lambda item: item[0])
    try:
        yield
    finally:
        serialization._package_registry.remove(entry)


def interrupted_run(workspace, device: str) -> str:
    calls = {"n": 0}

    def stop_after_three_steps() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    config = dataclasses.replace(tiny_config("dpdm"), device=device)
    events = run_all(start_training(config, workspace=workspace, stop=stop_after_three_steps))
    assert isinstance(events[-1], RunInterrupted)
    return events[-1].run_id


def as_if_checkpointed_on_a_gpu(run: RunFolder) -> None:
    state = torch.load(run.checkpoint_path, map_location="cpu", weights_only=False)
    state["rng"]["loss"] = torch.tensor(list(range(CUDA_GENERATOR_STATE_BYTES)), dtype=torch.uint8)
    with storages_tagged_as("cuda:0"):
        torch.save(state, run.checkpoint_path)
    if not torch.cuda.is_available():  # the simulation holds: torch alone cannot read it here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(run.checkpoint_path, weights_only=False)


def test_a_gpu_checkpoint_resumes_on_the_cpu(workspace, monkeypatch):
    """``--device auto`` (the default) on a GPU machine, resumed where there is none: it continues on the CPU."""
    run_id = interrupted_run(workspace, device="auto")
    run = RunFolder.open(workspace, run_id)
    as_if_checkpointed_on_a_gpu(run)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    events = run_all(resume_training(run_id, workspace=workspace))
    result = events[-1].result
    assert run.state.value == "finished" and result["device"] == "cpu" and result["private"] is True
    assert len(run.read_metrics()) == sum(result["steps"].values())  # every step once, none lost or repeated


def test_a_run_recorded_on_cuda_names_the_way_to_continue_on_the_cpu(workspace, monkeypatch):
    run_id = interrupted_run(workspace, device="cpu")
    run = RunFolder.open(workspace, run_id)
    as_if_checkpointed_on_a_gpu(run)
    stored = run.read_json("config.json")
    stored["config"]["device"] = "cuda"  # the run was started with --device cuda on a GPU machine
    (run.path / "config.json").write_text(json.dumps(stored))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError) as refused:
        run_all(resume_training(run_id, workspace=workspace))
    message = str(refused.value)
    assert f"run {run_id} was started on 'cuda'" in message and f"--resume {run_id} --device cpu" in message
    assert "\n" not in message and run.state.value == "interrupted"
    events = run_all(resume_training(run_id, workspace=workspace, device="cpu"))
    assert run.state.value == "finished" and events[-1].result["device"] == "cpu"
    assert run.read_json("config.json")["config"]["device"] == "cuda"  # the start's settings stay as they were


@pytest.mark.parametrize(("argv", "device"), [([], None), (["--device", "cpu"], "cpu")])
def test_train_resume_hands_device_to_the_engine(workspace, monkeypatch, argv, device):
    """``train --resume RUN --device D`` continues on D; without --device, on the device the run started on."""
    from dpsad_core import cli

    seen = {}

    def resume(run_ref, *, workspace, stop, device):
        seen.update(run=run_ref, device=device)
        return iter(())

    monkeypatch.setattr("dpsad_core.training.resume_training", resume)
    monkeypatch.setattr("dpsad_core.commands.train._workers_of", lambda run_ref, workspace: 1)
    cli.main(["train", "--resume", "some-run", *argv, "--workspace", str(workspace)])
    assert seen == {"run": "some-run", "device": device}
