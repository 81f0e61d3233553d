"""Renamed settings: a config.json of an older run and ``--set old_name=value`` read with today's names."""

from __future__ import annotations

import json

import pytest

from dpsad_core.cli import main
from dpsad_core.errors import ConfigError
from dpsad_core.training.config import CONFIG_FORMAT, LEGACY_SETTING_NAMES, TrainConfig, resolve_hyperparameters

#: The "config" object of a format-2 config.json, with the hyper-parameter names it was written with.
FORMAT_2_CONFIG = {
    "data": "demo", "recipe": "dpdm", "epsilon": 8.0, "delta": None, "preset": "tiny", "public_data": None,
    "max_steps": None, "resolution": None, "seed": 0, "privacy_seed": None, "device": "cpu", "min_records": 100,
    "ledger_data": None, "allow_public_overlap": False, "format": 2,
    "hyper": {"channels": [8, 16], "teacher_steps": 7, "teacher_batch_size": 24, "teacher_lr": 0.004,
              "teacher_clip_norm": 0.25, "noise_multiplicity": 3, "teacher_budget_share": 0.4},
}


def test_a_config_written_with_the_former_names_reads_into_todays_fields():
    config = TrainConfig.from_dict(FORMAT_2_CONFIG)
    hyper = config.hyper
    assert (hyper.denoiser_steps, hyper.denoiser_batch_size, hyper.denoiser_lr, hyper.denoiser_clip_norm,
            hyper.draws_per_record, hyper.teacher_budget_share) == (7, 24, 0.004, 0.25, 3, 0.4)
    written = config.to_dict()
    assert written["format"] == CONFIG_FORMAT == 3
    assert not set(written["hyper"]) & set(LEGACY_SETTING_NAMES)
    assert TrainConfig.from_dict(written) == config


def test_set_with_a_former_name_sets_the_renamed_field():
    hyper = resolve_hyperparameters("tiny", {"teacher_lr": "0.01", "noise_multiplicity": "5"})
    assert (hyper.denoiser_lr, hyper.draws_per_record) == (0.01, 5)
    with pytest.raises(ConfigError, match="denoiser_steps is given twice: as denoiser_steps and by its former name "
                                          "teacher_steps"):
        resolve_hyperparameters("tiny", {"teacher_steps": "3", "denoiser_steps": "4"})


@pytest.mark.slow
def test_train_plan_takes_a_former_name_on_the_command_line(capsys):
    args = ["train", "--data", "demo", "--recipe", "dpdm", "--preset", "tiny", "--device", "cpu", "--plan", "--json"]
    assert main([*args, "--set", "teacher_steps=9"]) == 0
    old = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main([*args, "--set", "denoiser_steps=9"]) == 0
    new = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [phase["steps"] for phase in old["phases"]] == [phase["steps"] for phase in new["phases"]] == [9]
