"""Time estimates: a measured step of the plan's own model and batch, cached per machine and model."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    import torch

    from dpsad_core.training import resolve_hyperparameters

    torch.set_num_threads(1)
    monkeypatch.setenv("DPSAD_CACHE_DIR", str(tmp_path / "cache"))
    return resolve_hyperparameters("tiny")


def test_a_step_is_measured_once_per_machine_and_model(tiny, monkeypatch):
    from dpsad_core.training import estimate

    shape = {"channels": 1, "resolution": 8, "num_classes": 10, "device": "cpu"}
    seconds, cached = estimate.denoise_step_seconds(tiny, batch=16, **shape)
    assert seconds > 0 and not cached

    def refuse(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(estimate, "measure_denoise_step", refuse)
    assert estimate.denoise_step_seconds(tiny, batch=16, **shape) == (seconds, True)
    with pytest.raises(AssertionError, match="measured again"):  # another batch is another measurement
        estimate.denoise_step_seconds(tiny, batch=32, **shape)
    monkeypatch.setattr(estimate, "machine_key", lambda device: "another machine")
    with pytest.raises(AssertionError, match="measured again"):
        estimate.denoise_step_seconds(tiny, batch=16, **shape)


def test_the_plan_estimate_counts_each_phases_steps_at_its_cost(tiny, monkeypatch):
    from dpsad_core.training import estimate
    from dpsad_core.training.engine import DISTILL_COST_RATIO

    monkeypatch.setattr(estimate, "measure_denoise_step", lambda hyper, **kwargs: 0.5)
    phases = [{"name": "teacher", "kind": "denoise", "steps": 400, "expected_batch_size": 16.0},
              {"name": "student", "kind": "distill", "steps": 400, "expected_batch_size": 32.0}]
    result = estimate.estimate_plan_seconds({"phases": phases}, {"teacher": 10, "student": 4}, tiny, channels=1,
                                            resolution=8, num_classes=10, device="cpu")
    assert result["seconds"] == pytest.approx(10 * 0.5 + 4 * 0.5 * DISTILL_COST_RATIO)
    assert result["phases"] == pytest.approx({"teacher": 10 * 0.5, "student": 4 * 0.5 * DISTILL_COST_RATIO})
    assert "batch of 16, measured on this machine's cpu (measured just now)" in result["basis"]


@pytest.fixture
def clock(monkeypatch):
    """The estimator's clock, moved by hand: ``clock.now`` seconds since the epoch."""
    from dpsad_core.training import estimate

    class Clock:
        now = 1_800_000_000.0

    monkeypatch.setattr(estimate.time, "time", lambda: Clock.now)
    return Clock


def test_a_step_time_older_than_a_day_is_measured_again(tiny, monkeypatch, clock):
    """A busy machine's step time must not price every later plan (a stale one was 90% off, issue 18)."""
    from dpsad_core.training import estimate

    shape = {"channels": 1, "resolution": 8, "num_classes": 10, "device": "cpu", "batch": 16}
    timings = iter([2.0, 1.0])
    monkeypatch.setattr(estimate, "measure_denoise_step", lambda hyper, **kwargs: next(timings))
    assert estimate.denoise_step_seconds(tiny, **shape) == (2.0, False)
    clock.now += estimate.MAX_AGE_SECONDS - 60
    assert estimate.denoise_step_seconds(tiny, **shape) == (2.0, True)  # still recent: not timed again
    clock.now += 120
    assert estimate.denoise_step_seconds(tiny, **shape) == (1.0, False)  # a day old: timed again
    assert estimate.denoise_step_seconds(tiny, **shape) == (1.0, True)


def test_a_cache_of_the_first_format_is_measured_again(tiny, monkeypatch):
    """Its bare numbers carry no date: they cannot be known to be recent."""
    from dpsad_core.atomic import atomic_write_json
    from dpsad_core.paths import cache_dir
    from dpsad_core.training import estimate

    shape = {"channels": 1, "resolution": 8, "num_classes": 10, "batch": 16}
    cache_dir().mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache_dir() / estimate.CACHE_FILE,
                      {estimate.machine_key("cpu"): {estimate.model_key(tiny, **shape): 9.0}})
    monkeypatch.setattr(estimate, "measure_denoise_step", lambda hyper, **kwargs: 0.5)
    assert estimate.denoise_step_seconds(tiny, device="cpu", **shape) == (0.5, False)


def fake_run(folder, hyper, step_seconds: list[float]):
    """A run folder as the engine leaves it: a 16-image denoising phase whose steps took ``step_seconds``."""
    import json

    from dpsad_core.training import TrainConfig

    config = TrainConfig(data="demo", recipe="dpdm", epsilon=8.0, preset="tiny", hyper=hyper, device="cpu")
    folder.mkdir(parents=True)
    phase = {"name": "denoiser", "kind": "denoise", "steps": len(step_seconds), "expected_batch_size": 16.0}
    (folder / "config.json").write_text(json.dumps({
        "config": config.to_dict(), "dataset": {"channels": 1, "resolution": 8, "num_classes": 10},
        "plan": {"phases": [phase]}}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"phase_index": 0, "phase": "denoiser", "step": i + 1, "seconds": s}) + "\n"
        for i, s in enumerate(step_seconds)))
    return folder


