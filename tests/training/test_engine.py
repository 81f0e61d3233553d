"""End-to-end training on tiny data: events, run folder, resume, and the privacy numbers it reports."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from dpsad_core.errors import ConfigError, RunError
from dpsad_core.events import (
    CheckpointWritten,
    PhaseStarted,
    RunFinished,
    RunInterrupted,
    RunStarted,
    SampleGrid,
    StepCompleted,
)
from dpsad_core.privacy import Mechanism, compute_epsilon
from dpsad_core.runs import RunKind
from dpsad_core.training import (
    Recipe,
    RunFolder,
    TrainConfig,
    list_runs,
    resolve_hyperparameters,
    resume_training,
    start_training,
)

pytestmark = pytest.mark.slow


def tiny_config(recipe: str = "dpsad-split", **overrides) -> TrainConfig:
    hyper = resolve_hyperparameters("tiny", overrides.pop("hyper", None))
    return TrainConfig(data="demo", recipe=recipe, epsilon=overrides.pop("epsilon", 8.0), preset="tiny", hyper=hyper,
                       seed=overrides.pop("seed", 0), device="cpu", **overrides)


def run_all(events):
    return list(events)


@pytest.mark.parametrize("recipe", ["dpsad-split", "dpdm"])
def test_private_recipe_end_to_end(workspace, recipe):
    events = run_all(start_training(tiny_config(recipe), workspace=workspace))
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished)
    steps = [e for e in events if isinstance(e, StepCompleted)]
    assert len(steps) == (8 if recipe == "dpsad-split" else 4)
    spent = [e.epsilon_spent for e in steps]
    assert spent == sorted(spent) and spent[0] > 0  # epsilon rises with every step
    assert any(isinstance(e, SampleGrid) for e in events)
    assert any(isinstance(e, CheckpointWritten) for e in events)
    result = events[-1].result
    assert result["private"] is True
    assert 0 < result["epsilon"] <= 8.0 + 1e-9
    assert result["epsilon"] == pytest.approx(min(result["accountant_values"]["rdp"],
                                                  result["accountant_values"]["prv"]))
    # The mechanisms reported are exactly what the accountant composed: recomputing gives the same epsilon.
    mechanisms = [Mechanism.from_dict(m) for m in result["mechanisms"]]
    recomputed = compute_epsilon(mechanisms, delta=result["delta"], accountants=("rdp",))
    assert recomputed.rdp == pytest.approx(result["accountant_values"]["rdp"])
    expected_parts = ["teacher", "student+discriminator"] if recipe == "dpsad-split" else ["denoiser"]
    assert [m["part"] for m in result["mechanisms"]] == expected_parts
    assert all(m["steps"] == 4 for m in result["mechanisms"])
    run = RunFolder.open(workspace, result["run_id"])
    assert run.status()["state"] == "finished"
    assert run.model_path.is_file() and (run.path / "samples" / "latest.png").is_file()
    assert len(run.read_metrics()) == len(steps)
    assert json.loads((run.path / "result.json").read_text()) == result
    # The typed record reads the file back to the same JSON, key for key.
    assert run.result().to_dict() == result and run.result().kind is RunKind.TRAINING
    assert list_runs(workspace)[0]["run_id"] == result["run_id"]


def test_paper_recipe_is_reported_not_private(workspace):
    result = run_all(start_training(tiny_config("dpsad-paper"), workspace=workspace))[-1].result
    assert result["private"] is False
    assert result["epsilon"] is None
    assert result["accountant_values"]["rdp"] is None
    assert set(result["nonprivate_parts"]) == {"teacher", "discriminator"}
    assert result["claimed_epsilon_paper"] == 8.0


def test_public_teacher_recipe_spends_only_on_the_student(workspace):
    # The public data must share no record with the private data (the private set itself is refused).
    config = tiny_config("dpsad-public-teacher", public_data="rendered-digits")
    result = run_all(start_training(config, workspace=workspace))[-1].result
    assert [m["part"] for m in result["mechanisms"]] == ["student+discriminator"]
    assert result["private"] is True


def test_max_steps_reports_what_was_spent(workspace):
    full = run_all(start_training(tiny_config("dpdm"), workspace=workspace))[-1].result
    short = run_all(start_training(tiny_config("dpdm", max_steps=1), workspace=workspace))[-1].result
    assert short["mechanisms"][0]["steps"] == 1
    assert short["accountant_values"]["rdp"] < full["accountant_values"]["rdp"]
    assert short["mechanisms"][0]["noise_multiplier"] == full["mechanisms"][0]["noise_multiplier"]


def test_stop_then_resume_matches_an_uninterrupted_run(workspace, monkeypatch):
    # Both runs draw the same secret key (pinned here); the resume must take it from the checkpoint.
    monkeypatch.setattr("dpsad_core.privacy.randomness.os_entropy", lambda size: bytes(range(size)))
    straight = run_all(start_training(tiny_config("dpsad-split"), workspace=workspace))[-1].result
    assert straight["private"] is True

    calls = {"n": 0}

    def stop_after_five_steps() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    events = run_all(start_training(tiny_config("dpsad-split"), workspace=workspace, stop=stop_after_five_steps))
    assert isinstance(events[-1], RunInterrupted)
    run_id = events[-1].run_id
    assert RunFolder.open(workspace, run_id).status()["state"] == "interrupted"
    monkeypatch.setattr("dpsad_core.privacy.randomness.os_entropy", lambda size: bytes(size))  # another key
    resumed = run_all(resume_training(run_id, workspace=workspace))
    assert resumed[0].resumed is True
    first_phase = next(e for e in resumed if isinstance(e, PhaseStarted))
    assert (first_phase.phase, first_phase.start_step) == ("student", 1)
    result = resumed[-1].result
    assert result["mechanisms"] == straight["mechanisms"]
    assert result["epsilon"] == straight["epsilon"]
    # Same RNG states, same optimiser state: the released weights are the same too.
    a = torch.load(RunFolder.open(workspace, run_id).model_path, weights_only=False)["state_dict"]
    b = torch.load(RunFolder.open(workspace, straight["run_id"]).model_path, weights_only=False)["state_dict"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    metrics = RunFolder.open(workspace, run_id).read_metrics()
    assert len(metrics) == 8  # no step logged twice


def test_closing_the_generator_writes_a_checkpoint(workspace):
    events = start_training(tiny_config("dpdm"), workspace=workspace)
    run_id = None
    for event in events:
        if isinstance(event, RunStarted):
            run_id = event.run_id
        if isinstance(event, StepCompleted) and event.step == 3:
            events.close()
            break
    run = RunFolder.open(workspace, run_id)
    assert run.status()["state"] == "interrupted"
    assert run.load_checkpoint()["step"] == 3
    result = run_all(resume_training(run_id, workspace=workspace))[-1].result
    assert result["mechanisms"][0]["steps"] == 4


def test_finished_run_cannot_be_resumed(workspace):
    result = run_all(start_training(tiny_config("dpdm"), workspace=workspace))[-1].result
    with pytest.raises(RunError, match="already finished"):
        run_all(resume_training(result["run_id"], workspace=workspace))


def test_resume_refuses_changed_data(workspace):
    events = start_training(tiny_config("dpdm"), workspace=workspace, stop=lambda: True)
    run_id = run_all(events)[-1].run_id
    config_path = RunFolder.open(workspace, run_id).path / "config.json"
    stored = json.loads(config_path.read_text())
    stored["dataset"]["fingerprint"] = "hmac-sha256:" + "0" * 64
    config_path.write_text(json.dumps(stored))
    with pytest.raises(RunError, match="fingerprint"):
        run_all(resume_training(run_id, workspace=workspace))


def test_unknown_setting_and_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve_hyperparameters("tiny", {"no_such_thing": "1"})
    with pytest.raises(ConfigError, match="denoiser_steps"):
        resolve_hyperparameters("tiny", {"denoiser_steps": "-3"})
    with pytest.raises(ConfigError, match="epsilon"):
        TrainConfig(data="demo", epsilon=-1)
    with pytest.raises(ConfigError, match="public"):
        TrainConfig(data="demo", recipe=Recipe.DPSAD_PUBLIC_TEACHER)
    assert math.isfinite(TrainConfig(data="demo").epsilon)


def test_dropping_the_generator_after_it_finished_keeps_the_run_finished(workspace):
    events = start_training(tiny_config("dpdm"), workspace=workspace)
    for event in events:
        if isinstance(event, RunFinished):
            events.close()
            break
    assert RunFolder.open(workspace, event.run_id).status()["state"] == "finished"


def test_a_history_too_long_for_prv_falls_back_to_the_rdp_bound(workspace, monkeypatch):
    from dpsad_core.errors import PrivacyBudgetError
    from dpsad_core.privacy import PrivacyAccountant

    original = PrivacyAccountant.values

    def refuse_prv(self, *, accountants=("rdp", "prv")):
        if "prv" in accountants:
            raise PrivacyBudgetError("PRV grid too large")
        return original(self, accountants=accountants)

    monkeypatch.setattr(PrivacyAccountant, "values", refuse_prv)
    result = run_all(start_training(tiny_config("dpdm"), workspace=workspace))[-1].result
    assert result["accountant_values"]["prv"] is None
    assert result["epsilon"] == result["accountant_values"]["rdp"] and result["epsilon"] <= 8.0
    assert "PRV not computed" in result["accountant_values"]["note"]


def test_dpdm_with_public_pretraining_spends_only_on_the_dp_phase(workspace):
    events = run_all(start_training(tiny_config("dpdm", public_data="rendered-digits"), workspace=workspace))
    phases = [e.phase for e in events if isinstance(e, PhaseStarted)]
    assert phases == ["pretrain", "denoiser"]
    pretrain_eps = [e.epsilon_spent for e in events if isinstance(e, StepCompleted) and e.phase == "pretrain"]
    assert pretrain_eps and all(eps == 0.0 for eps in pretrain_eps)  # public data: no cost
    result = events[-1].result
    assert [m["part"] for m in result["mechanisms"]] == ["denoiser"] and result["mechanisms"][0]["steps"] == 4
    assert 0 < result["epsilon"] <= 8.0


def test_public_data_is_refused_by_recipes_that_cannot_use_it():
    with pytest.raises(ConfigError, match="public-data"):
        TrainConfig(data="demo", recipe=Recipe.DPSAD_SPLIT, public_data="rendered-digits")


def test_a_plan_only_preparation_does_not_render_the_public_digits(workspace, monkeypatch, tmp_path):
    from dpsad_core.data import synthetic
    from dpsad_core.training import prepare_run

    config = tiny_config("dpdm", public_data="rendered-digits")
    monkeypatch.setenv("DPSAD_CACHE_DIR", str(tmp_path / "empty-cache"))
    real = synthetic.render_digits
    monkeypatch.setattr(synthetic, "render_digits", lambda **kw: pytest.fail("rendered for a plan"))
    _, public, plan = prepare_run(config, workspace=workspace, plan_only=True)
    assert public is None
    monkeypatch.setattr(synthetic, "render_digits", real)
    _, public, full = prepare_run(config, workspace=workspace)
    assert public.num_records == synthetic.DEFAULT_COUNT and plan.to_dict() == full.to_dict()

    from dpsad_core.data import save_dataset
    from dpsad_core.data.dataset import ImageDataset

    demo = public  # any 10-class set; a 3-class private set must still be refused without rendering
    keep = demo.labels < 3
    save_dataset(ImageDataset(images=demo.images[keep], labels=demo.labels[keep], class_names=("0", "1", "2"),
                              patient_ids=None, name="three-classes", source="tests"), workspace)
    monkeypatch.setattr(synthetic, "render_digits", lambda **kw: pytest.fail("rendered for a plan"))
    with pytest.raises(ConfigError, match="public dataset has 10 classes, the private one 3"):
        prepare_run(dataclasses.replace(config, data="three-classes"), workspace=workspace, plan_only=True)
