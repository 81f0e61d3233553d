"""``train --plan`` says how long the run will take, in all and per phase, with the New run screen's estimator."""

from __future__ import annotations

import json

import pytest

from dpsad_core.cli import main

STEP_SECONDS = 0.5  # one denoising step, as if measured on this machine
PLAN = ["train", "--data", "demo", "--recipe", "dpsad-split", "--preset", "tiny", "--device", "cpu", "--plan"]


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    """No step time cached by another test: each test decides what the measurement gives."""
    monkeypatch.setenv("DPSAD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def timed_step(monkeypatch):
    """A fixed step time, so the expected seconds follow from the plan's steps (no model is timed)."""
    from dpsad_core.training import estimate

    calls = []

    def measure(hyper, **shape):  # the real one builds the model from these
        calls.append(shape)
        return STEP_SECONDS

    monkeypatch.setattr(estimate, "measure_denoise_step", measure)
    return calls


def test_the_plan_prints_each_phases_time_and_the_total(workspace, capsys, timed_step):
    from dpsad_core.training.engine import DISTILL_COST_RATIO

    assert main([*PLAN, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    steps = {phase["name"]: phase["steps"] for phase in plan["phases"]}
    assert timed_step and timed_step[0]["resolution"] == 8 and timed_step[0]["num_classes"] == 10
    expected = {"teacher": steps["teacher"] * STEP_SECONDS,
                "student": steps["student"] * STEP_SECONDS * DISTILL_COST_RATIO}
    assert plan["estimate"]["phases"] == pytest.approx(expected)
    assert plan["estimate"]["seconds"] == pytest.approx(sum(expected.values()))

    assert main(PLAN) == 0  # the text: the second plan reads the cached step time
    text = capsys.readouterr().out
    from dpsad_core.commands.plan_time import format_duration

    teacher = next(line for line in text.splitlines() if line.strip().startswith("teacher"))
    student = next(line for line in text.splitlines() if line.strip().startswith("student"))
    assert teacher.endswith(f", about {format_duration(expected['teacher'])}")
    assert student.endswith(f", about {format_duration(expected['student'])}")
    assert (f"estimated time: about {format_duration(sum(expected.values()))} in all (one step of this model "
            "at a batch of") in text
    assert "(timed under a minute ago)" in text and len(timed_step) == 1


def test_max_steps_shortens_the_estimate(workspace, capsys, timed_step):
    assert main([*PLAN, "--json", "--max-steps", "3"]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plan["estimate"]["phases"]["teacher"] == pytest.approx(3 * STEP_SECONDS)
    assert plan["estimate"]["steps"] == {"teacher": 3, "student": 3}
    assert main([*PLAN, "--max-steps", "3"]) == 0
    teacher = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("teacher"))
    assert teacher.endswith(", 3 of them run (--max-steps), about 2 s")


def test_a_step_that_cannot_be_timed_leaves_the_plan_printable(workspace, capsys, monkeypatch):
    from dpsad_core.training import estimate

    def out_of_memory(hyper, **shape):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")

    monkeypatch.setattr(estimate, "measure_denoise_step", out_of_memory)
    assert main(PLAN) == 0
    text = capsys.readouterr().out
    assert "estimated time: unknown: could not time one step on this machine (CUDA out of memory." in text
    assert "more details" not in text
