"""A start that fails leaves nothing behind: no run folder, no ledger entry (issue 15, family 5).

Settings are checked, and the models built in memory, before the ledger reservation and the run
folder; a run is resumed only in its own workspace, whose ledger holds its spend.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpsad_core.cli import main
from dpsad_core.errors import ConfigError, RunError
from dpsad_core.privacy.ledger import LEDGER_FILE, PrivacyLedger
from dpsad_core.training import resume_training
from dpsad_core.training.config import resolve_hyperparameters

TINY = ["--data", "demo", "--preset", "tiny", "--device", "cpu", "--epsilon", "5"]


def _left_behind(workspace: Path) -> tuple[list[str], list[str]]:
    runs = sorted(p.name for p in (workspace / "runs").iterdir()) if (workspace / "runs").is_dir() else []
    entries = [e.run_id for e in PrivacyLedger(workspace).entries()] if (workspace / LEDGER_FILE).exists() else []
    return runs, entries


@pytest.mark.parametrize(("setting", "words"), [
    ("channels=0", "channels must be one or more widths"),
    ("disc_channels=8,-1", "disc_channels must be"),
    ("ema_power=nan", "ema_power must be a finite number, got nan"),
    ("guidance=inf", "guidance must be a finite number"),
    ("denoiser_clip_norm=-inf", "denoiser_clip_norm must be"),
    ("attention_levels=7", "attention_levels must name levels"),
])
def test_a_bad_setting_is_refused_before_any_folder_or_reservation(workspace, capsys, setting, words):
    code = main(["train", *TINY, "--set", setting, "--workspace", str(workspace)])
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert _left_behind(workspace) == ([], [])


def test_every_float_setting_refuses_nan_and_infinity():
    floats = [name for name, value in vars(resolve_hyperparameters("tiny")).items() if isinstance(value, float)]
    assert len(floats) > 10
    for name in floats:
        for bad in ("nan", "inf", "-inf"):
            with pytest.raises(ConfigError, match=name):
                resolve_hyperparameters("tiny", {name: bad})


def test_a_model_that_cannot_be_built_leaves_nothing_behind(workspace, monkeypatch, capsys):
    # The general defence: whatever refuses the settings while the models are built (not only the
    # checks above) runs before the ledger and the folder.
    import dpsad_core.models

    def refuse(config):
        raise ConfigError("this network cannot be built", field="channels")

    monkeypatch.setattr(dpsad_core.models, "UNet", refuse)
    code = main(["train", *TINY, "--workspace", str(workspace)])
    assert code == 2 and "cannot be built" in capsys.readouterr().err
    assert _left_behind(workspace) == ([], [])


def test_a_seed_out_of_range_is_refused_by_the_config_too():
    from dpsad_core.training import TrainConfig

    for seed in (-1, 2**63, 10**20):
        with pytest.raises(ConfigError, match="seed"):
            TrainConfig(data="demo", seed=seed)


def test_a_run_of_another_workspace_is_not_resumed_here(tmp_path):
    home, here = tmp_path / "home", tmp_path / "here"
    run = home / "runs" / "20260101-000000-dpdm-abcd"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {"data": "demo"}}))
    with pytest.raises(RunError, match="two ledgers") as caught:
        next(iter(resume_training(str(run), workspace=here)))
    assert f"--workspace {home}" in str(caught.value)
    assert not (here / LEDGER_FILE).exists()
