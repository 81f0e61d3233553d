"""The dpsad recipe: a DP teacher, then a few-step student distilled from it as free post-processing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dpsad_core.diffusion import DiffusionSchedule
from dpsad_core.diffusion.samplers import ddim_update
from dpsad_core.errors import ConfigError
from dpsad_core.events import PhaseStarted, RunFinished, StepCompleted
from dpsad_core.runs import RunResult
from dpsad_core.training import Recipe, TrainConfig, plan_training, resolve_hyperparameters, start_training
from dpsad_core.training.few_step import (
    _landing_x0,
    diffused_states,
    segment_targets,
    student_timesteps,
    teacher_trajectories,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny_dpsad(data: str = "demo", **overrides) -> TrainConfig:
    return TrainConfig(data=data, recipe=Recipe.DPSAD, epsilon=8.0, delta=1e-5, preset="tiny",
                       hyper=resolve_hyperparameters("tiny", overrides), device="cpu", min_records=10)


def run_all(events):
    return list(events)


def test_the_student_times_end_with_a_step_straight_to_the_image():
    assert student_timesteps(500, 4) == [499, 374, 250, 125]
    assert student_timesteps(500, 1) == [499]


def test_the_target_is_the_image_whose_ddim_step_lands_on_the_teacher_state():
    schedule = DiffusionSchedule(500)
    abar = schedule.alphas_cumprod.float()
    generator = torch.Generator().manual_seed(0)
    image = 0.9 * torch.tanh(torch.randn((3, 1, 4, 4), generator=generator))
    eps = torch.randn((3, 1, 4, 4), generator=generator)
    x = abar[374].sqrt() * image + (1 - abar[374]).sqrt() * eps
    landing, _ = ddim_update(x, eps, abar[374], abar[250])  # where the teacher's step went
    assert torch.allclose(_landing_x0(x, landing, abar[374], abar[250]), image, atol=1e-4)
    assert torch.equal(_landing_x0(x, landing, abar[125], None), landing)  # the last step lands on x_0


def _tiny_teacher():
    from dpsad_core.models import UNet, UNetConfig

    torch.manual_seed(0)
    teacher = UNet(UNetConfig(image_channels=1, resolution=8, num_classes=3, channels=(8, 16))).eval()
    with torch.no_grad():
        teacher.out_conv.weight.normal_(0, 0.1)  # zero at initialisation: the teacher would predict no noise
    return teacher


def test_the_teachers_steps_over_a_segment_give_the_pools_own_targets():
    """segment_targets, run on the pool's states, is the pool's targets: the diffused states share its rule."""
    teacher, schedule = _tiny_teacher(), DiffusionSchedule(100)
    times = student_timesteps(100, 4)
    pool = teacher_trajectories(teacher, schedule, torch.tensor([0, 1, 2, 0, 1, 2]), image_shape=(1, 8, 8),
                                teacher_steps=10, timesteps=times, generator=torch.Generator().manual_seed(1))
    rows = torch.arange(6).repeat_interleave(4)
    segment = torch.arange(4).repeat(6)
    targets = segment_targets(teacher, schedule, pool.states[rows, segment], segment, pool.labels[rows],
                              timesteps=times, teacher_steps=10)
    torch.testing.assert_close(targets, pool.targets[rows, segment], atol=1e-5, rtol=1e-4)


def test_diffused_states_are_fresh_noisy_teacher_images_at_the_student_times():
    teacher, schedule = _tiny_teacher(), DiffusionSchedule(100)
    times = student_timesteps(100, 2)
    pool = teacher_trajectories(teacher, schedule, torch.tensor([0, 1, 2]), image_shape=(1, 8, 8), teacher_steps=10,
                                timesteps=times, generator=torch.Generator().manual_seed(1))
    rows, segment = torch.tensor([0, 0, 1]), torch.tensor([1, 1, 0])
    draw = torch.Generator().manual_seed(2)
    states, targets = diffused_states(teacher, schedule, pool, rows, segment, teacher_steps=10, generator=draw,
                                      device="cpu")
    assert not torch.equal(states[0], states[1])  # the same image and time, fresh noise
    abar = schedule.alphas_cumprod[times[1]]
    noise = (states[0] - abar.sqrt() * pool.targets[0, -1]) / (1 - abar).sqrt()
    assert abs(float(noise.std()) - 1.0) < 0.3  # what is left is unit Gaussian noise
    torch.testing.assert_close(targets, segment_targets(teacher, schedule, states, segment, pool.labels[rows],
                                                        timesteps=times, teacher_steps=10))


def test_the_plan_spends_the_whole_budget_on_the_teacher_and_nothing_on_the_student():
    hyper = resolve_hyperparameters("quick")
    dpsad = plan_training(recipe=Recipe.DPSAD, hyper=hyper, epsilon=4.0, delta=1e-5, private_units=60_000)
    dpdm = plan_training(recipe=Recipe.DPDM, hyper=hyper, epsilon=4.0, delta=1e-5, private_units=60_000)
    assert [(p.name, p.privacy, p.data) for p in dpsad.phases] == [
        ("teacher", "dp", "private"), ("student", "postprocess", "teacher")]
    assert dpsad.phases[0].noise_multiplier == dpdm.phases[0].noise_multiplier
    assert [m.part for m in dpsad.mechanisms(hyper)] == ["teacher"]
    assert dpsad.planned_epsilon == dpdm.planned_epsilon and dpsad.is_private
    with_public = plan_training(recipe=Recipe.DPSAD, hyper=hyper, epsilon=4.0, delta=1e-5, private_units=60_000,
                                public_records=10_000)
    assert [(p.name, p.privacy, p.model) for p in with_public.phases] == [
        ("pretrain", "public", "teacher"), ("teacher", "dp", "teacher"), ("student", "postprocess", "student")]


def test_a_config_of_an_older_run_reads_dpsad_as_the_split_recipe():
    stored = tiny_dpsad().to_dict()
    assert TrainConfig.from_dict(stored).recipe is Recipe.DPSAD
    older = {key: value for key, value in stored.items() if key != "format"}
    assert TrainConfig.from_dict(older).recipe is Recipe.DPSAD_SPLIT


def test_a_dpsad_run_trains_the_teacher_privately_then_the_student_for_free(workspace):
    events = run_all(start_training(tiny_dpsad(), workspace=workspace))
    phases = [(e.phase, e.privacy) for e in events if isinstance(e, PhaseStarted)]
    assert phases == [("teacher", "dp"), ("student", "postprocess")]
    student_steps = [e for e in events if isinstance(e, StepCompleted) and e.phase == "student"]
    assert len(student_steps) == 4 and "student_distillation_loss" in student_steps[-1].losses
    teacher_epsilon = [e.epsilon_spent for e in events if isinstance(e, StepCompleted) and e.phase == "teacher"][-1]
    # Post-processing: the student's steps spend nothing.
    assert all(e.epsilon_spent == teacher_epsilon for e in student_steps)
    result = events[-1].result
    assert isinstance(events[-1], RunFinished) and result["private"]
    assert [m["part"] for m in result["mechanisms"]] == ["teacher"]
    assert result["student"]["sample_steps"] == 4
    written = json.loads((Path(result["run_dir"]) / "result.json").read_text())
    assert RunResult.from_dict(written).to_dict() == written == result


def test_a_student_trained_on_diffused_states_asks_the_teacher_and_spends_nothing(workspace, monkeypatch):
    import dpsad_core.training.few_step as few_step

    calls = []
    real = few_step.diffused_states
    monkeypatch.setattr(few_step, "diffused_states", lambda *a, **k: calls.append(1) or real(*a, **k))
    events = run_all(start_training(tiny_dpsad(distill_states="diffused", distill_adversarial_weight=0.1),
                                    workspace=workspace))
    assert len(calls) == 4  # every student step drew fresh states
    result = events[-1].result
    assert [m["part"] for m in result["mechanisms"]] == ["teacher"]
    losses = [e.losses for e in events if isinstance(e, StepCompleted) and e.phase == "student"]
    assert "disc_loss" in losses[-1]  # the adversarial term still trains the discriminator when asked


def test_the_states_setting_is_checked():
    with pytest.raises(ConfigError, match="distill_states"):
        resolve_hyperparameters("tiny", {"distill_states": "pool"})


def test_the_student_is_the_same_on_neighbouring_datasets_given_the_same_teacher(workspace, monkeypatch, tmp_path):
    """The student phase computes from the released teacher and public randomness only.

    Two runs on neighbouring datasets (one record changed) are given the same teacher at the start of
    the student phase: everything the phase produces must then be identical, and the private tensors
    must be out of its reach.
    """
    import numpy as np

    from dpsad_core.data import resolve_data_source
    from dpsad_core.training import engine

    demo = resolve_data_source("demo", workspace=workspace)
    changed = demo.images.copy()
    changed[0] = 1.0 - changed[0]
    paths = []
    for name, images in (("d", demo.images), ("d_prime", changed)):
        path = tmp_path / f"{name}.npz"
        np.savez(path, train_images=(images[:, 0] * 255).round().astype(np.uint8), train_labels=demo.labels)
        paths.append(path)
    fixed_teacher: dict = {}
    seen_private: list = []
    original = engine._Trainer._begin_few_step

    def with_fixed_teacher(self):
        seen_private.append((self.private_data, self.public_data))
        if not fixed_teacher:
            fixed_teacher.update(self.emas["teacher"].model.state_dict())
        self.emas["teacher"].model.load_state_dict(fixed_teacher)
        original(self)

    monkeypatch.setattr(engine._Trainer, "_begin_few_step", with_fixed_teacher)
    students = []
    for path in paths:
        config = tiny_dpsad(str(path), **{"distill_steps": 6})
        result = run_all(start_training(config, workspace=workspace))[-1].result
        students.append(torch.load(result["model_path"], weights_only=False)["state_dict"])
    assert seen_private == [(None, None), (None, None)]
    assert students[0].keys() == students[1].keys()
    assert all(torch.equal(students[0][key], students[1][key]) for key in students[0])


def test_a_run_stopped_in_the_student_phase_resumes_to_the_same_student(workspace):
    from dpsad_core.training import resume_training

    config = tiny_dpsad(**{"distill_steps": 6})
    config = TrainConfig.from_dict(dict(config.to_dict(), privacy_seed=7))  # the same teacher in both runs
    straight = run_all(start_training(config, workspace=workspace))[-1].result
    seen = []

    def stop_in_student_phase() -> bool:
        return seen.count("student") >= 3

    events = []
    for event in start_training(config, workspace=workspace, stop=stop_in_student_phase):
        events.append(event)
        if isinstance(event, StepCompleted):
            seen.append(event.phase)
    run_id = events[0].run_id
    resumed = run_all(resume_training(run_id, workspace=workspace))[-1].result
    first = torch.load(straight["model_path"], weights_only=False)["state_dict"]
    second = torch.load(resumed["model_path"], weights_only=False)["state_dict"]
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_sampling_uses_the_student_and_keeps_the_teacher_available(workspace):
    from dpsad_core.sampling import generate, load_released_model, sampler_times

    result = run_all(start_training(tiny_dpsad(), workspace=workspace))[-1].result

    student, schedule, meta = load_released_model(Path(result["model_path"]))
    assert meta["generator"] == "few-step student" and meta["timesteps"] == [99, 74, 50, 25]
    assert sampler_times(meta, None) == (4, [99, 74, 50, 25])
    with pytest.raises(ConfigError, match="exactly 4 steps"):
        sampler_times(meta, 10)
    with pytest.raises(ConfigError, match="ddim only"):
        sampler_times(meta, None, "ddpm")
    teacher, _, teacher_meta = load_released_model(Path(result["model_path"]), generator="teacher")
    assert teacher_meta["generator"] == "teacher" and "timesteps" not in teacher_meta
    assert sampler_times(teacher_meta, None) == (5, None)
    calls = []
    student.register_forward_hook(lambda *args: calls.append(1))
    images = generate(student, schedule, labels=torch.arange(3), image_shape=(1, 8, 8), timesteps=meta["timesteps"])
    assert images.shape == (3, 1, 8, 8) and len(calls) == 4  # 4 network evaluations per image


@pytest.mark.slow
def test_two_workers_sample_the_one_process_images_from_a_student(workspace, tmp_path):
    import os
    import subprocess
    import sys

    import numpy as np

    result = run_all(start_training(tiny_dpsad(), workspace=workspace))[-1].result
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    images = []
    for nproc in (1, 2):
        npz = tmp_path / f"{nproc}.npz"
        done = subprocess.run([sys.executable, "-m", "dpsad_core", "sample", result["run_id"], "--per-class", "30",
                               "--npz", str(npz), "--out", str(tmp_path / f"{nproc}.png"), "--workspace",
                               str(workspace), "--device", "cpu", "--nproc", str(nproc)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        with np.load(npz) as data:
            images.append(data["images"])
    assert images[0].shape[0] == 300 and np.array_equal(images[0], images[1])
