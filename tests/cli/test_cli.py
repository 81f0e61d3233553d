"""The dpsad-core command line as scripts use it: exit codes, one-line errors, --json, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpsad_core.errors import ConfigError, DataImportError, DeviceError, RunError

pytestmark = pytest.mark.slow

TINY = ["--preset", "tiny", "--device", "cpu"]


def cli(*args: str, check: bool = True, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    env.pop("DPSAD_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "dpsad_core.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def last_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_json_contract(workspace):
    result = last_json(cli("train", "--data", "demo", "--recipe", "dpsad-split", "--epsilon", "5", "--delta", "1e-6",
                           *TINY, "--json"))
    for key in ("run_id", "recipe", "private", "epsilon", "delta", "accountant_values", "mechanisms"):
        assert key in result
    assert result["recipe"] == "dpsad-split" and result["private"] is True and result["delta"] == 1e-6
    assert 0 < result["epsilon"] <= 5
    assert set(result["accountant_values"]) >= {"rdp", "prv"}
    for mechanism in result["mechanisms"]:
        assert set(mechanism) >= {"part", "noise_multiplier", "sample_rate", "steps", "clip_norm"}
    runs = json.loads(cli("runs", "--json").stdout)
    assert runs[0]["run_id"] == result["run_id"] and runs[0]["state"] == "finished"
    sample = last_json(cli("sample", result["run_id"], "--per-class", "2", "--json", "--npz",
                           str(workspace / "s.npz")))
    assert Path(sample["grid"]).is_file() and sample["count"] == 20
    import numpy as np

    with np.load(workspace / "s.npz") as npz:
        assert npz["images"].shape == (20, 8, 8) and npz["labels"].tolist() == [i // 2 for i in range(20)]


def test_paper_recipe_json_says_not_private(workspace):
    result = last_json(cli("train", "--data", "demo", "--recipe", "dpsad-paper", *TINY, "--json"))
    assert result["private"] is False and result["epsilon"] is None


@pytest.mark.parametrize(("args", "error"), [
    (["train", "--data", "/no/such/folder", *TINY], DataImportError),
    (["train", "--data", "demo", "--epsilon", "-1", *TINY], ConfigError),
    (["train", "--data", "demo", "--set", "bogus=1", *TINY], ConfigError),
    (["train", "--data", "demo", "--recipe", "dpsad-public-teacher", *TINY], ConfigError),
    (["train", "--resume", "no-such-run"], RunError),
    (["sample", "no-such-run"], RunError),
    (["train", "--data", "demo", *TINY, "--device", "cuda"], DeviceError),
])
def test_user_mistakes_give_one_line_and_the_error_class_exit_code(workspace, args, error):
    proc = cli(*args, check=False)
    assert proc.returncode == error.exit_code
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dpsad-core: error:")
    assert "Traceback" not in proc.stderr
    runs = workspace / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a refused run must not leave a run folder"


def test_plan_prints_noise_without_training(workspace):
    plan = last_json(cli("train", "--data", "demo", "--recipe", "dpsad-split", "--plan", "--json", *TINY))
    assert [p["name"] for p in plan["phases"]] == ["teacher", "student"]
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())


def test_default_recipe_is_dpdm_pretrained_on_public_data_when_given(workspace):
    plan = last_json(cli("train", "--data", "demo", "--plan", "--json", *TINY))
    assert plan["recipe"] == "dpdm" and [p["name"] for p in plan["phases"]] == ["denoiser"]
    plan = last_json(cli("train", "--data", "demo", "--public-data", "rendered-digits", "--plan", "--json", *TINY))
    assert plan["recipe"] == "dpdm"
    assert [(p["name"], p["privacy"]) for p in plan["phases"]] == [("pretrain", "public"), ("denoiser", "dp")]


def _start_long_run(workspace: Path) -> subprocess.Popen:
    args = ["train", "--data", "demo", "--recipe", "dpsad-split", *TINY, "--json", "--set", "denoiser_steps=30",
            "--set", "student_steps=30", "--set", "checkpoint_every=3", "--set", "sample_every=100"]
    return subprocess.Popen([sys.executable, "-m", "dpsad_core.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(workspace: Path, proc: subprocess.Popen) -> Path:
    deadline = time.time() + 300
    while time.time() < deadline:
        runs = list((workspace / "runs").glob("*/checkpoint.pt")) if (workspace / "runs").exists() else []
        if runs:
            return runs[0].parent
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def test_kill_9_then_resume_spends_what_an_uninterrupted_run_spends(workspace):
    proc = _start_long_run(workspace)
    run_dir = _wait_for_checkpoint(workspace, proc)
    time.sleep(1.0)  # let it get between checkpoints, so the kill loses some steps
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = last_json(cli("train", "--resume", run_dir.name, "--json"))
    straight_proc = _start_long_run(workspace)
    out, err = straight_proc.communicate(timeout=600)
    assert straight_proc.returncode == 0, err
    straight = json.loads(out.strip().splitlines()[-1])
    assert resumed["mechanisms"] == straight["mechanisms"]
    assert resumed["epsilon"] == pytest.approx(straight["epsilon"], rel=1e-12)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 60  # nothing logged twice, nothing lost


def test_sigterm_checkpoints_and_exits_130(workspace):
    proc = _start_long_run(workspace)
    run_dir = _wait_for_checkpoint(workspace, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted"
    assert f"resume with: dpsad-core train --resume {run_dir.name}" in err


def test_import_saves_a_dataset_that_train_can_name(workspace, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(60):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "imgs" / label / f"{i}.png")
    summary = last_json(cli("import", str(tmp_path / "imgs"), "--name", "noise", "--classes", "a,b", "--json"))
    assert summary["num_records"] == 120 and summary["num_classes"] == 2
    listed = json.loads(cli("datasets", "--json").stdout)
    assert [d["name"] for d in listed] == ["noise"]
    result = last_json(cli("train", "--data", "noise", "--recipe", "dpdm", *TINY, "--json"))
    assert result["dataset"]["fingerprint"] == summary["fingerprint"]


def test_plan_shows_the_dataset_budget_and_a_refusal_before_anything_runs(workspace):
    plan = last_json(cli("train", "--data", "demo", "--epsilon", "5", *TINY, "--plan", "--json"))
    assert plan["budget"]["spent_epsilon"] == 0.0 and plan["budget"]["refusal"] is None
    cli("ledger", "demo", "--cap", "1")
    capped = last_json(cli("train", "--data", "demo", "--epsilon", "5", *TINY, "--plan", "--json"))
    assert capped["budget"]["cap_epsilon"] == 1.0
    assert "over the cap of 1" in capped["budget"]["refusal"]
    text = cli("train", "--data", "demo", "--epsilon", "5", *TINY, "--plan").stdout
    assert "this run would be refused" in text
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())
