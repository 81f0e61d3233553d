"""DP-RDM's public side: the model's conditioning, the encoder, neighbours, the index and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dpsad_core.cli import main
from dpsad_core.data import resolve_data_source
from dpsad_core.errors import ConfigError
from dpsad_core.models import UNet
from dpsad_core.rdm.model import ContextTable, retrieval_unet_config
from dpsad_core.rdm.training import nearest_public_neighbours
from tests.fixtures.rdm import MODEL, retrieval_payload_v1


def _model() -> UNet:
    torch.manual_seed(0)
    model = UNet(retrieval_unet_config(image_channels=1, resolution=8, context_dim=4, channels=(8, 16)))
    for parameter in model.parameters():  # the output layers start at zero: perturb them all
        parameter.data.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def test_the_context_set_steers_the_output_and_null_ignores_it():
    model = _model()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 10])
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert model(x, t, context=a).shape == (2, 1, 8, 8)
    assert not torch.allclose(model(x, t, context=a), model(x, t, context=b))
    null = torch.tensor([True, True])
    torch.testing.assert_close(model(x, t, context=a, null_context=null), model(x, t, context=b, null_context=null))
    with pytest.raises(ConfigError, match="context must have shape"):
        model(x, t, context=torch.randn(2, 4))


def test_context_table_maps_labels_to_contexts_and_the_null_label():
    model = _model()
    contexts = torch.randn(2, 1, 4)
    table = ContextTable(model, contexts)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 5, 5])
    out = table(x, t, torch.tensor([1, 0, 2]))
    torch.testing.assert_close(out[0], model(x[:1], t[:1], context=contexts[1:2])[0])
    torch.testing.assert_close(out[2], model(x[2:], t[2:], context=contexts[:1], null_context=torch.tensor([True]))[0])


def test_a_public_model_saved_before_the_unet_had_cross_attention_still_loads(rdm_workspace):
    from dpsad_core.rdm.store import load_public_model, models_dir

    path = models_dir(rdm_workspace) / MODEL / "model.pt"
    today = load_public_model(MODEL, workspace=rdm_workspace)
    torch.save(retrieval_payload_v1(torch.load(path, weights_only=False)), path)  # as RetrievalUNet saved it
    before = load_public_model(MODEL, workspace=rdm_workspace)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 30])
    context = torch.as_tensor(today.prototypes()[:2])[:, None, :]
    null = torch.tensor([False, True])
    torch.testing.assert_close(before.model(x, t, context=context, null_context=null),
                               today.model(x, t, context=context, null_context=null), rtol=0, atol=0)


def test_nearest_public_neighbours_exclude_the_record_itself():
    embeddings = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.1, 0.99]], dtype=np.float32)
    neighbours = nearest_public_neighbours(embeddings, 1)
    assert neighbours[:, 0].tolist() == [1, 0, 3, 2]


def test_index_keeps_the_private_datasets_own_fingerprint(rdm_workspace):
    from dpsad_core.rdm.index import build_index
    from dpsad_core.rdm.store import load_public_model

    # Built here: fingerprints are keyed per installation (config dir), and each test has its own.
    index = build_index(workspace=rdm_workspace, public_model=load_public_model(MODEL, workspace=rdm_workspace),
                        data="private", name="fresh")
    private = resolve_data_source("private", workspace=rdm_workspace)
    assert index.fingerprint == private.fingerprint()  # composes in the ledger with other runs on it
    assert index.embeddings.shape == (private.num_records, 8)
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)


def test_a_model_name_is_never_overwritten(rdm_workspace):
    from dpsad_core.rdm.training import make_config, train_public

    with pytest.raises(ConfigError, match="already exists"):
        next(train_public(make_config(public="public", name=MODEL, preset="tiny"), workspace=rdm_workspace))


def test_cli_index_and_generate(rdm_workspace, capsys):
    assert main(["rdm", "index", "--model", MODEL, "--data", "private", "--name", "again", "--json"]) == 0
    index = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert index["num_records"] == 750 and index["model"] == MODEL
    code = main(["rdm", "generate", "--model", MODEL, "--index", "again", "--epsilon", "4", "--per-class", "1",
                 "--k", "5", "--q", "0.1", "--steps", "2", "--seed", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["accountant_values"]["rdp"] <= 4.0  # sigma calibrated to the budget
    assert result["epsilon"] <= 4.0 and result["images"] == 10
    assert main(["rdm", "generate", "--model", MODEL, "--index", "missing", "--epsilon", "4",
                 "--per-class", "1"]) == 6
    assert "no DP-RDM private index" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_public_saves_a_reusable_model(rdm_workspace, capsys):
    code = main(["rdm", "train-public", "--public", "public", "--name", "cli-model", "--preset", "tiny", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["public_dataset"] == "public" and len(summary["encoder_digest"]) == 64
    from dpsad_core.rdm.store import load_public_model

    model = load_public_model("cli-model", workspace=rdm_workspace)
    assert model.image_shape == (1, 8, 8) and model.prototypes().shape == (10, 8)
    assert (rdm_workspace / "rdm" / "models" / "cli-model" / "samples.png").is_file()
