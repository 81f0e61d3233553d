"""DP-SGD mechanics: per-record gradients, clipping, units, noise, Poisson sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dpsad_core.privacy.randomness import SecretRandomness
from dpsad_core.training.dp_sgd import add_noise_and_average, clipped_gradient_sum, poisson_sample
from dpsad_core.training.losses import denoising_loss


class TinyNet(nn.Module):
    """Conv + GroupNorm + embedding, like the UNet's parts, small enough for exact references."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.embed = nn.Embedding(4, 4)
        self.out = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x, t, y):
        h = torch.nn.functional.silu(self.norm(self.conv(x))) + self.embed(y)[:, :, None, None]
        return self.out(h) * (1 + t.float()[:, None, None, None] / 10)


def make_records(batch: int, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, k, 1, 6, 6, generator=g)
    t = torch.randint(0, 10, (batch, k), generator=g)
    y = torch.randint(0, 4, (batch, k), generator=g)
    noise = torch.randn(batch, k, 1, 6, 6, generator=g)
    return x_t, t, y, noise


def reference_grads(model, records):
    """One record at a time with ordinary autograd."""
    grads = []
    for i in range(records[0].shape[0]):
        model.zero_grad()
        denoising_loss(model, *(r[i] for r in records)).backward()
        grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    return grads


def flat_norm(grad: dict) -> float:
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grad.values()))


def test_unclipped_sum_equals_one_record_at_a_time_reference():
    torch.manual_seed(0)
    model = TinyNet()
    records = make_records(7)
    summed, stats = clipped_gradient_sum(model, denoising_loss, records, clip_norm=1e6, microbatch_size=3)
    reference = reference_grads(model, records)
    for name, total in summed.items():
        expected = sum(r[name] for r in reference)
        torch.testing.assert_close(total, expected, rtol=1e-4, atol=1e-5)
    assert stats.clipped_fraction == 0.0
    assert stats.units == 7


def test_each_clipped_contribution_has_norm_at_most_c():
    torch.manual_seed(1)
    model = TinyNet()
    records = make_records(5, seed=3)
    reference = reference_grads(model, records)
    clip = 0.5 * min(flat_norm(r) for r in reference)
    for i in range(5):
        single = tuple(r[i:i + 1] for r in records)
        summed, stats = clipped_gradient_sum(model, denoising_loss, single, clip_norm=clip)
        assert flat_norm(summed) <= clip * (1 + 1e-5)
        assert flat_norm(summed) == pytest.approx(clip, rel=1e-4)  # it really was clipped, not zeroed
        assert stats.clipped_fraction == 1.0
    # And the batch sum is the sum of the clipped per-record gradients.
    summed, _ = clipped_gradient_sum(model, denoising_loss, records, clip_norm=clip, microbatch_size=2)
    for name, total in summed.items():
        expected = sum(r[name] * clip / flat_norm(r) for r in reference)
        torch.testing.assert_close(total, expected, rtol=1e-4, atol=1e-6)


def test_patient_units_sum_records_before_clipping():
    torch.manual_seed(2)
    model = TinyNet()
    records = make_records(6, seed=5)
    units = torch.tensor([2, 0, 2, 1, 0, 2])
    reference = reference_grads(model, records)
    clip = 0.3 * min(flat_norm(r) for r in reference)
    summed, stats = clipped_gradient_sum(model, denoising_loss, records, clip_norm=clip, units=units,
                                         microbatch_size=2)
    assert stats.units == 3
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for unit in range(3):
        members = [i for i in range(6) if int(units[i]) == unit]
        unit_grad = {n: sum(reference[i][n] for i in members) for n in expected}
        scale = min(1.0, clip / flat_norm(unit_grad))
        for n in expected:
            expected[n] += unit_grad[n] * scale
    for name, total in summed.items():
        torch.testing.assert_close(total, expected[name], rtol=1e-4, atol=1e-6)
    # A patient's contribution is bounded by C however many images the patient has.
    assert flat_norm(summed) <= 3 * clip * (1 + 1e-5)


def test_empty_batch_gives_zero_sum_and_noise_only():
    model = TinyNet()
    records = tuple(r[:0] for r in make_records(2))
    summed, stats = clipped_gradient_sum(model, denoising_loss, records, clip_norm=1.0)
    assert stats.units == 0
    assert all(float(g.abs().sum()) == 0 for g in summed.values())
    noisy = add_noise_and_average(summed, noise_multiplier=1.0, clip_norm=1.0, expected_batch_size=1.0,
                                  stream=SecretRandomness.fresh().stream("noise"))
    assert any(float(g.abs().sum()) > 0 for g in noisy.values())


