"""On CUDA: a tiny run trained on the GPU, sampled there (``generate``), and exported with ``--device cuda``
(run by bench/gpu_check.sh; skipped without CUDA)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dpsad_core.cli import main
from dpsad_core.events import RunFinished
from dpsad_core.sampling import generate, load_released_model
from dpsad_core.training import RunFolder, TrainConfig, resolve_hyperparameters, start_training

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny dpdm run on the demo digits, trained on the GPU: (workspace, result)."""
    workspace = tmp_path_factory.mktemp("ws")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DPSAD_CONFIG_DIR", str(tmp_path_factory.mktemp("cfg")))
        patch.setenv("DPSAD_WORKSPACE", str(workspace))
        config = TrainConfig(data="demo", recipe="dpdm", epsilon=10.0, preset="tiny",
                             hyper=resolve_hyperparameters("tiny"), max_steps=2, device="cuda")
        events = list(start_training(config, workspace=workspace))
    finished = [event for event in events if isinstance(event, RunFinished)]
    assert finished, "the tiny GPU run did not finish"
    return workspace, finished[0].result


def test_a_run_trains_on_the_gpu_and_says_so(gpu_run):
    _, result = gpu_run
    assert result["device"].startswith("cuda")
    assert result["private"] and result["epsilon"] > 0


def test_generate_samples_on_the_gpu_reproducibly(gpu_run):
    workspace, result = gpu_run
    model, schedule, _ = load_released_model(RunFolder.open(workspace, result["run_id"]).model_path, "cuda")
    assert all(p.device.type == "cuda" for p in model.parameters())
    labels = torch.arange(10).repeat_interleave(3)
    shape = (model.config.image_channels, model.config.resolution, model.config.resolution)
    first = generate(model, schedule, labels=labels, image_shape=shape, steps=5, seed=3, device="cuda")
    again = generate(model, schedule, labels=labels, image_shape=shape, steps=5, seed=3, device="cuda")
    assert first.shape == (30, *shape) and first.device.type == "cpu"  # handed back on the CPU
    assert torch.isfinite(first).all() and first.min() >= -1 and first.max() <= 1
    assert torch.equal(first, again)
    ddpm = generate(model, schedule, labels=labels[:4], image_shape=shape, sampler="ddpm", seed=3, device="cuda")
    assert ddpm.shape == (4, *shape) and torch.isfinite(ddpm).all()


def test_the_gpu_samples_the_cpu_images_from_the_same_noise(gpu_run):
    # The start noise is drawn on the CPU from (seed, block) and moved: only float rounding differs (cuDNN may
    # use TF32), while other noise would move pixels by about 1.
    workspace, result = gpu_run
    path = RunFolder.open(workspace, result["run_id"]).model_path
    labels = torch.arange(10).repeat_interleave(2)
    images = {}
    for device in ("cpu", "cuda"):
        model, schedule, _ = load_released_model(path, device)
        shape = (model.config.image_channels, model.config.resolution, model.config.resolution)
        images[device] = generate(model, schedule, labels=labels, image_shape=shape, steps=5, seed=8, device=device)
    assert (images["cpu"] - images["cuda"]).abs().max() < 0.05


def test_export_with_device_cuda_writes_a_bundle_that_verifies(gpu_run, tmp_path, capsys):
    workspace, result = gpu_run
    out = tmp_path / "bundle"
    code = main(["export", result["run_id"], "--per-class", "2", "--out", str(out), "--workspace", str(workspace),
                 "--device", "cuda", "--npz", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["images"] == 20
    with np.load(out / "samples.npz") as data:
        assert data["images"].shape[0] == 20
    assert main(["verify", str(out)]) == 0
