"""Networks, schedules and samplers: one contract over every sampler, shapes over every resolution."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, vmap

from dpsad_core.diffusion import DiffusionSchedule, ddim_sample, ddpm_sample, sample
from dpsad_core.errors import ConfigError
from dpsad_core.models import EMA, Discriminator, DiscriminatorConfig, UNet, UNetConfig


@pytest.mark.parametrize(("resolution", "channels", "attention"), [(8, (8, 16), ()), (16, (8, 16, 16), (2,)),
                                                                   (28, (8, 16), (1,)), (32, (8, 8, 16), ())])
def test_unet_shapes_at_every_resolution(resolution, channels, attention):
    model = UNet(UNetConfig(image_channels=3, resolution=resolution, num_classes=4, channels=channels,
                            attention_levels=attention))
    x = torch.randn(2, 3, resolution, resolution)
    out = model(x, torch.tensor([0, 99]), torch.tensor([1, 4]))  # 4 = the "no label" token
    assert out.shape == x.shape


@torch.no_grad()
def test_unet_output_layer_starts_at_zero():
    """Zero-initialised output (DDPM practice): an untrained model predicts eps = 0."""
    model = UNet(UNetConfig(image_channels=1, resolution=8, num_classes=3, channels=(8, 8)))
    x = torch.randn(4, 1, 8, 8)
    assert float(model(x, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)).abs().max()) == 0.0


def test_bad_unet_config_is_rejected():
    with pytest.raises(ConfigError, match="divisible"):
        UNetConfig(image_channels=1, resolution=28, num_classes=10, channels=(8, 16, 32, 64))
    with pytest.raises(ConfigError):
        UNetConfig(image_channels=2, resolution=8, num_classes=10)


def test_per_record_gradients_work_through_unet_and_discriminator():
    """vmap(grad) must support every layer (GroupNorm, attention, embeddings)."""
    unet = UNet(UNetConfig(image_channels=1, resolution=8, num_classes=3, channels=(8, 8), attention_levels=(1,)))
    params = {k: v.detach() for k, v in unet.named_parameters()}

    def loss(p, x, t, y):
        return functional_call(unet, p, (x[None], t[None], y[None])).pow(2).mean() + 0 * x.sum()

    grads = vmap(grad(loss), in_dims=(None, 0, 0, 0))(params, torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 3]),
                                                      torch.tensor([0, 1, 2]))
    assert all(g.shape[0] == 3 for g in grads.values())
    disc = Discriminator(DiscriminatorConfig(image_channels=1, num_classes=3, channels=(8, 8)))
    assert disc(torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8), torch.arange(5), torch.zeros(5, dtype=torch.long)
                ).shape == (5,)


def test_schedules_are_monotone_and_q_sample_has_the_right_moments():
    for kind in ("linear", "cosine"):
        schedule = DiffusionSchedule(500, kind)
        abar = schedule.alphas_cumprod
        assert (abar[1:] < abar[:-1]).all() and 0 < float(abar[-1]) < 0.01 and float(abar[0]) > 0.99
    schedule = DiffusionSchedule(100)
    x0 = torch.full((20000, 1, 1, 1), 0.5)
    t = torch.full((20000,), 50)
    x_t = schedule.q_sample(x0, t, torch.randn_like(x0))
    abar = float(schedule.alphas_cumprod[50])
    assert float(x_t.mean()) == pytest.approx(0.5 * abar ** 0.5, abs=0.02)
    assert float(x_t.std()) == pytest.approx((1 - abar) ** 0.5, abs=0.02)


def oracle_for_point(schedule: DiffusionSchedule, target: torch.Tensor):
    """The exact noise predictor when the data distribution is the single point ``target``."""

    def model(x, t, y):
        signal, sigma = schedule.coefficients(t, x)
        return (x - signal * target) / sigma

    return model


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_every_sampler_recovers_a_point_mass(sampler):
    schedule = DiffusionSchedule(200)
    target = torch.linspace(-0.8, 0.8, 16).reshape(1, 1, 4, 4)
    labels = torch.zeros(3, dtype=torch.long)
    out = sample(oracle_for_point(schedule, target), schedule, labels, shape=(1, 4, 4), sampler=sampler, steps=20,
                 generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 4, 4)
    torch.testing.assert_close(out, target.expand(3, -1, -1, -1), atol=0.02, rtol=0)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samplers_are_seeded_and_bounded(sampler):
    schedule = DiffusionSchedule(50)
    model = UNet(UNetConfig(image_channels=1, resolution=8, num_classes=2, channels=(8, 8)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    labels = torch.tensor([0, 1])
    a = sample(model, schedule, labels, shape=(1, 8, 8), sampler=sampler, steps=5,
               generator=torch.Generator().manual_seed(3))
    b = sample(model, schedule, labels, shape=(1, 8, 8), sampler=sampler, steps=5,
               generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert float(a.abs().max()) <= 1.0


def test_guidance_is_a_no_op_when_the_model_ignores_labels():
    schedule = DiffusionSchedule(100)
    target = torch.full((1, 1, 2, 2), 0.3)
    model = oracle_for_point(schedule, target)
    labels = torch.tensor([0, 1])
    plain = ddim_sample(model, schedule, labels, shape=(1, 2, 2), steps=10, generator=torch.Generator().manual_seed(0))
    guided = ddim_sample(model, schedule, labels, shape=(1, 2, 2), steps=10, guidance=2.0, null_label=2,
                         generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain, guided)


def test_sampler_arguments_are_checked():
    schedule = DiffusionSchedule(10)
    model = oracle_for_point(schedule, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ConfigError):
        ddim_sample(model, schedule, torch.zeros(1, dtype=torch.long), shape=(1, 2, 2), steps=11)
    with pytest.raises(ConfigError):
        sample(model, schedule, torch.zeros(1, dtype=torch.long), shape=(1, 2, 2), sampler="euler")
    assert ddpm_sample(model, schedule, torch.zeros(1, dtype=torch.long), shape=(1, 2, 2)).shape == (1, 1, 2, 2)


def test_power_ema_averages_a_fixed_fraction_of_the_run():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(model, decay=0.99999, power=0.0)  # power 0: the plain running mean of all iterates
    values = [float(v) for v in range(1, 101)]
    for value in values:
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model)
    assert float(ema.model.weight) == pytest.approx(sum(values) / len(values), rel=1e-4)
    restored = EMA(model)
    restored.load_state_dict(ema.state_dict())
    assert float(restored.model.weight) == float(ema.model.weight) and restored.num_updates == 100
