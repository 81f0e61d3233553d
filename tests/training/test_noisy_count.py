"""An undeclared number of units N is published as a noisy count (privacy/noisy_count.py): drawn once per run
from its secret randomness, composed in its epsilon and its ledger entry, kept on resume; none when declared."""

from __future__ import annotations

import dataclasses

import pytest

from dpsad_core.data import load_demo
from dpsad_core.data.store import save_dataset
from dpsad_core.errors import PrivacyBudgetError
from dpsad_core.events import RunFinished, RunInterrupted
from dpsad_core.privacy import noisy_count
from dpsad_core.privacy.ledger import PrivacyLedger
from dpsad_core.privacy.randomness import STREAM_IDS
from dpsad_core.runs.folder import list_runs
from dpsad_core.training import RunFolder, TrainConfig, resolve_hyperparameters, resume_training, start_training

pytestmark = pytest.mark.slow
NOISE = 37.25  # the pinned draw: 1,399 + 37.25 and 1,400 + 37.25 both round down to 1,400


def save_study(workspace, records: int, *, declared: bool = False) -> str:
    demo = load_demo()
    study = dataclasses.replace(demo.subset(range(records)), name="study", name_declared=True,
                                count_declared=declared)
    save_dataset(study, workspace)
    return "study"


def config(**overrides) -> TrainConfig:
    overrides.setdefault("max_steps", 1)
    return TrainConfig(data="study", recipe="dpdm", epsilon=8.0, preset="tiny", hyper=resolve_hyperparameters("tiny"),
                       seed=0, device="cpu", **overrides)


@pytest.fixture
def pinned_draw(monkeypatch):
    """The count's noise fixed to NOISE; records which secret stream each draw came from."""
    streams = []

    def draw(stream, noise_multiplier):
        streams.append(stream)
        assert noise_multiplier == noisy_count.COUNT_NOISE_MULTIPLIER
        return NOISE

    monkeypatch.setattr(noisy_count, "count_noise", draw)
    return streams


def train(workspace, **overrides) -> dict:
    events = list(start_training(config(**overrides), workspace=workspace))
    assert isinstance(events[-1], RunFinished)
    return events[-1].result


@pytest.mark.parametrize("records", [1399, 1400])
def test_neighbours_straddling_a_rounding_boundary_get_the_same_plan(tmp_path, pinned_draw, records):
    workspace = tmp_path / f"ws-{records}"
    save_study(workspace, records)
    result = train(workspace)
    (stream,) = pinned_draw  # one draw, from the run's secret "count" stream
    assert stream._id == STREAM_IDS["count"]
    plan = RunFolder.open(workspace, result["run_id"]).read_json("config.json")["plan"]
    # Without the noise, 1,399 would be planned as 1,300: another sample rate, noise and default delta.
    assert plan["private_units"] == 1400 and plan["units_from"] == "noisy count"
    assert plan["phases"][0]["sample_rate"] == pytest.approx(16 / 1400)
    assert plan["delta"] == pytest.approx(1e-5)
    count = {"part": "count", "noise_multiplier": 100.0, "sample_rate": 1.0, "steps": 1, "clip_norm": 1.0,
             "components": []}
    assert plan["count_mechanism"] == count and result["mechanisms"][0] == count
    assert [m["part"] for m in result["mechanisms"]] == ["count", "denoiser"]
    (entry,) = PrivacyLedger(workspace).entries(result["dataset"]["fingerprint"])
    assert [m.to_dict() for m in entry.mechanisms] == result["mechanisms"]
    # The whole plan, count included, meets the target.
    assert result["epsilon"] <= 8.0 and plan["planned_epsilon"]["certified"] <= 8.0


def test_the_count_is_spent_in_the_ledger_before_the_plan_is_written(workspace, monkeypatch):
    save_study(workspace, 300)
    seen = []
    original = RunFolder.write_json

    def write_json(self, name, data):
        if name == "config.json":
            (entry,) = PrivacyLedger(workspace).entries()
            seen.append([m.part for m in entry.mechanisms])
        return original(self, name, data)

    monkeypatch.setattr(RunFolder, "write_json", write_json)
    train(workspace)
    assert seen == [["count"]]


