"""``evaluate`` on a DP-RDM run: its generated images against the private retrieval set and real test data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dpsad_core.cli import main
from dpsad_core.errors import ConfigError, RunError
from dpsad_core.evaluation.evaluate import evaluate_run
from dpsad_core.evaluation.report import EVALUATION_FILE, EvaluationOptions
from dpsad_core.rdm.generation import GenerateConfig, generate_rdm
from tests.fixtures.rdm import INDEX, MODEL


@pytest.fixture
def rdm_run(rdm_workspace, tmp_path):
    """A finished DP-RDM run: 2 class queries per digit (20 images) and 1 example query."""
    example = tmp_path / "public-example.png"
    Image.fromarray((np.eye(16) * 255).astype(np.uint8)).save(example)
    config = GenerateConfig(model=MODEL, index=INDEX, epsilon=10.0, k=5, sample_rate=0.1, sigma=0.3, per_class=2,
                            sample_steps=3, seed=0, examples=(str(example),))
    events = list(generate_rdm(config, workspace=rdm_workspace))
    return rdm_workspace / "runs" / events[-1].result["run_id"]


@pytest.mark.slow
def test_evaluate_scores_the_generated_images_against_the_retrieval_set(rdm_run, capsys):
    workspace = rdm_run.parent.parent
    capsys.readouterr()
    code = main(["evaluate", rdm_run.name, "--test", "demo", "--epochs", "1", "--min-steps", "0",
                 "--workspace", str(workspace), "--json"])
    assert code == 0, capsys.readouterr().err
    stored = json.loads((rdm_run / EVALUATION_FILE).read_text())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == stored
    assert stored["run_id"] == rdm_run.name and stored["private_run"] is True
    # The 20 class-query images are the synthetic set; the example query has no class and is left out.
    assert stored["config"]["synthetic_count"] == 20 and stored["memorisation"]["n"] == 20
    assert stored["config"]["example_queries_left_out"] == 1 and stored["config"]["recipe"] == "dp-rdm"
    # Memorisation is measured against the private retrieval set (the index's data, checked by fingerprint).
    index_meta = json.loads((workspace / "rdm" / "indexes" / INDEX / "meta.json").read_text())
    assert stored["config"]["training_set"]["name"] == "private"
    assert stored["config"]["training_set"]["num_records"] == index_meta["dataset"]["num_records"]
    assert stored["config"]["test_set"]["num_records"] == 297
    assert 0 <= stored["downstream"]["cnn"]["accuracy"] <= 1


@pytest.mark.slow  # the first test of a session to use rdm_base trains the tiny public model (about 10 s)
def test_evaluate_refuses_a_count_and_changed_private_data(rdm_run):
    workspace = rdm_run.parent.parent
    with pytest.raises(ConfigError, match="DP-RDM run"):
        list(evaluate_run(rdm_run.name, test="demo", workspace=workspace, options=EvaluationOptions(count=50)))
    config_path = rdm_run / "config.json"
    stored = json.loads(config_path.read_text())
    stored["config"]["data"] = "public"  # not the data the index was built from
    config_path.write_text(json.dumps(stored))
    with pytest.raises(RunError, match="fingerprint differs"):
        list(evaluate_run(rdm_run.name, test="demo", workspace=workspace))
    assert not (rdm_run / EVALUATION_FILE).exists()
