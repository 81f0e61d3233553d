"""On CUDA, a DP step keeps every tensor on the model's GPU: clipping, the all-worker sum, the secret noise,
the update and the optimiser state (run by bench/gpu_check.sh; skipped without CUDA).

Every tensor an operator produces during the step is recorded (a dispatch mode): all of them must be on
the GPU, except 0-dimensional ones (the optimiser's step counter lives on the CPU by torch's design).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from dpsad_core.diffusion import DiffusionSchedule
from dpsad_core.models import Discriminator, DiscriminatorConfig, UNet, UNetConfig
from dpsad_core.privacy import Mechanism
from dpsad_core.privacy.randomness import SecretRandomness
from dpsad_core.training.dp_sgd import add_noise_and_average
from dpsad_core.training.steps import DataTensors, denoise_step, distill_step, draw_batch

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA = torch.device("cuda")


class DeviceRecorder(TorchDispatchMode):
    """Remembers (operator, device) of every tensor an operator returns while active."""

    def __init__(self) -> None:
        super().__init__()
        self.off_gpu: list[str] = []
        self.on_gpu = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                if leaf.device.type == "cuda":
                    self.on_gpu += 1
                elif leaf.dim() > 0:
                    self.off_gpu.append(f"{func} -> {leaf.device} {tuple(leaf.shape)}")
        return out


def setting(draws_per_record: int = 2):
    config = UNetConfig(image_channels=1, resolution=8, num_classes=3, channels=(8, 16))
    schedule = DiffusionSchedule(100, "linear")
    records = 64
    data = DataTensors(images=torch.rand(records, 1, 8, 8, device=CUDA) * 2 - 1,
                       labels=(torch.arange(records) % 3).to(CUDA), unit_of_record=torch.arange(records),
                       num_units=records, has_units=False)
    randomness = SecretRandomness.from_seed(1)
    batch = draw_batch(data, sample_rate=0.5, schedule=schedule, draws_per_record=draws_per_record, label_dropout=0.1,
                       null_label=3, sampling=randomness.stream("sampling"),
                       loss_generator=torch.Generator(device=CUDA).manual_seed(0))
    return config, batch, randomness


def test_a_drawn_batch_is_on_the_gpu():
    _, batch, _ = setting()
    assert batch.size > 0
    for tensor in (batch.x_t, batch.t, batch.labels, batch.noise):
        assert tensor.device.type == "cuda"


def test_the_secret_noise_lands_on_the_parameters_gpu_in_their_dtype():
    stream = SecretRandomness.from_seed(2).stream("noise")
    parameter = torch.zeros(5, 7, device=CUDA, dtype=torch.float32)
    noise = stream.noise_like(parameter, 1.5)
    assert noise.device == parameter.device and noise.dtype == torch.float32 and noise.std() > 0
    released = add_noise_and_average({"w": parameter}, noise_multiplier=1.0, clip_norm=1.0, expected_batch_size=4.0,
                                      stream=stream)
    assert released["w"].device == parameter.device


def test_every_tensor_of_a_dp_denoiser_step_stays_on_the_gpu():
    config, batch, randomness = setting()
    model = UNet(config).to(CUDA)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mechanism = Mechanism(part="dpdm", noise_multiplier=1.0, sample_rate=0.5, steps=1, clip_norm=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    recorder = DeviceRecorder()
    with recorder:
        metrics = denoise_step(model, optimizer, batch, mechanism=mechanism, expected_batch_size=32.0,
                               microbatch_size=16, stream=randomness.stream("noise"))
    assert recorder.off_gpu == [], recorder.off_gpu[:10]
    assert recorder.on_gpu > 100
    assert metrics["batch"] == batch.size
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))  # the update happened
    for state in optimizer.state.values():
        assert all(v.device.type == "cuda" for v in state.values() if torch.is_tensor(v) and v.dim() > 0)


def test_every_tensor_of_a_dp_student_and_discriminator_step_stays_on_the_gpu():
    config, batch, randomness = setting()
    teacher, student = UNet(config).to(CUDA), UNet(config).to(CUDA)
    discriminator = Discriminator(DiscriminatorConfig(image_channels=1, num_classes=3, channels=(8, 8))).to(CUDA)
    joint = Mechanism(part="student+discriminator", noise_multiplier=0.7, sample_rate=0.5, steps=1,
                      components=({"part": "student", "noise_multiplier": 1.0, "clip_norm": 0.1},
                                  {"part": "discriminator", "noise_multiplier": 1.0, "clip_norm": 0.1}))
    recorder = DeviceRecorder()
    with recorder:
        distill_step(teacher=teacher, student=student, discriminator=discriminator,
                     student_optimizer=torch.optim.Adam(student.parameters(), 1e-3),
                     disc_optimizer=torch.optim.Adam(discriminator.parameters(), 1e-3), batch=batch, mechanism=joint,
                     expected_batch_size=32.0, adversarial_weight=1.0, distillation_weight=1.0, microbatch_size=16,
                     stream=randomness.stream("noise"))
    assert recorder.off_gpu == [], recorder.off_gpu[:10]
    assert recorder.on_gpu > 100
