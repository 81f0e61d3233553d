"""``sampling.generate`` draws each image's randomness from its index and the public seed only.

So an image is the same whatever the split of the work (chunks of an export, workers of --nproc N).
"""

from __future__ import annotations

import pytest
import torch

from dpsad_core.diffusion import DiffusionSchedule
from dpsad_core.models import UNet, UNetConfig
from dpsad_core.sampling import SAMPLING_BLOCK, ImageNoise, SamplingRequest, generate

SHAPE = (1, 4, 4)


def test_an_images_noise_depends_on_its_index_and_the_seed_not_on_the_range_asked():
    count = 2 * SAMPLING_BLOCK + 7
    whole = ImageNoise(5, 0, count, SHAPE, "cpu")()
    assert whole.shape == (count, *SHAPE)
    for first, size in ((0, 1), (3, 40), (SAMPLING_BLOCK - 2, 5), (SAMPLING_BLOCK, SAMPLING_BLOCK + 7)):
        assert torch.equal(ImageNoise(5, first, size, SHAPE, "cpu")(), whole[first:first + size])
    assert not torch.equal(ImageNoise(6, 0, count, SHAPE, "cpu")(), whole)
    # Blocks differ from one another (no block repeats the first one's stream).
    assert not torch.equal(whole[:7], whole[SAMPLING_BLOCK:SAMPLING_BLOCK + 7])


def test_later_draws_continue_each_images_own_stream():
    both = ImageNoise(1, 0, 10, SHAPE, "cpu")
    first, second = both(), both()
    part = ImageNoise(1, 4, 3, SHAPE, "cpu")
    assert torch.equal(part(), first[4:7]) and torch.equal(part(), second[4:7])


def test_spans_end_on_global_block_boundaries():
    def spans(first, count):
        return SamplingRequest(labels=torch.zeros(count), image_shape=SHAPE, sampler="ddim", steps=2, guidance=0.0,
                               seed=0, first_index=first).spans()

    block = SAMPLING_BLOCK
    assert spans(0, 5) == [(0, 5)]
    assert spans(0, block + 1) == [(0, block), (block, block + 1)]
    assert spans(block - 2, 4) == [(0, 2), (2, 4)]
    assert spans(2 * block, block) == [(0, block)]


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_generated_images_do_not_depend_on_how_the_calls_split_the_blocks(sampler):
    torch.manual_seed(0)
    model = UNet(UNetConfig(image_channels=1, resolution=4, num_classes=3, channels=(4, 8))).eval()
    with torch.no_grad():  # a model whose output is not ~0, so the pixels carry the noise
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    schedule = DiffusionSchedule(20, "linear")
    count = 2 * SAMPLING_BLOCK + 3
    labels = torch.arange(count) % 3
    options = dict(image_shape=SHAPE, sampler=sampler, steps=4, seed=9)
    whole = generate(model, schedule, labels=labels, **options)
    split = torch.cat([generate(model, schedule, labels=labels[a:b], first_index=a, **options)
                       for a, b in ((0, SAMPLING_BLOCK), (SAMPLING_BLOCK, count))])
    assert torch.equal(whole, split)
    assert not torch.equal(whole, generate(model, schedule, labels=labels, **dict(options, seed=10)))
