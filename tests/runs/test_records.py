"""Typed run records: result.json and status.json as every reader sees them (fast; no training)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dpsad_core.cli import main
from dpsad_core.errors import RunError
from dpsad_core.runs import CONFIG_SCHEMA, RESULT_SCHEMA, RunConfigRecord, RunKind, RunResult, RunState
from dpsad_core.runs.folder import RunFolder, list_runs

# A training run's result.json as written before the typed records (no schema, student, workers, secure_rng).
OLD_TRAINING = {
    "run_id": "20250101-120000-dpdm-ab12", "run_dir": "/ws/runs/20250101-120000-dpdm-ab12", "recipe": "dpdm",
    "private": True, "epsilon": 7.91, "epsilon_target": 8.0, "delta": 1e-5,
    "accountant_values": {"rdp": 8.0, "prv": 7.91, "rdp_order": 6.0, "note": None},
    "mechanisms": [{"part": "denoiser", "noise_multiplier": 1.2, "sample_rate": 0.1, "steps": 40, "clip_norm": 1.0}],
    "nonprivate_parts": [], "claimed_epsilon_paper": None, "unit_of_privacy": "image",
    "dataset": {"name": "demo", "fingerprint": "ab" * 16, "num_records": 400, "num_units": 400},
    "steps": {"denoiser": 40}, "model_path": "/ws/runs/x/model.pt", "sample_grid": "/ws/runs/x/samples/latest.png",
    "train_seconds": 12.5, "device": "cpu", "finished": "2025-01-01T12:01:00+00:00",
}
OLD_DP_RDM = {
    "run_id": "20250101-120000-dp-rdm-cd34", "run_dir": "/ws/runs/r", "recipe": "dp-rdm", "private": True,
    "epsilon": 2.5, "epsilon_target": 3.0, "delta": 1e-5,
    "accountant_values": {"rdp": 2.6, "prv": 2.5, "rdp_order": 12.0, "note": None},
    "mechanisms": [{"part": "rdm-retrieval", "noise_multiplier": 0.75, "sample_rate": 0.1, "steps": 20}],
    "nonprivate_parts": [], "mechanism": {"k": 5, "q": 0.1, "sigma": 0.3, "queries": 20, "sampler": "ddim 8 steps"},
    "unit_of_privacy": "image", "dataset": {"name": "demo", "fingerprint": "cd" * 16, "num_records": 400,
                                            "num_units": 400},
    "public_model": {"name": "pm", "public_dataset": "public", "encoder_digest": "ef"},
    "samples_npz": "/ws/runs/r/samples.npz", "sample_grid": "/ws/runs/r/samples/grid.png", "images": 20,
    "generate_seconds": 3.2, "warnings": [], "finished": "2025-01-01T12:01:00+00:00",
}

# A training run's config.json as written before the typed records (no schema), with the hyper-parameter
# names of config format 2.
OLD_TRAINING_CONFIG = {
    "config": {"data": "demo", "recipe": "dpdm", "epsilon": 8.0, "delta": None, "preset": "tiny", "device": "cpu",
               "max_steps": 30, "format": 2, "hyper": {"teacher_steps": 40, "noise_multiplicity": 2}},
    "dataset": {"name": "demo", "fingerprint": "ab" * 16, "resolution": 8, "channels": 1, "num_classes": 10,
                "class_counts": {"zero": 40, "one": 40}},
    "public_dataset": None,
    "plan": {"recipe": "dpdm", "nonprivate_parts": [], "phases": [{"name": "denoiser", "kind": "denoise",
                                                                   "steps": 40}]},
    "created": "2025-01-01T12:00:00+00:00", "software": {"torch": "2.5.0"}, "workers": 2,
}
# A DP-RDM run's config.json as written before the typed records (no schema, workers or software).
OLD_DP_RDM_CONFIG = {
    "config": {"recipe": "dp-rdm", "epsilon": 3.0, "k": 5, "q": 0.1, "sigma": 0.3, "data": "demo"},
    "dataset": {"name": "demo", "fingerprint": "cd" * 16, "resolution": 16, "channels": 1},
    "public_dataset": {"name": "public"}, "public_model": {"name": "pm", "encoder_digest": "ef"},
    "plan": {"recipe": "dp-rdm", "nonprivate_parts": ["reproducible-noise"], "mechanisms": []},
    "created": "2025-01-01T12:00:00+00:00",
}


def test_an_old_training_config_reads_typed_and_keeps_its_keys():
    config = RunConfigRecord.from_dict(OLD_TRAINING_CONFIG)
    assert config.kind is RunKind.TRAINING and config.recipe == "dpdm" and config.epsilon_target == 8.0
    assert (config.data, config.device, config.max_steps, config.workers) == ("demo", "cpu", 30, 2)
    assert (config.fingerprint, config.resolution, config.channels, config.num_classes) == ("ab" * 16, 8, 1, 10)
    assert config.class_names == ["zero", "one"] and config.phases[0]["steps"] == 40
    assert config.nonprivate_parts == () and config.dataset_name == "demo"
    written = config.to_dict()
    assert {key: written[key] for key in OLD_TRAINING_CONFIG} == OLD_TRAINING_CONFIG
    assert set(written) - set(OLD_TRAINING_CONFIG) == {"schema"} and written["schema"] == CONFIG_SCHEMA
    assert RunConfigRecord.from_dict(written) == config


def test_an_old_dp_rdm_config_reads_as_dp_rdm_and_keeps_its_keys():
    config = RunConfigRecord.from_dict(OLD_DP_RDM_CONFIG)
    assert config.kind is RunKind.DP_RDM and config.workers == 1 and config.software is None
    assert config.public_model == {"name": "pm", "encoder_digest": "ef"}
    assert config.nonprivate_parts == ("reproducible-noise",) and config.phases == ()
    written = config.to_dict()
    assert {key: written[key] for key in OLD_DP_RDM_CONFIG} == OLD_DP_RDM_CONFIG
    assert set(written) - set(OLD_DP_RDM_CONFIG) == {"schema", "workers"}


def test_an_old_run_folders_config_reads_into_the_renamed_settings(workspace):
    from dpsad_core.training.config import TrainConfig

    run = RunFolder.create(workspace, "20250101-120000-dpdm-0005")
    run.write_json("config.json", OLD_TRAINING_CONFIG)
    hyper = TrainConfig.from_dict(run.config().config).hyper
    assert (hyper.denoiser_steps, hyper.draws_per_record) == (40, 2)


@pytest.mark.parametrize(("data", "words"), [
    ({**OLD_TRAINING_CONFIG, "schema": CONFIG_SCHEMA + 1}, "config schema"),
    ({**OLD_TRAINING_CONFIG, "plan": ["teacher"]}, "plan is not a JSON object"),
    ({**OLD_TRAINING_CONFIG, "dataset": "demo"}, "dataset is not a JSON object"),
    ("not an object", "not a JSON object"),
])
def test_a_config_that_cannot_be_read_is_refused_naming_the_file(data, words):
    with pytest.raises(RunError, match=words) as error:
        RunConfigRecord.from_dict(data, source="/ws/runs/r/config.json")
    assert "/ws/runs/r/config.json" in str(error.value)


def test_an_old_training_result_reads_with_defaults_and_keeps_its_keys():
    result = RunResult.from_dict(OLD_TRAINING)
    assert result.kind is RunKind.TRAINING and result.private and result.epsilon == 7.91
    assert result.student is None and result.workers == 1 and result.secure_rng is False
    assert result.steps == {"denoiser": 40} and result.mechanisms[0]["part"] == "denoiser"
    written = result.to_dict()
    # Every key it had, with its value; the newer keys at their defaults; nothing else.
    assert {key: written[key] for key in OLD_TRAINING} == OLD_TRAINING
    assert set(written) - set(OLD_TRAINING) == {"schema", "student", "workers", "secure_rng", "secure_rng_note"}
    assert written["schema"] == RESULT_SCHEMA and RunResult.from_dict(written) == result


def test_an_old_dp_rdm_result_reads_as_dp_rdm_and_keeps_its_keys():
    result = RunResult.from_dict(OLD_DP_RDM)
    assert result.kind is RunKind.DP_RDM and result.images == 20 and result.mechanism["k"] == 5
    assert result.model_path is None and result.train_seconds is None
    written = result.to_dict()
    assert {key: written[key] for key in OLD_DP_RDM} == OLD_DP_RDM
    assert set(written) - set(OLD_DP_RDM) == {"schema", "secure_rng", "secure_rng_note"}


def test_the_plan_can_only_take_privacy_away():
    config = RunConfigRecord.from_dict(OLD_TRAINING_CONFIG)
    result = RunResult.from_dict(OLD_TRAINING).with_plan(dataclasses.replace(config, plan={"nonprivate_parts": [
        "teacher"]}))
    assert not result.private and result.epsilon is None and result.nonprivate_parts == ("teacher",)
    assert RunResult.from_dict(OLD_TRAINING).with_plan(dataclasses.replace(config, plan={})).epsilon == 7.91


@pytest.mark.parametrize(("data", "words"), [
    ({**OLD_TRAINING, "schema": RESULT_SCHEMA + 1}, "schema"),
    ({key: value for key, value in OLD_TRAINING.items() if key != "delta"}, "lacks delta"),
    (["not", "an", "object"], "not a JSON object"),
])
def test_a_result_that_cannot_be_read_is_refused_naming_the_file(data, words):
    with pytest.raises(RunError, match=words) as error:
        RunResult.from_dict(data, source="/ws/runs/r/result.json")
    assert "/ws/runs/r/result.json" in str(error.value)


def _hand_made_run(workspace: Path, run_id: str, state: str) -> RunFolder:
    """A run folder with just what ``runs`` lists (no training: these tests are about the records)."""
    run = RunFolder.create(workspace, run_id)
    run.write_json("config.json", {"config": {"recipe": "dpdm", "epsilon": 8.0}, "dataset": {"name": "demo"},
                                   "plan": {"nonprivate_parts": []}, "created": "2025-01-01T12:00:00+00:00"})
    run.write_json("status.json", {"state": state, "phase": "denoiser", "step": 3, "epsilon_spent": 1.5})
    return run


def test_an_unknown_state_is_refused_naming_the_file(workspace, capsys):
    run = _hand_made_run(workspace, "20250101-120000-dpdm-0001", "paused")
    with pytest.raises(RunError, match="unknown run state 'paused'") as error:
        _ = run.state  # reading the property is what raises
    assert str(run.path / "status.json") in str(error.value)
    with pytest.raises(RunError, match="unknown run state"):
        run.set_status("paused")  # nor is one written
    assert main(["runs", "--workspace", str(workspace)]) == RunError.exit_code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "status.json" in err and "'paused'" in err


def test_the_guis_cancel_writes_the_cores_cancelled_state(workspace, capsys):
    from dpsad_core.training import resume_training
    from dpsad_workbench.core import mark_cancelled

    run = _hand_made_run(workspace, "20250101-120000-dpdm-0002", "interrupted")
    mark_cancelled(workspace, run.run_id)
    status = run.status_record()
    assert status.state is RunState.CANCELLED and not status.state.resumable
    assert status.step == 3 and status.epsilon_spent == 1.5 and "cancelled" in status.message
    assert json.loads((run.path / "status.json").read_text())["state"] == "cancelled"
    assert main(["runs", "--workspace", str(workspace)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if run.run_id in line)
    assert line.split()[1] == "cancelled"
    assert list_runs(workspace)[0]["state"] == "cancelled"
    # Cancel is the final stop: what it spent stays counted, and it is not resumed.
    with pytest.raises(RunError, match="was cancelled"):
        next(resume_training(run.run_id, workspace=workspace))


def test_a_run_folder_knows_its_kind(workspace):
    training = _hand_made_run(workspace, "20250101-120000-dpdm-0003", "finished")
    assert training.kind is RunKind.TRAINING
    (training.path / "audit.json").write_text("{}")
    assert training.kind is RunKind.AUDIT
    rdm = _hand_made_run(workspace, "20250101-120000-dp-rdm-0004", "finished")
    rdm.write_json("config.json", {**rdm.read_json("config.json"), "config": {"recipe": "dp-rdm", "epsilon": 3.0}})
    assert rdm.kind is RunKind.DP_RDM
    assert {run["run_id"]: run["kind"] for run in list_runs(workspace)} == {
        training.run_id: "audit", rdm.run_id: "dp-rdm"}
