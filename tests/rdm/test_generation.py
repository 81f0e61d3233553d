"""DP-RDM generation: the run folder, the ledger, refusal of a spent budget, interruption, example queries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dpsad_core.errors import ConfigError, PrivacyBudgetError
from dpsad_core.events import RunFinished, RunInterrupted, StepCompleted
from dpsad_core.privacy import compute_epsilon, noisy_count
from dpsad_core.privacy.ledger import PrivacyLedger
from dpsad_core.privacy.noisy_count import count_mechanism
from dpsad_core.rdm.generation import GenerateConfig, generate_rdm
from dpsad_core.rdm.index import load_index
from dpsad_core.rdm.planner import RetrievalSettings
from dpsad_core.runs import RunKind, RunResult
from dpsad_core.runs.folder import list_runs
from tests.fixtures.rdm import INDEX, MODEL


def _config(**overrides) -> GenerateConfig:
    values = {"model": MODEL, "index": INDEX, "epsilon": 10.0, "k": 5, "sample_rate": 0.1, "sigma": 0.3, "per_class": 2,
              "sample_steps": 3, "seed": 0}
    return GenerateConfig(**{**values, **overrides})


def _run(config, workspace, **kwargs):
    return list(generate_rdm(config, workspace=workspace, **kwargs))


@pytest.mark.slow
def test_generate_writes_a_run_folder_and_records_the_spend(rdm_workspace):
    events = _run(_config(), rdm_workspace)
    result = events[-1].result
    assert isinstance(events[-1], RunFinished)
    written = json.loads((Path(result["run_dir"]) / "result.json").read_text())
    assert RunResult.from_dict(written).to_dict() == written == result
    assert RunResult.from_dict(written).kind is RunKind.DP_RDM
    settings = RetrievalSettings(k=5, sample_rate=0.1, sigma=0.3)
    # The index's N is private: the run's noisy count is its first mechanism, composed in its epsilon.
    expected = compute_epsilon([count_mechanism(), settings.mechanism(20)], delta=result["delta"])
    assert result["epsilon"] == pytest.approx(expected.certified)
    assert result["recipe"] == "dp-rdm" and result["private"] is True
    assert result["mechanisms"] == [
        count_mechanism().to_dict(),
        {"part": "rdm-retrieval", "noise_multiplier": 0.75, "sample_rate": 0.1, "steps": 20, "clip_norm": None,
         "components": [{"part": "rdm-retrieval", "k": 5, "sigma": 0.3, "sensitivity": 0.4}]}]
    assert result["mechanism"]["lambda"] == 1.0 and result["unit_of_privacy"] == "image"
    index = load_index(INDEX, workspace=rdm_workspace)
    assert result["dataset"]["fingerprint"] == index.fingerprint
    run_dir = rdm_workspace / "runs" / result["run_id"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert json.loads((run_dir / "config.json").read_text())["config"]["recipe"] == "dp-rdm"
    samples = np.load(run_dir / "samples.npz")
    assert samples["images"].shape == (20, 8, 8) and samples["images"].dtype == np.uint8
    assert list(samples["labels"]) == [label for label in range(10) for _ in range(2)]
    assert list(samples["class_names"]) == [str(d) for d in range(10)]
    assert (run_dir / "samples" / "grid.png").is_file()
    summary = PrivacyLedger(rdm_workspace).summary(index.fingerprint)
    assert summary.spent.certified == pytest.approx(result["epsilon"])
    assert [run["recipe"] for run in list_runs(rdm_workspace)] == ["dp-rdm"]
    # Progress reports the RDP epsilon spent so far, never above the run's budget.
    spent = [event.epsilon_spent for event in events if isinstance(event, StepCompleted)]
    assert spent and max(spent) <= 10.0


@pytest.mark.slow
def test_a_query_with_a_spent_budget_is_refused(rdm_workspace):
    index = load_index(INDEX, workspace=rdm_workspace)
    ledger = PrivacyLedger(rdm_workspace)
    first = _run(_config(), rdm_workspace)[-1].result
    ledger.set_cap(index.fingerprint, first["epsilon"] * 1.2)
    with pytest.raises(PrivacyBudgetError, match="over the cap.*noisy count drawn for run .* stays spent"):
        _run(_config(), rdm_workspace)
    # Nothing was queried and no run folder was left behind; the count the refusal was computed from stays spent.
    refused = [entry for entry in ledger.entries(index.fingerprint) if entry.run_id != first["run_id"]]
    assert [[m.part for m in entry.mechanisms] for entry in refused] == [["count"]]
    assert not refused[0].active
    assert len(list_runs(rdm_workspace)) == 1


@pytest.mark.slow
def test_a_spent_cap_is_refused_before_the_count_is_drawn(rdm_workspace, monkeypatch):
    index = load_index(INDEX, workspace=rdm_workspace)
    ledger = PrivacyLedger(rdm_workspace)
    first = _run(_config(), rdm_workspace)[-1].result
    ledger.set_cap(index.fingerprint, first["epsilon"])

    def no_draw(stream, sigma):
        raise AssertionError("the count was drawn although the cap was spent")

    monkeypatch.setattr(noisy_count, "count_noise", no_draw)
    with pytest.raises(PrivacyBudgetError, match="over the cap"):
        _run(_config(), rdm_workspace)
    assert [entry.run_id for entry in ledger.entries(index.fingerprint)] == [first["run_id"]]


def test_a_run_budget_below_the_queries_cost_is_refused(rdm_workspace):
    with pytest.raises(PrivacyBudgetError, match="more than the budget"):
        _run(_config(epsilon=0.5), rdm_workspace)
    assert list_runs(rdm_workspace) == []


def test_stopping_keeps_what_was_spent(rdm_workspace):
    events = _run(_config(batch_size=4), rdm_workspace, stop=lambda: True)
    assert isinstance(events[-1], RunInterrupted) and events[-1].step == 4
    index = load_index(INDEX, workspace=rdm_workspace)
    spent = PrivacyLedger(rdm_workspace).summary(index.fingerprint).spent
    four = compute_epsilon([count_mechanism(), RetrievalSettings(k=5, sample_rate=0.1, sigma=0.3).mechanism(4)],
                           delta=spent.delta)
    assert spent.certified == pytest.approx(four.certified)


def test_example_and_exemplar_queries(rdm_workspace, tmp_path):
    from PIL import Image

    path = tmp_path / "public.png"
    Image.fromarray((np.eye(16) * 255).astype(np.uint8)).save(path)
    events = _run(_config(per_class=1, classes=("1", "7"), query_mode="exemplar", examples=(str(path),),
                          per_example=2), rdm_workspace)
    samples = np.load(rdm_workspace / "runs" / events[-1].result["run_id"] / "samples.npz")
    assert list(samples["labels"]) == [1, 7, -1, -1]
    assert samples["queries"][2] == "example public.png"


def test_an_index_from_another_encoder_is_refused(rdm_workspace):
    meta_path = rdm_workspace / "rdm" / "indexes" / INDEX / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["encoder_digest"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="built with the encoder"):
        _run(_config(), rdm_workspace)


def test_bad_requests_are_config_errors():
    with pytest.raises(ConfigError, match="lambda"):
        _config(mix=0.0)
    with pytest.raises(ConfigError, match="no queries"):
        _config(per_class=0)
    with pytest.raises(ConfigError, match="sigma"):
        _config(sigma=0.0)


def test_closing_the_generator_ends_the_run_as_interrupted_with_its_spend(rdm_workspace):
    events = generate_rdm(_config(batch_size=4), workspace=rdm_workspace)
    started = next(event for event in events if isinstance(event, StepCompleted))
    assert started.step == 4
    events.close()  # as a consumer that stops reading does
    (run,) = list_runs(rdm_workspace)
    assert json.loads((rdm_workspace / "runs" / run["run_id"] / "status.json").read_text())["state"] == "interrupted"
    (entry,) = PrivacyLedger(rdm_workspace).entries()
    assert [(m.part, m.steps) for m in entry.mechanisms] == [("count", 1), ("rdm-retrieval", 4)]
    assert not entry.active


def test_an_index_whose_count_is_declared_draws_and_spends_no_count(rdm_workspace, monkeypatch):
    meta_path = rdm_workspace / "rdm" / "indexes" / INDEX / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["dataset"]["count_declared"] = True  # as if imported with --public-count
    meta_path.write_text(json.dumps(meta))
    monkeypatch.setattr(noisy_count, "count_noise", lambda *args: pytest.fail("a declared count was drawn"))
    result = _run(_config(per_class=1), rdm_workspace)[-1].result
    assert [m["part"] for m in result["mechanisms"]] == ["rdm-retrieval"]
    plan = json.loads((rdm_workspace / "runs" / result["run_id"] / "config.json").read_text())["plan"]
    assert plan["units_from"] == "declared"
    assert plan["private_units"] == load_index(INDEX, workspace=rdm_workspace).num_units  # exact: declared public
    assert plan["count_mechanism"] is None
