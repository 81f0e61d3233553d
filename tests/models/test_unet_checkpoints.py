"""Old checkpoints keep loading: the UNet's parameter names, initialisation and outputs are pinned.

Training runs' ``model.pt``, exported bundles' reports and DP-RDM public models store UNet weights by
name. The pins below were taken from the UNet and the separate ``RetrievalUNet`` of DP-RDM as they were
before the UNet gained optional cross-attention (they hold for both the old classes and today's UNet):

- the sha256 of the sorted ``name shape`` lines of a small config's ``state_dict``;
- the output for weights filled from each parameter's *name* (a generator seeded by the name's crc32),
  so that two same-shaped layers swapped or renamed change the output, not only the key set;
- the output after ``torch.manual_seed(0)`` construction, so a run started from a seed starts from the
  same weights as before (the layers are built, and draw from the RNG, in the same order). For the
  retrieval UNet the weights are then moved in today's parameter order, which differs from the old
  class's (its ``null_token`` came first); its seeded weights were checked equal, name by name.

A change that breaks these breaks users' checkpoints: give old checkpoints a key mapping on load (as
:func:`dpsad_core.rdm.model.load_retrieval_unet` does) rather than updating the pins.
"""

from __future__ import annotations

import hashlib
import zlib

import pytest
import torch

from dpsad_core.models import UNet, UNetConfig
from dpsad_core.rdm.model import load_retrieval_unet, retrieval_unet_config
from tests.fixtures.rdm import retrieval_payload_v1

PLAIN = UNetConfig(image_channels=1, resolution=8, num_classes=2, channels=(4, 8), attention_levels=(1,))
RETRIEVAL = retrieval_unet_config(image_channels=1, resolution=8, context_dim=2, channels=(4, 8))


def _names_digest(state_dict: dict[str, torch.Tensor]) -> str:
    lines = (f"{name} {tuple(tensor.shape)}" for name, tensor in sorted(state_dict.items()))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _filled_by_name(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights that depend on each parameter's name only (not on the order or on the model's RNG)."""
    filled = {}
    for name, tensor in state_dict.items():
        generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        filled[name] = 0.1 * torch.randn(tensor.shape, generator=generator)
    return filled


def _seeded(config: UNetConfig) -> UNet:
    """``manual_seed(0)`` construction, then every weight moved (the output layers start at zero)."""
    torch.manual_seed(0)
    model = UNet(config)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(3, 1, 8, 8, generator=generator), torch.tensor([0, 250, 999]), generator


def _checksum(output: torch.Tensor) -> tuple[float, float]:
    return output.sum().item(), output.abs().sum().item()


# -- the plain class-conditional UNet ----------------------------------------------------------------------
def test_plain_unet_parameter_names_are_those_old_checkpoints_hold():
    state = UNet(PLAIN).state_dict()
    assert len(state) == 129
    assert _names_digest(state) == "9dc4ac9d037663ae9a3443b570ae871b0e89ccf6e4e6e6d51fe52fecb12706d4"
    assert PLAIN.to_dict() == {"image_channels": 1, "resolution": 8, "num_classes": 2, "channels": (4, 8),
                               "blocks_per_level": 1, "attention_levels": (1,), "dropout": 0.0}


def test_plain_unet_outputs_for_old_weights_and_for_a_seed_are_unchanged():
    x, t, _ = _inputs()
    labels = torch.tensor([0, 1, 2])  # 2: the "no label" token
    model = UNet(PLAIN).eval()
    model.load_state_dict(_filled_by_name(model.state_dict()), strict=True)
    with torch.no_grad():
        assert _checksum(model(x, t, labels)) == pytest.approx((6.315021, 10.914764), rel=1e-4)
        assert _checksum(_seeded(PLAIN)(x, t, labels)) == pytest.approx((37.199436, 60.595848), rel=1e-4)


def test_plain_unet_refuses_a_context_and_needs_labels():
    model = UNet(PLAIN).eval()
    x, t, _ = _inputs()
    with pytest.raises(ValueError, match="without cross-attention"):
        model(x, t, torch.tensor([0, 1, 2]), context=torch.zeros(3, 1, 2))
    with pytest.raises(ValueError, match="needs labels"):
        model(x, t)


# -- the retrieval UNet of DP-RDM (context, no class labels) -------------------------------------------------
def test_a_retrieval_model_saved_before_the_shared_unet_loads_with_its_old_outputs():
    x, t, generator = _inputs()
    context, null = torch.randn(3, 2, 2, generator=generator), torch.tensor([False, True, False])
    old = retrieval_payload_v1({"config": RETRIEVAL.to_dict(), "state_dict": UNet(RETRIEVAL).state_dict()})
    assert "num_classes" not in old["config"] and len(old["state_dict"]) == 173
    assert _names_digest(old["state_dict"]) == "c449bd45ec43da8cafb296f1e6fd5d3b383b7d3e5053c7f9069d4dfbad36b676"
    old["state_dict"] = _filled_by_name(old["state_dict"])
    model = load_retrieval_unet(old)  # strict: every old weight lands somewhere, nothing is left random
    with torch.no_grad():
        assert _checksum(model(x, t, context=context, null_context=null)) == pytest.approx((7.193319, 11.304291),
                                                                                            rel=1e-4)
        seeded = _seeded(RETRIEVAL)(x, t, context=context, null_context=null)
        assert _checksum(seeded) == pytest.approx((-38.911789, 53.697132), rel=1e-4)


def test_a_retrieval_model_saved_today_round_trips():
    model = _seeded(RETRIEVAL)
    loaded = load_retrieval_unet({"config": model.config.to_dict(), "state_dict": model.state_dict()})
    x, t, generator = _inputs()
    context = torch.randn(3, 1, 2, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, context=context), model(x, t, context=context), rtol=0, atol=0)
    with pytest.raises(ValueError, match="give it a context"):
        model(x, t)
    with pytest.raises(ValueError, match="without class conditioning"):
        model(x, t, torch.tensor([0, 1, 2]), context=context)
