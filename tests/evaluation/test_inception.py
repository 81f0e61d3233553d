"""The FID Inception-v3 architecture: loads a state dict by key, yields 2048-d features, rejects bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpsad_core.errors import ConfigError
from dpsad_core.evaluation.inception import FIDInceptionV3, fid_from_weights, inception_features, load_fid_inception


def test_parameter_count_matches_torchvision_without_aux_head_and_with_1008_classes():
    # torchvision's inception_v3 has 27,161,264 parameters; minus its auxiliary head (3,326,696)
    # plus 8 more output classes (8 x 2049) gives the FID network.
    assert sum(p.numel() for p in FIDInceptionV3().parameters()) == 27_161_264 - 3_326_696 + 8 * 2049


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    # Stored the way pytorch-fid's file is: a plain dict of tensors without num_batches_tracked.
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("weights") / "pt_inception-test.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.slow
def test_a_saved_state_dict_loads_by_key_and_gives_2048_features(weights_file):
    path, state = weights_file
    model = load_fid_inception(path)
    assert torch.equal(model.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    grey = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    features = inception_features(model, grey)
    assert features.shape == (3, 2048) and np.isfinite(features).all()
    colour = np.repeat(grey, 3, axis=1)  # grey is repeated to three channels
    assert np.allclose(inception_features(model, colour), features, atol=1e-5)


@pytest.mark.slow
def test_fid_of_a_set_with_itself_is_zero(weights_file):
    path, _ = weights_file
    images = np.random.default_rng(1).random((4, 1, 8, 8), dtype=np.float32)
    assert fid_from_weights(path, images, images) == pytest.approx(0.0, abs=1e-3)


def test_wrong_files_are_clear_config_errors(tmp_path):
    wrong_keys = tmp_path / "resnet.pth"
    torch.save({"layer1.weight": torch.zeros(3)}, wrong_keys)
    with pytest.raises(ConfigError, match="not an FID Inception-v3 state dict.*missing") as caught:
        load_fid_inception(wrong_keys)
    assert "pt_inception-2015-12-05" in str(caught.value) and str(wrong_keys) in str(caught.value)
    wrong_shape = tmp_path / "shape.pth"
    state = FIDInceptionV3().state_dict()
    state["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(state, wrong_shape)
    with pytest.raises(ConfigError, match="wrong shape"):
        load_fid_inception(wrong_shape)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="not a readable PyTorch weights file"):
        load_fid_inception(garbage)