def test_noise_has_the_calibrated_standard_deviation():
    sigma, clip, batch = 1.7, 0.25, 40.0
    zeros = {"w": torch.zeros(200_000)}
    noisy = add_noise_and_average(zeros, noise_multiplier=sigma, clip_norm=clip, expected_batch_size=batch,
                                  stream=SecretRandomness.from_seed(0).stream("noise"))["w"]
    expected_std = sigma * clip / batch
    # Chi-square interval for the sample std of 200k Gaussians: relative error ~ 1/sqrt(2n) = 0.0016.
    assert float(noisy.std()) == pytest.approx(expected_std, rel=0.01)
    assert abs(float(noisy.mean())) < 5 * expected_std / math.sqrt(noisy.numel())


def test_poisson_sampling_rate_and_independence():
    generator = SecretRandomness.from_seed(0).stream("sampling")
    units = torch.arange(1000)
    sizes = [poisson_sample(units, 1000, 0.05, generator).numel() for _ in range(200)]
    mean = sum(sizes) / len(sizes)
    assert mean == pytest.approx(50, abs=3)  # sd of the mean = sqrt(47.5/200) = 0.49
    assert len(set(sizes)) > 5  # batch sizes vary: not a fixed-size batch


def test_poisson_sampling_takes_whole_patients():
    generator = SecretRandomness.from_seed(1).stream("sampling")
    unit_of_record = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    for _ in range(50):
        chosen = poisson_sample(unit_of_record, 4, 0.5, generator)
        picked_units = set(unit_of_record[chosen].tolist())
        for unit in picked_units:
            assert set(torch.nonzero(unit_of_record == unit).squeeze(1).tolist()) <= set(chosen.tolist())


@pytest.mark.parametrize("adversarial_weight", [0.0, 1.0, 2.5])
def test_student_loss_terms_add_up_to_the_clipped_loss(adversarial_weight):
    # The distillation and adversarial terms are logged for the GUI's plots: they must be the two
    # parts of the loss the private update actually differentiated.
    from dpsad_core.diffusion import DiffusionSchedule
    from dpsad_core.models import Discriminator, DiscriminatorConfig, UNet, UNetConfig
    from dpsad_core.training.config import Recipe, resolve_hyperparameters
    from dpsad_core.training.planner import plan_training
    from dpsad_core.training.steps import DataTensors, distill_step, draw_batch

    torch.manual_seed(0)
    hyper = resolve_hyperparameters("tiny")
    plan = plan_training(recipe=Recipe.DPSAD_SPLIT, hyper=hyper, epsilon=8.0, delta=1e-5, private_units=200)
    phase = next(p for p in plan.phases if p.kind == "distill")
    unet = UNetConfig(image_channels=1, resolution=8, num_classes=3, channels=(8, 16))
    teacher, student = UNet(unet), UNet(unet)
    disc = Discriminator(DiscriminatorConfig(image_channels=1, num_classes=3, channels=(8, 8)))
    data = DataTensors(images=torch.rand(200, 1, 8, 8) * 2 - 1, labels=torch.randint(0, 3, (200,)),
                       unit_of_record=torch.arange(200), num_units=200, has_units=False)
    batch = draw_batch(data, sample_rate=0.2, schedule=DiffusionSchedule(50, "linear"), draws_per_record=2,
                       label_dropout=0.0, null_label=3, sampling=SecretRandomness.from_seed(1).stream("sampling"),
                       loss_generator=torch.Generator().manual_seed(2))
    metrics = distill_step(teacher=teacher, student=student, discriminator=disc,
                           student_optimizer=torch.optim.Adam(student.parameters()),
                           disc_optimizer=torch.optim.Adam(disc.parameters()), batch=batch,
                           mechanism=phase.mechanism(hyper, steps=1), expected_batch_size=phase.expected_batch_size,
                           adversarial_weight=adversarial_weight, distillation_weight=0.5, microbatch_size=16,
                           stream=SecretRandomness.from_seed(3).stream("noise"))
    total = metrics["student_distillation_loss"] + adversarial_weight * metrics["student_adversarial_loss"]
    assert metrics["student_adversarial_loss"] > 0
    assert metrics["student_loss"] == pytest.approx(total, rel=1e-4)