def test_a_resumed_run_keeps_its_count_and_draws_none(workspace, monkeypatch, pinned_draw):
    save_study(workspace, 1399)
    calls = iter([False, True])
    events = list(start_training(config(max_steps=2), workspace=workspace, stop=lambda: next(calls, True)))
    assert isinstance(events[-1], RunInterrupted)

    def no_second_draw(stream, noise_multiplier):
        raise AssertionError("a resume drew the count again")

    monkeypatch.setattr(noisy_count, "count_noise", no_second_draw)
    result = list(resume_training(events[-1].run_id, workspace=workspace))[-1].result
    plan = RunFolder.open(workspace, result["run_id"]).read_json("config.json")["plan"]
    assert plan["private_units"] == 1400
    assert [(m["part"], m["steps"]) for m in result["mechanisms"]] == [("count", 1), ("denoiser", 2)]


def test_a_resume_without_a_checkpoint_still_counts_the_count(workspace, pinned_draw):
    save_study(workspace, 1399)
    events = list(start_training(config(max_steps=2), workspace=workspace, stop=lambda: True))
    run = RunFolder.open(workspace, events[-1].run_id)
    run.checkpoint_path.unlink()  # as if killed before the first checkpoint
    result = list(resume_training(run.run_id, workspace=workspace))[-1].result
    assert [m["part"] for m in result["mechanisms"]] == ["count", "denoiser"]


def test_a_declared_count_draws_nothing_and_spends_nothing(workspace, monkeypatch):
    save_study(workspace, 1399, declared=True)

    def no_draw(stream, noise_multiplier):
        raise AssertionError("a declared count was drawn")

    monkeypatch.setattr(noisy_count, "count_noise", no_draw)
    result = train(workspace)
    plan = RunFolder.open(workspace, result["run_id"]).read_json("config.json")["plan"]
    assert plan["private_units"] == 1399 and plan["units_from"] == "declared" and plan["count_mechanism"] is None
    assert [m["part"] for m in result["mechanisms"]] == ["denoiser"]


def test_a_preview_draws_nothing_but_plans_the_count_cost(workspace, monkeypatch):
    from dpsad_core.training import prepare_run

    save_study(workspace, 1399)
    monkeypatch.setattr(noisy_count, "count_noise", lambda *args: pytest.fail("a preview drew the count"))
    _, _, plan = prepare_run(config(), workspace=workspace, plan_only=True)
    assert plan.private_units == 1300 and plan.units_from == "rounded"
    assert [m.part for m in plan.mechanisms(config().hyper)] == ["count", "denoiser"]



def test_a_spent_cap_is_refused_before_the_count_is_drawn(workspace, monkeypatch):
    # The refusal needs no count: it is made before anything secret is drawn from the private data.
    save_study(workspace, 300)
    first = train(workspace)
    ledger = PrivacyLedger(workspace)
    ledger.set_cap(first["dataset"]["fingerprint"], first["epsilon"])

    def no_draw(stream, noise_multiplier):
        raise AssertionError("the count was drawn although the cap was spent")

    monkeypatch.setattr(noisy_count, "count_noise", no_draw)
    with pytest.raises(PrivacyBudgetError, match="over the cap"):
        train(workspace)
    assert [entry.run_id for entry in ledger.entries()] == [first["run_id"]]
    assert [run["run_id"] for run in list_runs(workspace)] == [first["run_id"]]


def test_a_refusal_computed_from_the_count_keeps_the_count_spent(workspace, pinned_draw):
    # Whether the plan fits under the cap is a function of the count it was computed from: an uncounted refusal
    # could be repeated with fresh draws and would reveal N. The count stays spent; nothing else is.
    save_study(workspace, 300)
    first = train(workspace)
    ledger = PrivacyLedger(workspace)
    ledger.set_cap(first["dataset"]["fingerprint"], first["epsilon"] * 1.2)  # the count fits, a whole plan not
    with pytest.raises(PrivacyBudgetError, match="over the cap.*noisy count drawn for run .* stays spent"):
        train(workspace, max_steps=None)
    assert len(pinned_draw) == 2
    (refused,) = [entry for entry in ledger.entries() if entry.run_id != first["run_id"]]
    assert [m.to_dict() for m in refused.mechanisms] == [noisy_count.count_mechanism().to_dict()]
    assert not refused.active  # no reservation is left behind, and no run folder
    assert [run["run_id"] for run in list_runs(workspace)] == [first["run_id"]]
