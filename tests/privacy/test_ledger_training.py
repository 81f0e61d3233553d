"""The engine and the ledger: every run records its spend, a cap refuses a run before it starts, kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpsad_core.data import resolve_data_source
from dpsad_core.errors import PrivacyBudgetError
from dpsad_core.events import RunFinished, RunInterrupted
from dpsad_core.privacy import Mechanism, compute_epsilon
from dpsad_core.privacy.ledger import PrivacyLedger
from dpsad_core.training import TrainConfig, resolve_hyperparameters, resume_training, start_training

pytestmark = pytest.mark.slow


def tiny_config(recipe: str = "dpdm", **overrides) -> TrainConfig:
    hyper = resolve_hyperparameters("tiny", overrides.pop("hyper", None))
    return TrainConfig(data="demo", recipe=recipe, epsilon=overrides.pop("epsilon", 4.0), preset="tiny", hyper=hyper,
                       device="cpu", **overrides)


def demo_fingerprint(workspace: Path) -> str:
    return resolve_data_source("demo", workspace=workspace).fingerprint(workspace)


def stop_after(calls: int):
    seen = []

    def stop() -> bool:
        seen.append(1)
        return len(seen) > calls
    return stop


def test_a_run_records_exactly_what_its_accountant_spent(workspace):
    result = list(start_training(tiny_config("dpsad-split"), workspace=workspace))[-1].result
    (entry,) = PrivacyLedger(workspace).entries(result["dataset"]["fingerprint"])
    assert entry.run_id == result["run_id"] and entry.kind == "train" and entry.recipe == "dpsad-split"
    assert [m.to_dict() for m in entry.mechanisms] == result["mechanisms"]
    assert not entry.active and entry.private and entry.delta == result["delta"]
    assert entry.values()[0].certified == pytest.approx(result["epsilon"])


def test_cap_refuses_a_run_before_its_folder_exists_and_a_resume_is_not_counted_twice(workspace):
    planned = list(start_training(tiny_config(), workspace=workspace))[-1].result  # measure one run's spend
    workspace = workspace / "other"  # a fresh ledger, with its own identity key
    fingerprint = demo_fingerprint(workspace)
    ledger = PrivacyLedger(workspace)
    mechanisms = [Mechanism.from_dict(m) for m in planned["mechanisms"]]
    alone = compute_epsilon(mechanisms, delta=planned["delta"]).certified
    twice = compute_epsilon(mechanisms * 2, delta=planned["delta"]).certified
    ledger.set_cap(fingerprint, (alone + twice) / 2)  # one such run fits, two do not

    events = list(start_training(tiny_config(), workspace=workspace, stop=stop_after(2)))
    assert isinstance(events[-1], RunInterrupted)
    (entry,) = ledger.entries(fingerprint)
    assert not entry.active and [m.steps for m in entry.mechanisms] == [2]  # an aborted run counts what it spent

    finished = list(resume_training(entry.run_id, workspace=workspace))[-1]  # not refused for its own spend
    assert isinstance(finished, RunFinished)
    (entry,) = ledger.entries(fingerprint)
    assert [m.to_dict() for m in entry.mechanisms] == finished.result["mechanisms"] == planned["mechanisms"]

    with pytest.raises(PrivacyBudgetError, match=r"over the cap of .*already spent or reserved by 1 run"):
        list(start_training(tiny_config(), workspace=workspace))
    assert [p.name for p in (workspace / "runs").iterdir()] == [entry.run_id]  # nothing written for the refused run
    # A smaller run still fits: the check composes instead of refusing everything.
    cheap = tiny_config(max_steps=1)
    assert isinstance(list(start_training(cheap, workspace=workspace))[-1], RunFinished)


def test_cap_refuses_the_nonprivate_recipe(workspace):
    PrivacyLedger(workspace).set_cap(demo_fingerprint(workspace), 100.0)
    with pytest.raises(PrivacyBudgetError, match="not differentially private"):
        list(start_training(tiny_config("dpsad-paper"), workspace=workspace))
    assert not (workspace / "runs").exists()


def test_runs_at_another_resolution_count_against_the_same_data(workspace):
    list(start_training(tiny_config(), workspace=workspace))
    list(start_training(tiny_config(resolution=16, max_steps=1), workspace=workspace))
    summary = PrivacyLedger(workspace).summary(demo_fingerprint(workspace))
    assert len(summary.entries) == 2


# -- kill -9 ---------------------------------------------------------------------------------------
def _steps_and_epsilon(run_dir: Path) -> tuple[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written
    return len(records), max((r["epsilon_rdp"] for r in records), default=0.0)


def _ledger_steps_and_epsilon(ledger: PrivacyLedger) -> tuple[int, float]:
    (entry,) = ledger.entries()
    return sum(m.steps for m in entry.mechanisms), compute_epsilon(entry.mechanisms, delta=entry.delta,
                                                                   accountants=("rdp",)).rdp


def test_the_ledger_never_shows_less_than_the_run_spent_even_after_kill_9(workspace):
    args = ["train", "--data", "demo", "--recipe", "dpsad-split", "--preset", "tiny", "--device", "cpu", "--json",
            "--set", "denoiser_steps=10", "--set", "student_steps=30", "--set", "checkpoint_every=7",
            "--set", "sample_every=100"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # Import the accountant here first, so that the polling below keeps up with the training steps.
    compute_epsilon([Mechanism(part="x", noise_multiplier=1.0, sample_rate=0.1, steps=1)], delta=1e-5,
                    accountants=("rdp",))
    proc = subprocess.Popen([sys.executable, "-m", "dpsad_core.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    ledger = PrivacyLedger(workspace)
    observations = 0
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        runs = list((workspace / "runs").glob("*")) if (workspace / "runs").exists() else []
        if runs:
            done, spent = _steps_and_epsilon(runs[0])  # the run's log first, then the ledger: it must be ahead
            ledger_steps, ledger_epsilon = _ledger_steps_and_epsilon(ledger)
            assert ledger_steps >= done and ledger_epsilon >= spent - 1e-12
            observations += 1
            if done >= 14:  # in the student phase, between checkpoints
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert observations > 3
    run_dir = runs[0]
    done, spent = _steps_and_epsilon(run_dir)
    ledger_steps, ledger_epsilon = _ledger_steps_and_epsilon(ledger)
    assert ledger_steps >= done >= 14 and ledger_epsilon >= spent - 1e-12
    (entry,) = ledger.entries()
    assert entry.active  # killed: its reservation stands until it is resumed

    resumed = subprocess.run([sys.executable, "-m", "dpsad_core.cli", "train", "--resume", run_dir.name, "--json"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    (entry,) = ledger.entries()
    assert [m.to_dict() for m in entry.mechanisms] == result["mechanisms"] and not entry.active