def test_a_finished_run_replaces_a_step_time_it_disagrees_with(tiny, monkeypatch, clock, tmp_path):
    """The run's own steps are the best measurement: a cached time 25% off or more gives way to them."""
    from dpsad_core.training import estimate

    shape = {"channels": 1, "resolution": 8, "num_classes": 10, "device": "cpu", "batch": 16}
    monkeypatch.setattr(estimate, "measure_denoise_step", lambda hyper, **kwargs: 1.0)
    assert estimate.denoise_step_seconds(tiny, **shape) == (1.0, False)  # timed while the machine was busy

    entry = estimate.learn_from_run(fake_run(tmp_path / "fast", tiny, [0.5, 0.5, 0.6, 0.4]), "cpu")
    assert entry == {"seconds": pytest.approx(0.5), "measured": clock.now, "source": "run"}
    assert estimate.denoise_step_seconds(tiny, **shape) == (pytest.approx(0.5), True)
    phases = [{"name": "denoiser", "kind": "denoise", "steps": 100, "expected_batch_size": 16.0}]
    plan = estimate.estimate_plan_seconds({"phases": phases}, {"denoiser": 100}, tiny, channels=1, resolution=8,
                                          num_classes=10, device="cpu")
    assert plan["seconds"] == pytest.approx(50.0) and "(from a run under a minute ago)" in plan["basis"]

    # A run that agrees within the fraction keeps the number and makes it recent again.
    clock.now += estimate.MAX_AGE_SECONDS - 60
    entry = estimate.learn_from_run(fake_run(tmp_path / "agrees", tiny, [0.55, 0.55]), "cpu")
    assert entry["seconds"] == pytest.approx(0.5) and entry["measured"] == clock.now
    clock.now += 3 * 3600
    assert estimate.denoise_step_seconds(tiny, **shape) == (pytest.approx(0.5), True)
    assert "(from a run 3 h ago)" in estimate.estimate_plan_seconds(
        {"phases": phases}, {"denoiser": 100}, tiny, channels=1, resolution=8, num_classes=10, device="cpu")["basis"]


def test_a_run_prices_its_distillation_steps_in_denoising_steps(tiny, clock, tmp_path):
    """The cached time is the one that would have priced the run's steps exactly, whatever their kinds."""
    import json

    from dpsad_core.training import estimate
    from dpsad_core.training.engine import DISTILL_COST_RATIO

    folder = fake_run(tmp_path / "run", tiny, [1.0, 1.0])
    stored = json.loads((folder / "config.json").read_text())
    stored["plan"]["phases"].append({"name": "student", "kind": "distill", "steps": 2, "expected_batch_size": 32.0})
    (folder / "config.json").write_text(json.dumps(stored))
    with open(folder / "metrics.jsonl", "a") as metrics:
        metrics.write(json.dumps({"phase": "student", "step": 1, "seconds": 2 * DISTILL_COST_RATIO}) + "\n")
        metrics.write('{"phase": "student", "st')  # the last line of a crashed run
    entry = estimate.learn_from_run(folder, "cpu")
    assert entry["seconds"] == pytest.approx((2.0 + 2 * DISTILL_COST_RATIO) / (2 + DISTILL_COST_RATIO))


def test_a_run_folder_without_timed_steps_teaches_nothing(tiny, tmp_path):
    from dpsad_core.training import estimate

    assert estimate.learn_from_run(fake_run(tmp_path / "empty", tiny, []), "cpu") is None
    assert estimate.learn_from_run(tmp_path / "missing", "cpu") is None


def test_a_finished_training_run_records_its_step_time(tiny, workspace):
    """The engine hands every single-process run that ends to the estimator: no plan is priced by a stale guess."""
    import json

    from dpsad_core.paths import cache_dir
    from dpsad_core.training import TrainConfig, start_training
    from dpsad_core.training.estimate import CACHE_FILE

    config = TrainConfig(data="demo", recipe="dpdm", epsilon=8.0, preset="tiny", hyper=tiny, device="cpu",
                         max_steps=2)
    assert list(start_training(config, workspace=workspace))[-1].result["private"]
    cached = json.loads((cache_dir() / CACHE_FILE).read_text())
    entries = [entry for models in cached.values() for entry in models.values()]
    assert [entry["source"] for entry in entries] == ["run"] and entries[0]["seconds"] > 0


def test_a_run_in_one_go_teaches_what_it_costs_besides_its_steps(tiny, workspace):
    """Found in the walk-through: a 4-step run priced at 2 s took 20 s (data, models, sample grids, saving)."""
    from dpsad_core.runs.folder import RunFolder
    from dpsad_core.training import TrainConfig, start_training
    from dpsad_core.training.estimate import estimate_plan_seconds

    config = TrainConfig(data="demo", recipe="dpdm", epsilon=8.0, preset="tiny", hyper=tiny, device="cpu",
                         max_steps=2)
    result = list(start_training(config, workspace=workspace))[-1].result
    plan = RunFolder.open(workspace, result["run_id"]).config().plan
    priced = estimate_plan_seconds(dict(plan), {"denoiser": 2}, tiny, channels=1, resolution=8, num_classes=10,
                                   device="cpu", measure=False)
    overhead = priced["overhead_seconds"]
    assert overhead is not None and overhead > 0 and "to load the data, build the models" in priced["basis"]
    assert priced["seconds"] == pytest.approx(sum(priced["phases"].values()) + overhead)
    other = estimate_plan_seconds(dict(plan, recipe="dpsad"), {"denoiser": 2}, tiny, channels=1, resolution=8,
                                  num_classes=10, device="cpu", measure=False)
    assert other["overhead_seconds"] is None  # learnt per recipe: a dpsad run also distils
