"""Distributed DP-SGD (issue 17): 2 gloo workers on CPU are the same mechanism as one process.

The workers are real processes started through ``dpsad-core train --nproc 2`` (torch's elastic
launcher); each test uses the tiny preset on the demo digits and one thread per worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dpsad_core.distributed import World
from dpsad_core.privacy.randomness import SecretRandomness
from dpsad_core.training import RunFolder, TrainConfig, resolve_hyperparameters, start_training
from dpsad_core.training.steps import DataTensors, draw_batch

pytestmark = pytest.mark.slow


def cli(workspace: Path, *args: str, wait: bool = True):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DPSAD_WORKSPACE=str(workspace))
    command = [sys.executable, "-m", "dpsad_core", *args]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def train_args(recipe: str, *extra: str) -> list[str]:
    return ["train", "--data", "demo", "--recipe", recipe, "--preset", "tiny", "--device", "cpu", "--json", *extra]


def one_process(workspace: Path, recipe: str, privacy_seed: int | None, overrides=None) -> dict:
    config = TrainConfig(data="demo", recipe=recipe, epsilon=10.0, preset="tiny",
                         hyper=resolve_hyperparameters("tiny", overrides), device="cpu", privacy_seed=privacy_seed)
    return list(start_training(config, workspace=workspace))[-1].result


def released_weights(workspace: Path, result: dict) -> dict[str, torch.Tensor]:
    """The DP-trained weights: the released model, or the teacher a free student was distilled from."""
    payload = torch.load(RunFolder.open(workspace, result["run_id"]).model_path, weights_only=False)
    return payload["teacher"]["state_dict"] if "teacher" in payload else payload["state_dict"]


@pytest.mark.parametrize("recipe", ["dpdm", "dpsad", "dpsad-split"])
def test_two_workers_train_the_one_process_model_with_reproducible_noise(workspace, recipe):
    done = cli(workspace, *train_args(recipe, "--privacy-seed", "7", "--nproc", "2"))
    assert done.returncode == 0, done.stderr
    two = json.loads(done.stdout.strip().splitlines()[-1])
    one = one_process(workspace, recipe, privacy_seed=7)
    assert two["workers"] == 2 and one["workers"] == 1
    assert two["mechanisms"] == one["mechanisms"]
    assert two["private"] is one["private"] is False  # a known noise seed: never private, whatever N
    a, b = released_weights(workspace, two), released_weights(workspace, one)
    # Only the order of the all-reduced sums differs. (Not for dpsad-paper: its discriminator's plain Adam
    # steps turn float-order differences in near-zero gradients into +-lr updates, so its weights differ
    # between worker counts by up to lr per step; it is a non-private reproduction.)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    # Rank 0 alone wrote a run folder; the other worker created nothing.
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == sorted([two["run_id"], one["run_id"]])


@pytest.mark.parametrize(("recipe", "public"), [("dpsad-public-teacher", "rendered-digits"), ("dpsad-paper", None)])
def test_the_recipes_with_unprotected_adam_steps_are_one_mechanism_with_two_workers(workspace, recipe, public):
    """Their plain Adam steps (the public teacher, the paper's discriminator) turn float-order differences in
    near-zero gradients into +-lr updates, so their weights are not compared; their mechanisms and epsilon are."""
    extra = ("--public-data", public) if public else ()
    done = cli(workspace, *train_args(recipe, "--nproc", "2", *extra))
    assert done.returncode == 0, done.stderr
    two = json.loads(done.stdout.strip().splitlines()[-1])
    config = TrainConfig(data="demo", recipe=recipe, epsilon=10.0, preset="tiny", hyper=resolve_hyperparameters("tiny"),
                         device="cpu", public_data=public)
    one = list(start_training(config, workspace=workspace))[-1].result
    assert two["workers"] == 2 and two["mechanisms"] == one["mechanisms"]
    assert two["private"] is one["private"] and two["epsilon"] == one["epsilon"]
    assert two["nonprivate_parts"] == one["nonprivate_parts"]


def test_two_workers_spend_the_one_process_epsilon(workspace):
    done = cli(workspace, *train_args("dpsad-split", "--nproc", "2"))
    assert done.returncode == 0, done.stderr
    two = json.loads(done.stdout.strip().splitlines()[-1])
    one = one_process(workspace, "dpsad-split", privacy_seed=None)
    assert two["private"] is True and two["secure_rng"] is True
    assert two["mechanisms"] == one["mechanisms"]
    assert two["epsilon"] == one["epsilon"] and two["accountant_values"] == one["accountant_values"]
    from dpsad_core.privacy.ledger import PrivacyLedger

    entries = {e.run_id: e for e in PrivacyLedger(workspace).summary(two["dataset"]["fingerprint"]).entries}
    # The ledger holds one entry for the 2-worker run (rank 0's), spending what the 1-process run spent.
    assert entries[two["run_id"]].mechanisms == entries[one["run_id"]].mechanisms
    assert entries[two["run_id"]].active is False and len(entries) == 2


def test_two_workers_train_on_rank_0s_noisy_count(workspace):
    """An undeclared N: rank 0 draws the count once; the other worker trains with rank 0's plan and key."""
    import dataclasses

    from dpsad_core.data import load_demo
    from dpsad_core.data.store import save_dataset

    save_dataset(dataclasses.replace(load_demo().subset(range(1399)), name="study", name_declared=True,
                                     count_declared=False), workspace)
    done = cli(workspace, "train", "--data", "study", "--recipe", "dpdm", "--preset", "tiny", "--device", "cpu",
               "--json", "--privacy-seed", "7", "--max-steps", "2", "--nproc", "2")
    assert done.returncode == 0, done.stderr
    two = json.loads(done.stdout.strip().splitlines()[-1])
    config = TrainConfig(data="study", recipe="dpdm", epsilon=10.0, preset="tiny",
                         hyper=resolve_hyperparameters("tiny"), device="cpu", privacy_seed=7, max_steps=2)
    one = list(start_training(config, workspace=workspace))[-1].result
    assert [(m["part"], m["steps"]) for m in two["mechanisms"]] == [("count", 1), ("denoiser", 2)]
    assert two["mechanisms"] == one["mechanisms"]
    plans = [RunFolder.open(workspace, r["run_id"]).read_json("config.json")["plan"] for r in (two, one)]
    assert plans[0] == plans[1] and plans[0]["units_from"] == "noisy count"
    a, b = released_weights(workspace, two), released_weights(workspace, one)
    for name in a:  # the same sample rate and noise on both workers: the one-process weights
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def patient_data(records: int = 600, patients: int = 150) -> DataTensors:
    generator = torch.Generator().manual_seed(0)
    units = torch.randint(0, patients, (records,), generator=generator)
    return DataTensors(images=torch.zeros(records, 1, 4, 4), labels=torch.arange(records) % 3,
                       unit_of_record=units, num_units=patients, has_units=True)


def draw(data: DataTensors, world: World, step: int, sample_rate: float = 0.2):
    from dpsad_core.diffusion import DiffusionSchedule

    randomness = SecretRandomness.from_seed(5)
    for _ in range(step):  # the streams at this step, as every worker holds them
        randomness.stream("sampling").random(data.num_units)
    # Images carry their record's index, so a worker's batch names the records it took.
    tagged = DataTensors(images=torch.arange(data.images.shape[0], dtype=torch.float32)[:, None, None, None]
                         .expand(-1, 1, 4, 4).clone(), labels=data.labels, unit_of_record=data.unit_of_record,
                         num_units=data.num_units, has_units=True)
    batch = draw_batch(tagged, sample_rate=sample_rate, schedule=DiffusionSchedule(10, "linear"), draws_per_record=1,
                       label_dropout=0.0, null_label=3, sampling=randomness.stream("sampling"),
                       loss_generator=torch.Generator().manual_seed(step), world=world)
    return batch


def test_workers_split_exactly_the_one_process_subsample_by_unit():
    data = patient_data()
    sizes = []
    for step in range(40):
        whole = draw(data, World(), step)
        parts = [draw(data, World(rank=r, size=3), step) for r in range(3)]
        assert all(part.total == whole.size for part in parts)
        whole_units = sorted(whole.units.tolist())
        assert sorted(u for part in parts for u in part.units.tolist()) == whole_units  # the union, exactly
        owners = [set(part.units.tolist()) for part in parts]
        assert not (owners[0] & owners[1]) and not (owners[0] & owners[2]) and not (owners[1] & owners[2])
        for part in parts:  # every record of a sampled patient is with the worker that has the patient
            for unit in set(part.units.tolist()):
                assert part.units.tolist().count(unit) == int((data.unit_of_record == unit).sum())
        sizes.append(len(set(whole_units)))
    # The union is one Poisson subsample of the 150 patients at q = 0.2: mean 30, sd sqrt(24) per step.
    mean = sum(sizes) / len(sizes)
    assert abs(mean - 30) < 4 * (24 / len(sizes)) ** 0.5
    variance = sum((s - mean) ** 2 for s in sizes) / (len(sizes) - 1)
    assert 24 / 3 < variance < 24 * 3


def test_the_loss_randomness_of_a_worker_is_its_slice_of_the_whole_batch():
    data = patient_data()
    whole = draw(data, World(), 3)
    part = draw(data, World(rank=1, size=2), 3)
    # Same (t, eps) for the same record: match records by their position in the whole batch.
    whole_rows = {(int(u), float(n))
                  for u, n in zip(whole.units.tolist(), whole.noise[:, 0, 0, 0, 0].tolist(), strict=True)}
    part_rows = {(int(u), float(n))
                 for u, n in zip(part.units.tolist(), part.noise[:, 0, 0, 0, 0].tolist(), strict=True)}
    assert part_rows and part_rows <= whole_rows


def _worker_pids(launcher: int) -> dict[int, int]:
    """rank -> pid of the launcher's worker processes (from their environment)."""
    pids = {}
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        for entry in environ:
            if entry.startswith(b"RANK="):
                pids[int(entry[5:])] = int(child)
    return pids


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc to find the worker processes")
def test_a_killed_worker_stops_the_run_which_resumes_to_the_same_epsilon(workspace):
    overrides = ["--set", "denoiser_steps=60", "--set", "checkpoint_every=2", "--set", "sample_every=1000"]
    launcher = cli(workspace, *train_args("dpdm", "--nproc", "2", *overrides), wait=False)
    deadline = time.monotonic() + 120
    runs = workspace / "runs"
    while time.monotonic() < deadline:
        metrics = list(runs.glob("*/metrics.jsonl")) if runs.is_dir() else []
        if metrics and len(metrics[0].read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    workers = _worker_pids(launcher.pid)
    os.kill(workers[1], signal.SIGKILL)
    began = time.monotonic()
    _, stderr = launcher.communicate(timeout=90)
    assert time.monotonic() - began < 60  # the whole run stops, bounded
    assert launcher.returncode == 6, stderr
    run = RunFolder(metrics[0].parent)
    assert "continue it with: dpsad-core train --resume" in stderr or "--resume" in stderr
    assert run.status()["state"] == "interrupted"
    stopped_at = run.status()["step"]
    assert stopped_at < 60
    torch.load(run.checkpoint_path, weights_only=False)  # the checkpoint is whole

    resumed = cli(workspace, "train", "--resume", run.run_id, "--json")  # with the 2 workers it started with
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["workers"] == 2 and result["mechanisms"][0]["steps"] == 60
    straight = one_process(workspace, "dpdm", None, {"denoiser_steps": 60, "checkpoint_every": 2,
                                                     "sample_every": 1000})
    assert result["epsilon"] == straight["epsilon"]
    assert len(run.read_metrics()) == 60


def test_two_machines_with_their_own_workspaces_train_one_run(tmp_path):
    # Each machine of a torchrun job has its own workspace, so its own identity key: the same data has another
    # keyed fingerprint there. The workers compared those fingerprints and refused every multi-machine run.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    machines = []
    for node in (0, 1):
        workspace = tmp_path / f"machine-{node}"
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DPSAD_WORKSPACE=str(workspace),
                   DPSAD_CONFIG_DIR=str(tmp_path / f"config-{node}"))
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                   "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
                   "-m", "dpsad_core", *train_args("dpdm")]
        machines.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [machine.communicate(timeout=600) for machine in machines]
    for machine, (_, err) in zip(machines, outputs, strict=True):
        assert machine.returncode == 0, err[-3000:]
    result = json.loads(outputs[0][0].strip().splitlines()[-1])
    assert result["workers"] == 2 and result["private"]
    assert RunFolder.open(tmp_path / "machine-0", result["run_id"]).state.value == "finished"
    from dpsad_core.data import load_demo

    demo = load_demo()  # the premise: the same data has another keyed fingerprint on each machine
    assert demo.fingerprint(tmp_path / "machine-0") != demo.fingerprint(tmp_path / "machine-1")
    assert not (tmp_path / "machine-1" / "runs").exists()  # rank 0's machine holds the run
